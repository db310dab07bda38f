"""FP: fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018): prune the channels of
the last convolutional layer that are least active on clean data, then fine-tune.

A backdoor often lives in neurons that clean inputs leave dormant; pruning them
in order of mean clean activation removes it before clean accuracy suffers.

**Ours:**
- What is pruned: the units of the feature vector `forward_features(x)` that the
  head reads. In the residual models (preact-resnet18, resnet1d) these are the
  last convolutional layer's channels after the final activation and pooling,
  as in the paper; in cnn-small and mlp they are the last hidden layer's units.
  A pruned unit is removed by zeroing its column of the head's weight, which is
  equivalent (the head is the features' only reader), needs no change to the
  architecture (the checkpoint loads into the plain model) and is kept at zero
  through fine-tuning by an `after_step` hook.
- When to stop: units are pruned in order of lowest mean activation on the clean
  set until the clean metric measured on that set drops by more than `max_drop`
  (classification: accuracy points; regression: relative rise of the loss), and
  at most `max_ratio` of them. The search is cheap: the features are computed
  once and only the head is re-applied.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ...config import TrainConfig
from ...core.runtime import Runtime
from ...core.training import Hook, TrainState, task_loss
from ...core.types import ArrayDataset
from ...errors import BadInput
from ..base import Purified, register_defense
from .common import FineTuningPurifier


class KeepPruned(Hook):
    """Hold the pruned head columns at zero after every optimiser step."""

    def __init__(self, head: nn.Linear, pruned: torch.Tensor):
        self.head, self.pruned = head, pruned

    def after_step(self, state: TrainState, batch, step) -> None:
        with torch.no_grad():
            self.head.weight[:, self.pruned] = 0.0


@torch.no_grad()
def features_of(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model.forward_features(x[i:i + batch_size].to(device))
                      for i in range(0, len(x), batch_size)])


def clean_score(outputs: torch.Tensor, clean: ArrayDataset) -> float:
    """Higher is better: accuracy, or minus the mean task loss for regression."""
    y = clean.y.to(outputs.device)
    if clean.task.is_classification:
        return float((outputs.argmax(1) == y).float().mean())
    return -float(task_loss(clean.task)(outputs, y).mean())


@register_defense("fp", "purification", "fine-pruning: prune the last layer's channels least "
                  "active on clean data, then fine-tune (baseline)")
class FinePruning(FineTuningPurifier):
    """Prune, then fine-tune all layers (see module doc)."""

    def __init__(self, *, max_drop: float | None = None, max_ratio: float = 0.9,
                 train: TrainConfig | dict[str, Any] | None = None, min_steps: int = 100,
                 batchnorm: str = "frozen", augment: str | bool = "auto") -> None:
        super().__init__(train=train, min_steps=min_steps, batchnorm=batchnorm,
                         augment=augment)
        if max_drop is not None and not max_drop >= 0:
            raise BadInput(f"fp max_drop {max_drop} must be ≥ 0")
        if not 0 < max_ratio < 1:
            raise BadInput(f"fp max_ratio {max_ratio} must lie strictly between 0 and 1")
        self.max_drop, self.max_ratio = max_drop, float(max_ratio)

    @torch.no_grad()
    def prune_order(self, model: nn.Module, clean: ArrayDataset) -> tuple[torch.Tensor, int]:
        """(units by increasing mean clean activation, how many to prune)."""
        features = features_of(model, clean.x)
        order = features.mean(0).argsort()
        head = model.head
        classification = clean.task.is_classification
        max_drop = self.max_drop if self.max_drop is not None else (0.05 if classification
                                                                    else 0.25)
        base = clean_score(head(features), clean)
        allowed = base - max_drop if classification else base * (1 + max_drop)
        limit = int(self.max_ratio * features.shape[1])
        mask = torch.ones(features.shape[1], device=features.device)
        count = 0
        for k in range(limit):
            mask[order[k]] = 0.0
            if clean_score(head(features * mask), clean) < allowed:
                break
            count = k + 1
        return order, count

    def purify(self, model: nn.Module, clean: ArrayDataset, *,
               runtime: Runtime = Runtime()) -> Purified:
        start = time.perf_counter()
        model = self.prepare(model, clean, runtime)
        order, count = self.prune_order(model, clean)
        pruned = order[:count].sort().values
        with torch.no_grad():
            model.head.weight[:, pruned] = 0.0
        history = self.finetune(model, clean, runtime, hooks=[KeepPruned(model.head, pruned)])
        changes = {"pruned_units": pruned.tolist(), "pruned": count,
                   "units": int(model.head.weight.shape[1]), "epochs": len(history.epochs)}
        return self.result(model, changes, start, [history], clean.task)
