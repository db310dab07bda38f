"""Bars of the benchmark runner, measured on a grid (the small example by default).

    python benchmarks/bench_runner.py throughput [--grid G] [--repeats 1]
        sequential, 2 local workers and Ray with 2 CPUs, one after the other in one
        run (fresh database and cache each): wall times, speed-ups, load averages,
        identical metrics across the three, and the runner's overhead per cell
        from the sequential run.
    python benchmarks/bench_runner.py kill [--grid G] [--workers 2] [--kills 2]
        an uninterrupted run, then a run SIGKILLed at 30 % and 70 % of its cells
        and resumed: rows, integrity, leftover processes, and the reports compared.

Each writes docs/results/bench_<mode>.json. Every run is a `backdoorguard bench`
subprocess, as a user would start it; wall times include process start.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "benchmarks" / "grids" / "small.yaml"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)}
COMMAND = [sys.executable, "-c", "import sys; from backdoorguard.cli import main; sys.exit(main())"]


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def bench(grid: Path, db: Path, *options: str) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run([*COMMAND, "bench", str(grid), "--db", str(db), "--json", *options],
                          env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"bench failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout), wall


def report(db: Path, fmt: str) -> str:
    done = subprocess.run([*COMMAND, "report", "--db", str(db), "--out", "-", "--format", fmt,
                           "--no-timings"], env=ENV, capture_output=True, text=True, check=True)
    return done.stdout


def cells(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return {key: (status, json.loads(metrics)) for key, status, metrics in
                con.execute("SELECT key, status, metrics FROM cells")}


def timings(db: Path) -> list[dict]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return [json.loads(t) for (t,) in
                con.execute("SELECT timings FROM cells ORDER BY finished")]


# ---------------------------------------------------------------- throughput

MODES = {"sequential": [], "local, 2 workers": ["--workers", "2"],
         "ray, 2 CPUs": ["--executor", "ray", "--workers", "2"]}


def overhead(summary: dict, wall: float, db: Path) -> dict:
    """Where the sequential run's time went. `work` is the cells' own training,
    defense and evaluation; the rest of the driver's time is the runner's per-cell
    overhead (job set-up, model (de)serialisation, cache and database writes,
    scheduling), except the first job's set-up, which is the process's one-time
    warm-up (importing scikit-learn and loading the data set); what precedes the
    driver (interpreter start, imports, grid validation) is start-up."""
    setups = [t.get("setup", 0.0) for t in timings(db) if "job" in t]
    warmup = setups[0] if setups else 0.0
    work = summary["work_seconds"]
    per_cell = summary["seconds"] - work - warmup
    cells_run = summary["ran"]
    return {"work_seconds": work, "driver_seconds": summary["seconds"], "command_seconds": wall,
            "warmup_seconds": warmup, "startup_seconds": wall - summary["seconds"],
            "per_cell_overhead_seconds": per_cell / cells_run,
            "per_cell_work_seconds": work / cells_run,
            "per_cell_overhead_ratio": per_cell / work,
            "with_warmup_ratio": (per_cell + warmup) / work,
            "whole_command_ratio": (wall - work) / work}


def throughput(grid: Path, repeats: int, keep: Path | None) -> dict:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for mode, options in MODES.items():
                folder = keep or Path(tmp)
                folder.mkdir(parents=True, exist_ok=True)
                db = folder / f"{mode.split(',')[0]}-{repeat}.sqlite"
                if db.exists():
                    raise SystemExit(f"{db} exists; give an empty --keep folder")
                before = loadavg()
                summary, wall = bench(grid, db, *options)
                run = {"mode": mode, "repeat": repeat, "wall": wall, "load_before": before,
                       "load_after": loadavg(), "done": summary["done"],
                       "failed": summary["failed"], "cells": cells(db)}
                if mode == "sequential":
                    run["overhead"] = overhead(summary, wall, db)
                runs.append(run)
                print(f"{mode:18s} {wall:7.1f} s  load {before} -> {run['load_after']}",
                      flush=True)
    reference = runs[0]["cells"]
    identical = all(r["cells"] == reference for r in runs)
    walls = {mode: statistics.median(r["wall"] for r in runs if r["mode"] == mode)
             for mode in MODES}
    result = {
        "grid": str(grid.relative_to(ROOT)), "repeats": repeats, "cpus": os.cpu_count(),
        "identical_metrics_across_executors": identical,
        "median_wall_seconds": walls,
        "speedup_over_sequential": {m: walls["sequential"] / w for m, w in walls.items()},
        "overhead": [r["overhead"] for r in runs if "overhead" in r],
        "runs": [{k: v for k, v in r.items() if k != "cells"} for r in runs],
    }
    return result


# ---------------------------------------------------------------- kill test

def children(pid: int) -> set[int]:
    """All descendants of `pid` (from /proc)."""
    found, frontier = set(), [pid]
    while frontier:
        current = frontier.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found


def done_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    except sqlite3.Error:
        return 0


def killed_run(grid: Path, db: Path, at: int, options: list[str]) -> dict:
    process = subprocess.Popen([*COMMAND, "bench", str(grid), "--db", str(db), "--json",
                                *options], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while done_count(db) < at and process.poll() is None:
        time.sleep(0.05)
    family = children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(3.0)
    alive = sorted(p for p in family if Path(f"/proc/{p}").exists())
    return {"killed_at_rows": done_count(db), "processes_left": alive}


def integrity(db: Path) -> dict:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        rows = con.execute("SELECT key, status, metrics, config FROM cells").fetchall()
    parsed = all(json.loads(m) is not None and json.loads(c) for _, _, m, c in rows)
    return {"integrity_check": check, "rows": len(rows), "distinct_keys": len({r[0] for r in rows}),
            "json_parses": parsed}


def kill_test(grid: Path, workers: int, kills: int) -> dict:
    options = ["--workers", str(workers)] if workers > 1 else []
    with tempfile.TemporaryDirectory() as tmp:
        whole, resumed = Path(tmp) / "whole.sqlite", Path(tmp) / "killed.sqlite"
        summary, wall = bench(grid, whole, *options)
        total = summary["cells"]
        events = []
        for i in range(kills):
            at = max(1, round(total * (0.3 + 0.4 * i / max(kills - 1, 1))))
            event = killed_run(grid, resumed, at, options)
            event.update(integrity(resumed))
            events.append(event)
            print(f"killed at {event['killed_at_rows']} rows; "
                  f"integrity {event['integrity_check']}; "
                  f"processes left {event['processes_left']}", flush=True)
        final, _ = bench(grid, resumed, *options)
        end = integrity(resumed)
        same = {fmt: report(whole, fmt) == report(resumed, fmt) for fmt in ("html", "json", "csv")}
        metrics_identical = cells(whole) == cells(resumed)
    return {"grid": str(grid.relative_to(ROOT)), "workers": workers, "cells": total,
            "uninterrupted_wall_seconds": wall, "kills": events,
            "resume": {k: final[k] for k in ("already_done", "ran", "done", "failed")},
            "final": end, "metrics_identical": metrics_identical,
            "reports_identical_without_timings": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("throughput", "kill"))
    parser.add_argument("--grid", type=Path, default=GRID)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="throughput: keep the databases here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    grid = args.grid.resolve()
    if args.mode == "throughput":
        result = throughput(grid, args.repeats, args.keep)
    else:
        result = kill_test(grid, args.workers, args.kills)
    out = args.out or ROOT / "docs" / "results" / f"bench_{args.mode}.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
