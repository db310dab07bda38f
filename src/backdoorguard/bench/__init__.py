"""The benchmark runner: grids of data sets × models × attacks × defenses × seeds.

    from backdoorguard.bench import run_grid, write_report
    run_grid("benchmarks/grids/small.yaml", "small.sqlite", workers=2)
    write_report("small.sqlite", "small.html")

- `grid`: the grid file (validated) and its expansion into cells keyed by hash.
- `store`: the SQLite results database and the artifact folder beside it.
- `cells`: what a worker runs (train a shared model; one cell per family).
- `executors`: sequential, worker processes, Ray.
- `runner`: the driver (scheduling, resuming, the only writer of the store).
- `report`, `page`, `figures`: HTML / CSV / JSON reports.
"""

from __future__ import annotations

__all__ = ["run_grid", "write_report"]


def __getattr__(name: str):
    # Lazy, so importing the package does not import torch.
    if name == "run_grid":
        from .runner import run_grid

        return run_grid
    if name == "write_report":
        from .report import write_report

        return write_report
    raise AttributeError(f"module 'backdoorguard.bench' has no attribute {name!r}")
