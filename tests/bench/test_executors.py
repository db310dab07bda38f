"""Worker processes and Ray give the sequential numbers; a dying worker fails its job only."""

import pytest

from backdoorguard.bench.executors import PoolExecutor, create_executor
from backdoorguard.bench.grid import load_grid
from backdoorguard.bench.store import Store
from backdoorguard.errors import BadInput

from .conftest import DOUBLES, run, write_grid


def metrics_by_key(db):
    with Store(db) as store:
        return {row.key: (row.status, row.metrics) for row in store.rows()}


def same_as_sequential(db, tiny_run):
    """Every cell equals the sequential run's cell of the same key, bit for bit."""
    ours, sequential = metrics_by_key(db), metrics_by_key(tiny_run["db"])
    assert ours and all(value == sequential[key] for key, value in ours.items())


SUBSET = {"defenses": ["none", "double-purifier", "double-detector", "double-training"],
          "seeds": [1]}


def test_two_workers_give_the_sequential_numbers(tiny_run, tmp_path):
    db = tmp_path / "pool.sqlite"
    executor = PoolExecutor(2, [DOUBLES], threads=1)
    try:
        summary, _ = run(write_grid(tmp_path, **SUBSET), db, executor)
    finally:
        executor.close()
    assert summary["done"] == 8 and summary["slots"] == 2
    same_as_sequential(db, tiny_run)


def test_a_dying_worker_fails_its_job_and_the_pool_recovers(tmp_path):
    grid = load_grid(write_grid(tmp_path, attacks=["none"], seeds=[0],
                                defenses=[{"name": "double-broken", "params": {"crash": True}}]))
    cell = grid.cells[0]
    job = {"kind": "cell", "config": cell.config, "imports": [DOUBLES], "threads": 1,
           "device": "cpu"}
    model_job = {**job, "kind": "model"}
    executor = PoolExecutor(1, [DOUBLES], threads=1)
    try:
        executor.submit(model_job)
        [(_, trained)] = executor.wait()
        executor.submit(job, trained["files"])
        [(_, outcome)] = executor.wait()
        assert not outcome["ok"] and "worker process running this job died" in outcome["error"]
        executor.submit(model_job)
        [(_, again)] = executor.wait()
        assert again["ok"] and again["metrics"] == trained["metrics"]
    finally:
        executor.close()


def test_executor_options_are_checked():
    with pytest.raises(BadInput, match="--address applies to --executor ray only"):
        create_executor("local", workers=2, address="auto", cpus=1, gpus=0, imports=[])
    with pytest.raises(BadInput, match="unknown executor 'slurm'"):
        create_executor("slurm", workers=None, address=None, cpus=1, gpus=0, imports=[])


def test_ray_gives_the_sequential_numbers(tiny_run, tmp_path):
    pytest.importorskip("ray")
    db = tmp_path / "ray.sqlite"
    executor = create_executor("ray", workers=2, address=None, cpus=1, gpus=0, imports=[DOUBLES])
    try:
        assert executor.slots == 2
        summary, _ = run(write_grid(tmp_path, **SUBSET), db, executor)
    finally:
        executor.close()
    assert summary["done"] == 8
    same_as_sequential(db, tiny_run)
