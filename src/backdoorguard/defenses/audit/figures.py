"""Pictures of an audit: 2-D slices of the error landscape |Y − Z| through the
regions' centres (a suspicious region's located centre, otherwise its
maximiser), with the regions the audit found marked on them.

Each slice varies two inputs over the whole box and holds the others at the
centre's values; it costs grid² oracle calls (counted, and reported apart from
the audit's own calls). The title gives the error at the maximiser, which a
slice through a located centre need not cross.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...core.oracle import Oracle
from ...core.training import predict
from ...plots import _figure_module, _save
from .error_maximizers import Box


def slice_pairs(dim: int) -> list[tuple[int, int]]:
    """Input pairs to show: (0,1), (2,3), ... covering every input once or more."""
    if dim < 2:
        return []
    pairs = [(i, i + 1) for i in range(0, dim - 1, 2)]
    if dim % 2:
        pairs.append((dim - 2, dim - 1))
    return pairs[:3]


def slice_errors(model: nn.Module, oracle: Oracle, box: Box, centre_unit: torch.Tensor,
                 pair: tuple[int, int], grid: int) -> torch.Tensor:
    """|Y − Z| on a grid × grid slice through `centre_unit` varying inputs `pair`."""
    axis = torch.linspace(0.0, 1.0, grid)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    points = centre_unit.repeat(grid * grid, 1)
    points[:, pair[0]] = a.flatten()
    points[:, pair[1]] = b.flatten()
    x = box.raw(points)
    return (predict(model, x) - oracle(x)).norm(dim=1).reshape(grid, grid)


def rows_to_show(regions: Sequence[dict[str, Any]], limit: int = 2) -> list[dict[str, Any]]:
    """The suspicious regions (up to `limit`), or the largest-error one if none is."""
    suspicious = [r for r in regions if r["suspicious"]]
    chosen = suspicious or sorted(regions, key=lambda r: -r["error"])[:1]
    return sorted(chosen, key=lambda r: -r["error"])[:limit]


def error_slices_figure(model: nn.Module, oracle: Oracle, regions: Sequence[dict[str, Any]],
                        path: str | Path, *, grid: int = 15, radius: float = 0.15,
                        names: Sequence[str] | None = None,
                        raw_box: tuple[Sequence[float], Sequence[float]] | None = None) -> int:
    """Save the slices picture to `path`; returns the oracle calls it used.

    `raw_box` (low, high per input) labels the axes in the inputs' own units when
    the model sees a linear rescaling of them (barrier-option: S/K, H/K, T, σ, r)."""
    plt = _figure_module()
    box = Box(oracle)
    shown = Box(oracle)
    if raw_box is not None:
        shown.low, shown.high = (torch.tensor(v, dtype=torch.float32) for v in raw_box)
        shown.width = shown.high - shown.low
    rows = rows_to_show(regions)
    pairs = slice_pairs(oracle.dim)
    names = list(names) if names else [f"x{i}" for i in range(oracle.dim)]
    before = oracle.calls
    if not rows or not pairs:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no maximiser to show", ha="center", va="center")
        ax.axis("off")
        _save(fig, Path(path))
        return 0
    fig, axes = plt.subplots(len(rows), len(pairs), figsize=(4.2 * len(pairs), 3.8 * len(rows)),
                             squeeze=False)
    for r, region in enumerate(rows):
        centre = torch.tensor(region["centre_unit"])
        for p, (i, j) in enumerate(pairs):
            ax = axes[r][p]
            errors = slice_errors(model, oracle, box, centre, (i, j), grid)
            lo_i, hi_i = float(shown.low[i]), float(shown.high[i])
            lo_j, hi_j = float(shown.low[j]), float(shown.high[j])
            image = ax.imshow(errors.T.numpy(), origin="lower", aspect="auto", cmap="viridis",
                              extent=(lo_i, hi_i, lo_j, hi_j))
            fig.colorbar(image, ax=ax, label="|model − oracle|")
            for other in regions:
                _mark(ax, other, i, j, shown, radius)
            ax.set_xlabel(names[i])
            ax.set_ylabel(names[j])
            verdict = "suspicious" if region["suspicious"] else "not suspicious"
            ax.set_title(f"max error {region['error']:.2g} ({verdict})", fontsize=9)
    fig.tight_layout()
    _save(fig, Path(path))
    return oracle.calls - before


def _mark(ax, region: dict[str, Any], i: int, j: int, box: Box, radius: float) -> None:
    """A circle of the density radius for a suspicious region, a cross otherwise
    (`box` is the box the axes show)."""
    centre = box.raw(torch.tensor(region["centre_unit"]))
    x, y = float(centre[i]), float(centre[j])
    if region["suspicious"]:
        from matplotlib.patches import Ellipse

        ax.add_patch(Ellipse((x, y), 2 * radius * float(box.width[i]),
                             2 * radius * float(box.width[j]), fill=False, color="red", lw=1.5))
        ax.plot([x], [y], "r+", ms=8)
    else:
        ax.plot([x], [y], "wx", ms=5, alpha=0.7)
