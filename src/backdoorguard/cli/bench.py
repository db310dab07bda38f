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
) -> int:
    """Run every cell of a grid not yet in the database; resumes an interrupted run.
    Exit status 1 when some cells failed (the others are recorded)."""
    from ..bench.runner import run_grid

    if executor not in ("local", "ray"):
        raise BadInput(f"unknown executor {executor!r}; allowed: local, ray")
    summary = run_grid(grid, db, executor=executor, workers=workers, address=address,
                       retry_failed=retry_failed, progress=not as_json and sys.stderr.isatty())

    def render() -> None:
        out = console()
        earlier = summary["failed_not_retried"]
        out.print(f"{summary['grid']}: {summary['cells']} cells; {summary['already_done']} "
                  f"already done; ran {summary['ran']}: {summary['done']} done, "
                  f"{summary['failed']} failed"
                  + (f"; {earlier} failed earlier (--retry-failed runs them)" if earlier else "")
                  + f"; {summary['seconds']:.1f} s")
        if summary["skipped"]:
            out.print("not supported, skipped: " + "; ".join(summary["skipped"]))
        out.print(f"see the results with: backdoorguard report --db {db} --out report.html")

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
    """Summarise a results database: one HTML page, or CSV / JSON exports."""
    from ..bench.report import write_report

    text = write_report(db, out, format, timings=timings)
    if str(out) == "-":
        sys.stdout.write(text)
