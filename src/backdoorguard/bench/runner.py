"""The driver of `backdoorguard bench`: schedules jobs on an executor and is the
only writer of the store.

A grid's cells are grouped by the model they start from. Each group's model is
trained once (a "model job") unless the artifact cache already holds it; then
the group's `none` cells are recorded straight from the model's evaluation
(they are that evaluation) and its defense cells become jobs that receive the
model. Model jobs go first, so workers are not left idle waiting for them.

Resuming: done cells are skipped; failed cells are skipped too unless
`retry_failed`; cached models are reused. Every row is written in one
transaction when its cell finishes, so a run killed at any instant leaves only
whole rows, and the next run picks up the rest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput

from .cells import FILES
from .grid import NONE, Cell, Grid
from .store import Row, Store


@dataclass
class Group:
    """The pending cells that share one trained model."""

    key: str
    config: dict[str, Any]
    cells: list[Cell]
    files: dict[str, bytes] | None = None
    baseline: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    shared: Any = None
    remaining: int = 0


def derived(family: str, baseline: dict[str, Any], metrics: dict[str, Any]) -> dict[str, float]:
    """Before/after comparisons for the families that end with a model: DER and
    the clean-accuracy drop (classification), relative error changes (regression)."""
    from ..core.metrics import der

    if family not in ("purification", "training") or not baseline:
        return {}
    out: dict[str, float] = {}
    if "clean_acc" in metrics and "clean_acc" in baseline:
        out["clean_drop"] = baseline["clean_acc"] - metrics["clean_acc"]
        if "asr" in metrics and "asr" in baseline:
            out["der"] = der(baseline["clean_acc"], metrics["clean_acc"], baseline["asr"],
                             metrics["asr"])
    if metrics.get("clean_mae") is not None and baseline.get("clean_mae"):
        out["clean_error_change"] = metrics["clean_mae"] / baseline["clean_mae"] - 1.0
        if metrics.get("true_error") is not None and baseline.get("true_error"):
            out["true_error_reduction"] = 1.0 - metrics["true_error"] / baseline["true_error"]
    return out


def _work(timings: dict[str, float]) -> float:
    """The cell's own work: training, the defense, evaluating the result."""
    return sum(timings.get(k, 0.0) for k in ("train", "defense", "evaluate"))


class Driver:
    def __init__(self, grid: Grid, store: Store, executor, *, retry_failed: bool = False,
                 progress: bool = False) -> None:
        self.grid, self.store, self.executor = grid, store, executor
        self.retry_failed, self.show_progress = retry_failed, progress
        self.attempts = store.attempts()
        self.ready: deque[tuple[Cell, Group]] = deque()
        self.counts = {"done": 0, "failed": 0}
        self.work_seconds = 0.0
        self.job_seconds = 0.0
        self.models = {"trained": 0, "cached": 0, "failed": 0}
        self._advance = lambda n=0: None

    # ------------------------------------------------------------ planning

    def _pending(self) -> tuple[list[Cell], dict[str, int]]:
        statuses = self.store.statuses()
        pending = []
        counts = {"already_done": 0, "failed_not_retried": 0}
        for cell in self.grid.cells:
            status = statuses.get(cell.key)
            if status == "done":
                counts["already_done"] += 1
            elif status == "failed" and not self.retry_failed:
                counts["failed_not_retried"] += 1
            else:
                pending.append(cell)
        return pending, counts

    def _groups(self, pending: list[Cell]) -> list[Group]:
        groups: dict[str, Group] = {}
        for cell in pending:
            group = groups.setdefault(cell.model_key,
                                      Group(cell.model_key, cell.model_config, []))
            group.cells.append(cell)
        for group in groups.values():
            group.remaining = len(group.cells)
        return list(groups.values())

    def _cached(self, group: Group) -> dict[str, bytes] | None:
        """The cached model's files, if whole and consistent (else it is retrained)."""
        folder = self.store.model_dir(group.key)
        try:
            files = {path.name: path.read_bytes() for path in sorted(folder.iterdir())
                     if path.is_file()}
            if not set(FILES) <= set(files):
                return None
            card = json.loads(files["model.json"])
            if hashlib.sha256(files["model.safetensors"]).hexdigest() != card["weights"]["sha256"]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return files

    # ------------------------------------------------------------ rows

    def _row(self, cell: Cell, status: str, **values: Any) -> Row:
        return Row(key=cell.key, status=status, family=cell.family, labels=cell.labels,
                   seed=cell.seed, model_key=cell.model_key, config=cell.config,
                   attempts=self.attempts.get(cell.key, 0) + 1, finished=time.time(), **values)

    def _failed(self, cell: Cell, error: str, timings: dict[str, Any] | None = None) -> Row:
        self.counts["failed"] += 1
        return self._row(cell, "failed", error=error, timings=timings or {})

    # ------------------------------------------------------------ the shared model

    def _adopt(self, group: Group, files: dict[str, bytes], timings: dict[str, Any]) -> None:
        """Take a trained model's files; record the group's `none` cells from its
        evaluation (with the model's row, in one transaction); queue the rest."""
        record = json.loads(files["metrics.json"])
        card = json.loads(files["model.json"])
        cost = record["cost"]
        group.files = files
        group.baseline = record["metrics"]
        group.info = {"cost": {"seconds": cost["train_seconds"], "passes": cost["passes"],
                               "steps": cost["steps"]}, "versions": card["versions"]}
        rows = []
        for cell in group.cells:
            if cell.family == NONE:
                rows.append(self._row(cell, "done", metrics=group.baseline, cost=group.info["cost"],
                                      timings=timings, versions=group.info["versions"]))
                self.counts["done"] += 1
            else:
                self.ready.append((cell, group))
        # The model's row goes in with its cells (again after a resume: a no-op),
        # so a killed run ends with the same models table as an uninterrupted one.
        self.store.record(rows, {"key": group.key, "config": group.config,
                                 "metrics": group.baseline, "cost": group.info["cost"]})
        group.remaining -= len(rows)
        self._advance(len(rows))
        if group.remaining:
            group.shared = self.executor.share(group.key, files)
        else:
            group.files = None

    def _model_finished(self, group: Group, outcome: dict[str, Any]) -> None:
        timings = outcome.get("timings", {})
        self.job_seconds += timings.get("job", 0.0)
        if not outcome["ok"]:
            self.models["failed"] += 1
            error = f"training the shared model failed: {outcome['error']}"
            rows = [self._failed(cell, error, timings) for cell in group.cells]
            self.store.record(rows)
            self._advance(len(rows))
            return
        self.work_seconds += _work(timings)
        self.models["trained"] += 1
        self.store.write_files(self.store.model_dir(group.key), outcome["files"])
        self._adopt(group, outcome["files"], timings)

    # ------------------------------------------------------------ defense cells

    def _cell_finished(self, cell: Cell, group: Group, outcome: dict[str, Any]) -> None:
        timings = outcome.get("timings", {})
        self.job_seconds += timings.get("job", 0.0)
        if outcome["ok"]:
            self.work_seconds += _work(timings)
            artifacts = []
            if outcome.get("files"):
                artifacts = self.store.write_files(self.store.artifacts / "cells" / cell.key,
                                                   outcome["files"])
            metrics = {**outcome["metrics"], **derived(cell.family, group.baseline,
                                                       outcome["metrics"])}
            row = self._row(cell, "done", metrics=metrics, baseline=group.baseline,
                            result=outcome["result"], cost=outcome["cost"], timings=timings,
                            artifacts=artifacts, versions=outcome["versions"])
            self.counts["done"] += 1
        else:
            row = self._failed(cell, outcome["error"], timings)
        self.store.record([row])
        self._advance(1)
        group.remaining -= 1
        if group.remaining == 0:
            self.executor.forget(group.key)
            group.files = group.shared = None

    # ------------------------------------------------------------ the loop

    def _job(self, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, "config": config, "imports": self.grid.imports,
                "threads": self.grid.resources.cpus, "device": self.grid.device}

    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.store.remove_leftovers()
        pending, counts = self._pending()
        groups = self._groups(pending)
        to_train: deque[Group] = deque()
        running: dict[int, tuple[str, Any]] = {}
        with self._progress(len(pending)):
            for group in groups:
                files = self._cached(group)
                if files is None:
                    to_train.append(group)
                else:
                    self.models["cached"] += 1
                    self._adopt(group, files, {})
            while to_train or self.ready or running:
                while len(running) < self.executor.slots and (to_train or self.ready):
                    if to_train:
                        group = to_train.popleft()
                        ticket = self.executor.submit(self._job("model", group.config))
                        running[ticket] = ("model", group)
                    else:
                        cell, group = self.ready.popleft()
                        ticket = self.executor.submit(self._job("cell", cell.config),
                                                      group.shared)
                        running[ticket] = ("cell", (cell, group))
                    self._running = len(running)
                    self._advance(0)
                for ticket, outcome in self.executor.wait():
                    kind, item = running.pop(ticket)
                    self._running = len(running)
                    if kind == "model":
                        self._model_finished(item, outcome)
                    else:
                        self._cell_finished(*item, outcome)
        wall = time.perf_counter() - start
        return {"grid": self.grid.name, "db": str(self.store.path), "cells": len(self.grid.cells),
                "skipped_combinations": len(self.grid.skipped), **counts,
                "ran": len(pending), **self.counts, "models": self.models,
                "seconds": wall, "work_seconds": self.work_seconds,
                "job_seconds": self.job_seconds, "slots": self.executor.slots}

    @contextmanager
    def _progress(self, total: int):
        self._running = 0
        if not self.show_progress:
            yield
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        columns = (TextColumn(f"bench {self.grid.name}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                   TextColumn("left"), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task("cells", total=total, state="")

            def advance(n: int = 0) -> None:
                state = (f"{self.counts['done']} done, {self._running} running, "
                         f"{self.counts['failed']} failed")
                progress.update(task, advance=n, state=state)

            self._advance = advance
            advance(0)
            yield


def run_grid(grid_path: str | Path, db: str | Path, *, executor: str = "local",
             workers: int | None = None, address: str | None = None,
             retry_failed: bool = False, progress: bool = False) -> dict[str, Any]:
    """Run every cell of a grid file not yet done in `db`; returns the run's summary.
    `BadInput` (before any work) on a bad grid, database or executor option."""
    from .executors import create_executor
    from .grid import load_grid

    if workers is not None and workers < 1:
        raise BadInput(f"--workers {workers} must be at least 1")
    grid = load_grid(grid_path)
    new = not Path(db).exists()
    with Store(db, create=True, lock=True) as store:
        statuses = store.statuses()
        idle = all(statuses.get(c.key) == "done" or (statuses.get(c.key) == "failed"
                                                      and not retry_failed) for c in grid.cells)
        try:
            # Nothing to run: no worker processes, no Ray instance (options still checked).
            runner = create_executor(executor, workers=workers, address=address,
                                     cpus=grid.resources.cpus, gpus=grid.resources.gpus,
                                     imports=grid.imports, start=not idle)
        except BadInput:
            if new:  # leave nothing behind: the database was empty and ours
                store.close()
                Path(db).unlink(missing_ok=True)
            raise
        try:
            summary = Driver(grid, store, runner, retry_failed=retry_failed,
                             progress=progress).run()
        finally:
            runner.close()
    return {**summary, "executor": executor, "skipped": grid.skipped}
