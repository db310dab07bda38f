"""Test doubles of each defense family, registered for the bench tests only.

Grids load this file by path (`imports: [.../doubles.py]`), so worker processes
and Ray tasks register the same doubles; test modules must not import it.
They are cheap and deterministic, not real defenses."""

from __future__ import annotations

import copy
import multiprocessing
import os
import time

import torch

from backdoorguard.config import TrainConfig
from backdoorguard.core.training import fit, predict, sample_losses
from backdoorguard.defenses.base import (Audit, Auditor, Cost, Detection, Detector, Purified,
                                         Purifier, Trained, TrainingDefense, register_defense)


def _stamp(x: torch.Tensor) -> torch.Tensor:
    """The default BadNets checkerboard (3×3, bottom-right): the double 'knows' it."""
    out = x.clone()
    grid = (torch.arange(3)[:, None] + torch.arange(3)[None, :]) % 2 == 0
    out[..., -3:, -3:] = grid.float()
    return out


@register_defense("double-detector", "detection", "test double: share of stamped inputs "
                  "sent to the most common class", modalities=("image",))
class DoubleDetector(Detector):
    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def inspect(self, model, clean, *, runtime):
        start = time.perf_counter()
        predicted = predict(model, _stamp(clean.x)).argmax(1)
        counts = torch.bincount(predicted, minlength=clean.task.num_outputs)
        score = float(counts.max()) / len(predicted)
        trigger = {"mask": torch.zeros(8, 8).index_fill_(0, torch.arange(5, 8), 1.0),
                   "pattern": _stamp(torch.zeros(1, 8, 8))}
        return Detection("double-detector", score, self.threshold, score > self.threshold,
                         int(counts.argmax()), {"counts": counts.tolist()},
                         Cost(time.perf_counter() - start, 1.0), trigger=trigger)


@register_defense("double-purifier", "purification", "test double: fine-tune on clean data")
class DoublePurifier(Purifier):
    def __init__(self, epochs: int = 2) -> None:
        if epochs < 1:
            from backdoorguard.errors import BadInput

            raise BadInput(f"epochs {epochs} must be at least 1")
        self.epochs = epochs

    def purify(self, model, clean, *, runtime):
        start = time.perf_counter()
        model = copy.deepcopy(model)
        history = fit(model, clean, TrainConfig(epochs=self.epochs, batch_size=32, lr=1e-3),
                      runtime=runtime)
        return Purified("double-purifier", model, {"epochs": self.epochs},
                        Cost(time.perf_counter() - start, history.passes))


@register_defense("double-training", "training", "test double: plain training, isolates "
                  "the 5 % highest-loss samples")
class DoubleTraining(TrainingDefense):
    def __init__(self, train: TrainConfig | None = None) -> None:
        self.train = train or TrainConfig(epochs=1)

    def fit(self, model, poisoned, *, runtime):
        start = time.perf_counter()
        history = fit(model, poisoned, self.train, runtime=runtime)
        losses = sample_losses(model, poisoned)
        isolated = losses.topk(max(1, len(losses) // 20)).indices.sort().values.tolist()
        return Trained("double-training", model, isolated,
                       Cost(time.perf_counter() - start, history.passes),
                       {"epochs": self.train.epochs})


@register_defense("double-audit", "audit", "test double: flags the 5 % highest-loss samples")
class DoubleAudit(Auditor):
    def audit(self, model, train, oracle=None, *, runtime):
        start = time.perf_counter()
        losses = sample_losses(model, train)
        flagged = losses.topk(max(1, len(losses) // 20)).indices.sort().values.tolist()
        return Audit("double-audit", flagged, losses.tolist(), [],
                     Cost(time.perf_counter() - start, 1.0, {"oracle_calls": 0.0}),
                     {"threshold": float(losses[flagged].min())})


@register_defense("double-broken", "purification", "test double that fails (or, in a "
                  "worker process, kills its process)")
class DoubleBroken(Purifier):
    def __init__(self, crash: bool = False) -> None:
        self.crash = crash

    def purify(self, model, clean, *, runtime):
        if self.crash and multiprocessing.parent_process() is not None:
            os._exit(3)
        raise RuntimeError("broken on purpose")
