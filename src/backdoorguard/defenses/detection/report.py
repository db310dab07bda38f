"""What a scan leaves for a person: `detection.json`, a picture of the reversed
trigger (`trigger.png`) and one of the outputs on clean vs reversed inputs
(`collapse.png`); and `scan_models`, the Python entry point the command line
and the demo share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...core.checkpoint import atomic_output, write_json
from ...core.runtime import Runtime
from ...core.training import predict
from ...core.types import ArrayDataset, TaskSpec
from ...errors import BadInput
from ...plots import _figure_module, _save, pick_samples, samples_figure
from ..base import Detection, Detector, create_defense

FIGURE_SAMPLES = 6


def default_method(task: TaskSpec) -> str:
    """DRMGuard for regression images, Neural Cleanse otherwise."""
    return "drmguard" if task.kind == "regression" and task.modality == "image" else "nc"


def build_detector(task: TaskSpec, method: str | None = None,
                   params: Mapping[str, Any] | None = None,
                   threshold: float | None = None) -> Detector:
    """A detector by name (default: `default_method`), checked against `task`."""
    method = method or default_method(task)
    detector = create_defense(method, "detection", **dict(params or {}))
    detector.check_task(task)
    if threshold is not None:
        detector.threshold = float(threshold)
    return detector


def apply_trigger(trigger: Any, x: torch.Tensor) -> torch.Tensor:
    """Reversed inputs: a generator network, or a mask and pattern."""
    if isinstance(trigger, nn.Module):
        with torch.no_grad():
            return trigger.eval()(x)
    if isinstance(trigger, dict) and {"mask", "pattern"} <= set(trigger):
        return (1 - trigger["mask"]) * x + trigger["mask"] * trigger["pattern"]
    raise BadInput(f"cannot apply a reversed trigger of type {type(trigger).__name__}")


def trigger_figure(trigger: Any, x: torch.Tensor, task: TaskSpec, path: Path) -> Path:
    """Mask, pattern and their product; or clean, reversed and |change| of a few
    inputs for a generator (series: reversed drawn over clean)."""
    reversed_x = apply_trigger(trigger, x)
    if task.modality != "image":
        return samples_figure(x, task, path, triggered=reversed_x, row_names=("clean", "reversed"))
    plt = _figure_module()
    lo, hi = task.input_range
    if isinstance(trigger, dict):
        panels = [("mask", trigger["mask"][0], (0, 1), "viridis"),
                  ("pattern", trigger["pattern"].mean(0), (lo, hi), "gray"),
                  ("mask × pattern", (trigger["mask"] * trigger["pattern"]).mean(0), (lo, hi),
                   "gray")]
        fig, axes = plt.subplots(1, 3, figsize=(6.5, 2.4), squeeze=False)
        for ax, (title, image, (vmin, vmax), cmap) in zip(axes[0], panels):
            shown = ax.imshow(image.numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(shown, ax=axes[0].tolist(), shrink=0.8)
    else:
        change = (reversed_x - x).abs().mean(1) / (hi - lo)
        fig, axes = plt.subplots(3, len(x), figsize=(1.6 * len(x), 5.0), squeeze=False)
        for i in range(len(x)):
            for row, image, cmap, limits in ((0, x[i].mean(0), "gray", (lo, hi)),
                                             (1, reversed_x[i].mean(0), "gray", (lo, hi)),
                                             (2, change[i], "magma", (0, 1))):
                axes[row][i].imshow(image.numpy(), cmap=cmap, vmin=limits[0], vmax=limits[1])
                axes[row][i].set_xticks([])
                axes[row][i].set_yticks([])
        for row, name in enumerate(("clean", "reversed", "|change|")):
            axes[row][0].set_ylabel(name)
    fig.suptitle("reversed trigger", fontsize=9)
    return _save(fig, path)


def collapse_figure(model: nn.Module, trigger: Any, clean: ArrayDataset, path: Path) -> Path:
    """Outputs on clean vs reversed inputs: a scatter of the first two outputs
    (regression; one output against the sample index), or predicted-class counts."""
    plt = _figure_module()
    device = next(model.parameters()).device
    x = clean.x.cpu()
    before = predict(model, x, device=device)
    after = predict(model, apply_trigger(trigger, x.to(device)).cpu(), device=device)
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    task = clean.task
    if task.is_classification:
        bins = torch.arange(task.num_outputs)
        width = 0.4
        for offset, outputs, name in ((-width / 2, before, "clean"), (width / 2, after, "reversed")):
            counts = torch.bincount(outputs.argmax(1), minlength=task.num_outputs)
            ax.bar(bins.numpy() + offset, counts.numpy(), width, label=name)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("inputs")
    else:
        names = list(task.label_names) or [f"output {j}" for j in range(task.num_outputs)]
        for outputs, name, marker in ((before, "clean", "o"), (after, "reversed", "x")):
            if task.num_outputs >= 2:
                ax.scatter(outputs[:, 0], outputs[:, 1], s=8, marker=marker, label=name)
            else:
                ax.scatter(range(len(outputs)), outputs[:, 0], s=8, marker=marker, label=name)
        units = f" ({task.label_units})" if task.label_units else ""
        ax.set_xlabel(names[0] + units if task.num_outputs >= 2 else "input")
        ax.set_ylabel((names[1] if task.num_outputs >= 2 else names[0]) + units)
    ax.legend(fontsize=8)
    ax.set_title("outputs on clean vs reversed inputs", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def write_detection(detection: Detection, model: nn.Module, clean: ArrayDataset,
                    directory: Path, extra: Mapping[str, Any] | None = None) -> list[str]:
    """detection.json (with `extra`, e.g. the model and the threshold's source) and
    both pictures into an existing `directory`; returns the file names."""
    record = {**detection.to_dict(), **dict(extra or {})}
    write_json(directory / "detection.json", record)
    files = ["detection.json"]
    if detection.trigger is not None:
        device = next(model.parameters()).device
        trigger = detection.trigger
        if isinstance(trigger, nn.Module):
            trigger = trigger.to(device)
        else:
            trigger = {k: v.to(device) for k, v in trigger.items()}
        shown = clean.x[pick_samples(clean, FIGURE_SAMPLES)].to(device)
        trigger_figure(trigger, shown, clean.task, directory / "trigger.png")
        collapse_figure(model, trigger, clean, directory / "collapse.png")
        files += ["trigger.png", "collapse.png"]
    return files


def scan_models(models: Mapping[str, nn.Module], clean: ArrayDataset, *,
                runtime: Runtime = Runtime(), method: str | None = None,
                params: Mapping[str, Any] | None = None, threshold: float | None = None,
                out: str | Path | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Scan each model with one detector; returns {name: verdict summary}. With
    `out`, writes `out/<name>/` (detection.json, trigger.png, collapse.png)
    atomically: all models or nothing."""
    detector = build_detector(clean.task, method, params, threshold)
    detections = {}
    for name, model in models.items():
        detections[name] = detector.inspect(model, clean, runtime=runtime)
    summary = {name: {"method": d.method, "backdoored": d.backdoored, "score": d.score,
                      "threshold": d.threshold, "target": d.target,
                      "seconds": round(d.cost.seconds, 3), "passes": d.cost.passes}
               for name, d in detections.items()}
    if out is not None:
        with atomic_output(out, overwrite=overwrite) as tmp:
            for name, detection in detections.items():
                (tmp / name).mkdir()
                summary[name]["files"] = write_detection(detection, models[name], clean,
                                                         tmp / name, {"model": name})
    return summary
