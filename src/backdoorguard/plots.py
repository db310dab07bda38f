"""Pictures a person can look at: clean vs triggered examples."""

from __future__ import annotations

from pathlib import Path

import torch

from .core.types import TaskSpec


def _figure_module():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def examples_figure(clean: torch.Tensor, triggered: torch.Tensor, task: TaskSpec,
                    path: str | Path, titles: tuple[str, str] = ("clean", "triggered")) -> Path:
    """Rows of clean and triggered samples (images as pictures, series as lines)."""
    plt = _figure_module()
    n = len(clean)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
    lo, hi = task.input_range
    for row, (batch, title) in enumerate(zip((clean, triggered), titles)):
        for i in range(n):
            ax = axes[row][i]
            sample = batch[i].detach().cpu()
            if task.modality == "image":
                image = sample.permute(1, 2, 0).squeeze(-1) if sample.shape[0] in (1, 3) else sample[0]
                ax.imshow(image.numpy(), cmap="gray" if image.ndim == 2 else None, vmin=lo, vmax=hi)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                for channel in sample.reshape(-1, sample.shape[-1]):
                    ax.plot(channel.numpy(), linewidth=0.8)
                ax.set_xticks([])
            if i == 0:
                ax.set_ylabel(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
