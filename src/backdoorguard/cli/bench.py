"""`bench` (run a grid into a results database) and `report` (read it back)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInput
from . import app
from .common import Json, console, emit

Db = Annotated[Path, typer.Option("--db", help="The results database (SQLite).")]


@app.command()
def bench(
    grid: Annotated[Path, typer.Argument(help="Grid file (YAML).")],
    db: Db,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    workers: Annotated[int | None, typer.Option(
        help="local: worker processes (default 1: in this process); ray: CPUs of a new "
             "local Ray instance, in cells (default: all cores).")] = None,
    address: Annotated[str | None, typer.Option(
        help="ray: join a running cluster (auto or HOST:PORT) instead of starting one.")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Run failed cells again.")] = False,
    as_json: Json = False,
) -> None:
    """Run every cell of a grid not yet in the database; resumes an interrupted run."""
    from ..bench.executors import create_executor
    from ..bench.grid import load_grid
    from ..bench.runner import Driver
    from ..bench.store import Store

    if executor not in ("local", "ray"):
        raise BadInput(f"unknown executor {executor!r}; allowed: local, ray")
    if workers is not None and workers < 1:
        raise BadInput(f"--workers {workers} must be at least 1")
    spec = load_grid(grid)
    with Store(db, create=True, lock=True) as store:
        runner = create_executor(executor, workers=workers, address=address,
                                 cpus=spec.resources.cpus, gpus=spec.resources.gpus,
                                 imports=spec.imports)
        try:
            progress = not as_json and sys.stderr.isatty()
            summary = Driver(spec, store, runner, retry_failed=retry_failed,
                             progress=progress).run()
        finally:
            runner.close()
    summary["executor"] = executor

    def render() -> None:
        out = console()
        out.print(f"{summary['grid']}: {summary['cells']} cells; {summary['already_done']} "
                  f"already done, ran {summary['ran']}: {summary['done']} done, "
                  f"{summary['failed']} failed"
                  + (f"; {summary['failed_not_retried']} failed earlier (--retry-failed "
                     "runs them)" if summary["failed_not_retried"] else "")
                  + f" in {summary['seconds']:.1f} s")
        if spec.skipped:
            out.print("skipped (not supported): " + "; ".join(spec.skipped))
        out.print(f"results in {db}; see them with: backdoorguard report --db {db} "
                  "--out report.html")

    emit(as_json, summary, render)
    return 1 if summary["failed"] else 0


@app.command()
def report(
    db: Db,
    out: Annotated[Path, typer.Option(help="Output file (- for standard output).")],
    format: Annotated[str, typer.Option("--format", help="html, csv or json.")] = "html",
    timings: Annotated[bool, typer.Option(
        help="Include wall times (--no-timings gives a report that depends only on the "
             "results, for comparing runs).")] = True,
) -> None:
    """Summarise a results database: an HTML page, or CSV / JSON exports."""
    from ..bench.report import FORMATS, render_report
    from ..bench.store import Store

    if format not in FORMATS:
        raise BadInput(f"unknown report format {format!r}; allowed: {', '.join(FORMATS)}")
    with Store(db) as store:
        text = render_report(store, format, timings=timings)
    if str(out) == "-":
        sys.stdout.write(text)
        return
    _write_atomically(out, text)


def _write_atomically(path: Path, text: str) -> None:
    import os
    import tempfile

    folder = path.resolve().parent
    if not folder.is_dir():
        raise BadInput(f"cannot write {str(path)!r}: its folder does not exist")
    if path.is_dir():
        raise BadInput(f"output {str(path)!r} is a directory")
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
