"""Pictures a person can look at: samples of a data set, clean vs triggered.

Images are drawn as pictures on the task's input range; series as one line per
channel; table rows as their feature values. With an attack, images get a second
row (triggered), series and table rows get the triggered values drawn over the
clean ones (dashed), so the change is visible in place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .core.types import ArrayDataset, TaskSpec
from .errors import BadInput

COLUMNS_MAX = 32


def _figure_module():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_text(task: TaskSpec, y: torch.Tensor) -> str:
    """A label as a person reads it: the class name, or the values with units."""
    if task.is_classification:
        index = int(y)
        return task.label_names[index] if index < len(task.label_names) else str(index)
    values = ", ".join(f"{float(v):.3g}" for v in y.reshape(-1))
    return f"{values} {task.label_units}".strip()


def pick_samples(data: ArrayDataset, count: int, seed: int = 0) -> torch.Tensor:
    """`count` seeded sample indices; for classification, the classes in turn so
    every class shows up when `count` allows."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator)
    if not data.task.is_classification:
        return order[:count]
    queues = [order[data.y[order] == cls].tolist() for cls in torch.unique(data.y)]
    chosen: list[int] = []
    while len(chosen) < min(count, len(data)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return torch.tensor(chosen, dtype=torch.long)


def _draw(ax, sample: torch.Tensor, task: TaskSpec, triggered: torch.Tensor | None = None) -> None:
    """One sample on one axis; `triggered` (series/table) is drawn over it, dashed."""
    if task.modality == "image":
        lo, hi = task.input_range
        image = sample.permute(1, 2, 0) if sample.shape[0] == 3 else sample[0]
        ax.imshow(image.numpy(), cmap="gray" if image.ndim == 2 else None, vmin=lo, vmax=hi)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    rows = sample.reshape(-1, sample.shape[-1]) if task.modality == "series" else sample[None]
    changed = None if triggered is None else (
        triggered.reshape(-1, sample.shape[-1]) if task.modality == "series" else triggered[None])
    style = {"linewidth": 0.9} if task.modality == "series" else {"marker": "o", "markersize": 2,
                                                                  "linewidth": 0.5}
    for channel, values in enumerate(rows):
        line, = ax.plot(values.numpy(), **style)
        if changed is not None:
            ax.plot(changed[channel].numpy(), color=line.get_color(), linestyle="--",
                    **{**style, "linewidth": 1.2})
    ax.set_xticks([])
    ax.tick_params(labelsize=6)


def samples_figure(clean: torch.Tensor, task: TaskSpec, path: str | Path, *,
                   triggered: torch.Tensor | None = None, titles: list[str] | None = None,
                   row_names: tuple[str, str] = ("clean", "triggered"),
                   columns: int | None = None) -> Path:
    """Samples on a grid of `columns` (8 images or 4 plots a row by default).
    Images get a triggered row under each clean row; series and table rows get
    `triggered` overlaid. Written atomically to `path`; its suffix picks the format."""
    plt = _figure_module()
    clean, count = clean.detach().cpu(), len(clean)
    if triggered is not None:
        triggered = triggered.detach().cpu()
    image = task.modality == "image"
    columns = min(count, columns or (8 if image else 4))
    stacked = 2 if image and triggered is not None else 1   # rows per sample row
    grid_rows = -(-count // columns) * stacked
    size = (1.5, 1.7) if image else (3.0, 2.0)
    fig, axes = plt.subplots(grid_rows, columns, squeeze=False,
                             figsize=(size[0] * columns, size[1] * grid_rows + 0.3))
    for i in range(count):
        row, col = (i // columns) * stacked, i % columns
        overlay = None if image or triggered is None else triggered[i]
        _draw(axes[row][col], clean[i], task, overlay)
        if stacked == 2:
            _draw(axes[row + 1][col], triggered[i], task)
            if col == 0:
                axes[row][0].set_ylabel(row_names[0])
                axes[row + 1][0].set_ylabel(row_names[1])
        if titles:
            axes[row][col].set_title(titles[i], fontsize=7)
    for i in range(count, -(-count // columns) * columns):
        for offset in range(stacked):
            axes[(i // columns) * stacked + offset][i % columns].axis("off")
    if triggered is not None and not image:
        fig.suptitle(f"{row_names[0]} (solid) and {row_names[1]} (dashed)", fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(path))


def _save(fig, path: Path, *, dpi: int = 100) -> Path:
    """Save to a temporary file beside `path`, then rename: never a half-written
    picture. The figure is closed whether or not the save succeeds."""
    try:
        fmt = path.suffix.lstrip(".").lower()
        supported = fig.canvas.get_supported_filetypes()
        if fmt not in supported:
            raise BadInput(f"picture {str(path)!r} needs a file suffix among: "
                           f"{', '.join('.' + s for s in sorted(supported))}")
        if not path.resolve().parent.is_dir():
            raise BadInput(f"folder {str(path.resolve().parent)!r} of picture {str(path)!r} "
                           "does not exist")
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                       dir=path.resolve().parent)
        os.close(handle)
        try:
            fig.savefig(tmp, dpi=dpi, format=fmt)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path
    finally:
        _figure_module().close(fig)


def examples_figure(clean: torch.Tensor, triggered: torch.Tensor, task: TaskSpec,
                    path: str | Path, titles: tuple[str, str] = ("clean", "triggered")) -> Path:
    """Clean and triggered samples side by side (see `samples_figure`)."""
    return samples_figure(clean, task, path, triggered=triggered, row_names=titles)


def preview(data: ArrayDataset, path: str | Path, *, attack=None, count: int = 8,
            seed: int = 0) -> Path:
    """A picture of `count` samples of `data` with their labels; with an `Attack`,
    the triggered version of each, titled with the label the attacker wants."""
    if not 1 <= count <= COLUMNS_MAX:
        raise BadInput(f"sample count {count} must lie in 1..{COLUMNS_MAX}")
    index = pick_samples(data, count, seed)
    x, y = data.x[index], data.y[index]
    titles = [label_text(data.task, label) for label in y]
    triggered = None
    if attack is not None:
        triggered = attack.apply(x)
        targets = attack.target(y)
        titles = [f"{t} → {label_text(data.task, target)}" for t, target in zip(titles, targets)]
    return samples_figure(x, data.task, path, triggered=triggered, titles=titles)
