"""The report's pictures, as PNG bytes (matplotlib, Agg). Given the same inputs
they are byte-identical: fixed sizes, fixed colours, no timestamps in the file."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
RATES = ("asr", "asr_at_tol")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    finally:
        _plt().close(fig)
    return buffer.getvalue()


def scatter(points: Sequence[dict[str, Any]], x_label: str, y_label: str, title: str) -> bytes:
    """Clean metric (x) against attack metric (y): one colour per defense, one
    marker per attack; small points per seed, a large one for the mean."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    defenses = list(dict.fromkeys(p["defense"] for p in points))
    attacks = list(dict.fromkeys(p["attack"] for p in points))
    for point in points:
        color = COLORS[defenses.index(point["defense"]) % len(COLORS)]
        marker = MARKERS[attacks.index(point["attack"]) % len(MARKERS)]
        xs, ys = np.asarray(point["x"], float), np.asarray(point["y"], float)
        ax.scatter(xs, ys, s=14, color=color, marker=marker, alpha=0.45, linewidths=0)
        ax.scatter([xs.mean()], [ys.mean()], s=70, color=color, marker=marker,
                   edgecolors="black", linewidths=0.6)
    for i, defense in enumerate(defenses):
        ax.scatter([], [], color=COLORS[i % len(COLORS)], marker="o", label=defense)
    for i, attack in enumerate(attacks):
        ax.scatter([], [], color="white", edgecolors="black", marker=MARKERS[i % len(MARKERS)],
                   label=attack)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if y_label in RATES:  # a share: show all of 0..1, so small gaps do not look large
        ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return _png(fig)


def roc(curves: Sequence[dict[str, Any]], title: str) -> bytes:
    """ROC curves: `curves` items hold label, fpr, tpr, auroc."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle="--")
    for i, curve in enumerate(curves):
        ax.step(curve["fpr"], curve["tpr"], where="post", color=COLORS[i % len(COLORS)],
                label=f"{curve['label']} (AUROC {curve['auroc']:.3f})")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-positive rate (clean models flagged)")
    ax.set_ylabel("true-positive rate (backdoored models flagged)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def bars(values: dict[str, float], label: str, title: str) -> bytes:
    """Horizontal bars, one per method, in the given order."""
    plt = _plt()
    names = list(values)
    fig, ax = plt.subplots(figsize=(6.4, 1.3 + 0.32 * len(names)))
    ax.barh(range(len(names)), [values[n] for n in names], color=COLORS[0])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _as_picture(tensor: np.ndarray) -> tuple[np.ndarray, bool]:
    """A trigger tensor as something to draw: (array, is_image)."""
    array = np.asarray(tensor, dtype=float)
    while array.ndim > 3 or (array.ndim == 3 and array.shape[0] not in (1, 3)):
        array = array[0]
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    if array.ndim == 1 or (array.ndim == 2 and min(array.shape) < 3 and array.shape[1] > 8):
        return np.atleast_2d(array), False
    return array, True


def _panels(tensors: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """One picture per tensor, except a mask and a pattern, which are shown as
    one: the pattern where the mask is on, mid-grey elsewhere."""
    if {"mask", "pattern"} <= set(tensors):
        mask, pattern = np.asarray(tensors["mask"], float), np.asarray(tensors["pattern"], float)
        try:
            lo, hi = float(pattern.min()), float(pattern.max())
            scaled = (pattern - lo) / (hi - lo) if hi > lo else np.ones_like(pattern)
            combined = mask * scaled + (1.0 - mask) * 0.5
        except ValueError:  # shapes that do not broadcast: show both
            return sorted(tensors.items())
        rest = [(k, v) for k, v in sorted(tensors.items()) if k not in ("mask", "pattern")]
        return [("mask × pattern", combined), *rest]
    return sorted(tensors.items())


def triggers(items: Sequence[dict[str, Any]], title: str) -> bytes:
    """Reversed triggers, one panel per (cell, tensor): images in 0..1 as they
    are, others scaled to their own range, framed; series are drawn as lines."""
    import textwrap

    plt = _plt()
    panels = [(item["caption"], name, tensor) for item in items
              for name, tensor in _panels(item["tensors"])]
    columns = min(5, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (caption, name, tensor) in zip(axes.flat, panels):
        array, image = _as_picture(tensor)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        if image:
            lo, hi = float(array.min()), float(array.max())
            shown = array  # values in 0..1 are shown as they are, others scaled to 0..1
            if lo < 0.0 or hi > 1.0:
                shown = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
        else:
            for channel in array:
                ax.plot(channel, linewidth=0.8)
        ax.set_title("\n".join([*textwrap.wrap(caption, 28), name]), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)
