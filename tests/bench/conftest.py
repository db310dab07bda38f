from pathlib import Path

import pytest
import yaml

from backdoorguard.bench.executors import SequentialExecutor
from backdoorguard.bench.grid import load_grid
from backdoorguard.bench.runner import Driver
from backdoorguard.bench.store import Store

DOUBLES = str(Path(__file__).with_name("doubles.py"))
FAMILIES = ["none", "double-detector", "double-purifier", "double-training", "double-audit"]


def grid_dict(**overrides):
    """A tiny grid: digits, 3 epochs, clean and BadNets models, one defense per family."""
    grid = {"name": "tiny", "imports": [DOUBLES], "datasets": ["digits"],
            "models": [{"name": "cnn-small", "args": {"width": 8, "features": 32}}],
            "train": {"epochs": 3, "batch_size": 64},
            "attacks": ["none", {"name": "badnets", "target": 0}],
            "defenses": FAMILIES, "seeds": [0, 1]}
    grid.update(overrides)
    return grid


def write_grid(folder: Path, name: str = "grid.yaml", **overrides) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(grid_dict(**overrides)))
    return path


class CountingExecutor(SequentialExecutor):
    """Sequential, counting the jobs it ran by kind."""

    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.jobs = {"model": 0, "cell": 0}
        self.stop_after = stop_after

    def submit(self, job, shared=None):
        self.jobs[job["kind"]] += 1
        if self.stop_after is not None and sum(self.jobs.values()) > self.stop_after:
            raise KeyboardInterrupt  # as if the run were killed before this job
        return super().submit(job, shared)


def run(grid_path: Path, db: Path, executor=None, **options) -> tuple[dict, object]:
    executor = executor or CountingExecutor()
    with Store(db, create=True, lock=True) as store:
        summary = Driver(load_grid(grid_path), store, executor, **options).run()
    return summary, executor


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory):
    """The tiny grid run once, sequentially; shared by the read-only tests."""
    folder = tmp_path_factory.mktemp("tiny")
    grid = write_grid(folder)
    summary, executor = run(grid, folder / "results.sqlite")
    return {"folder": folder, "grid": grid, "db": folder / "results.sqlite", "summary": summary,
            "jobs": executor.jobs}
