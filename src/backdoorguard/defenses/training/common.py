"""Pieces ABL and E2ABL share: the flooded ("local gradient ascent") loss with its
γ per number of classes, capped gradient ascent, parameter checks and the record
of a defense that trains in several phases of the one training loop."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ...core.training import History
from ...errors import BadInput
from ..base import Cost

# ABL's γ = 0.5 was set for 10 classes (CIFAR-10, GTSRB's 43 aside), where chance
# loss is ln 10 ≈ 2.3; with 2 classes 0.5 is already near chance (ln 2 ≈ 0.69), so
# flooding there holds nothing back. We keep γ at the same share of chance loss.
PAPER_GAMMA, PAPER_CLASSES = 0.5, 10


def lga_gamma(num_classes: int, gamma: float | None = None) -> float:
    """The flooding level: `gamma` when given, else 0.5 · ln K / ln 10."""
    if gamma is not None:
        return float(gamma)
    return PAPER_GAMMA * math.log(num_classes) / math.log(PAPER_CLASSES)


def flooded(per_sample: torch.Tensor, gamma: float) -> torch.Tensor:
    """ABL's local gradient ascent on a batch, sign(ℓ̄ − γ)·ℓ̄ of the batch's mean
    loss ℓ̄: descent while it is above γ, ascent below. The batch, not each sample,
    is held near γ, so the quickly learnt (backdoor) samples sink below γ while
    clean ones stay above; flooding each sample would hold all of them at γ."""
    mean = per_sample.mean()
    return torch.sign(mean - gamma) * mean


def capped_ascent(per_sample: torch.Tensor, cap: float) -> torch.Tensor:
    """−min(ℓ, cap): gradient ascent that stops pushing a sample once its loss
    passes `cap` (uncapped ascent on a saturated backdoor runs off to infinity
    and takes the clean classes with it)."""
    return -per_sample.clamp(max=cap)


def default_cap(num_classes: int, cap: float | None) -> float:
    """The ascent cap: `cap` when given, else 2 · ln K (the sample's given label
    then has probability ≤ 1/K², far below chance)."""
    return float(cap) if cap is not None else 2.0 * math.log(num_classes)


def check_params(method: str, checks: Mapping[str, tuple[bool, Any, str]]) -> None:
    """`BadInput` naming the first parameter whose check fails and what it allows:
    {name: (ok, value, allowed)}."""
    for name, (ok, value, allowed) in checks.items():
        if not ok:
            raise BadInput(f"{method}: {name} {value!r} is out of range; allowed: {allowed}")


def count(share: float, n: int) -> int:
    """How many of `n` samples a share selects: at least one, at most all."""
    return max(1, min(n, round(share * n)))


class Phases:
    """The record of a defense made of several `fit` calls: every epoch tagged with
    its phase, passes counted over the data set the defense was given."""

    def __init__(self, size: int) -> None:
        self.size = max(size, 1)
        self.epochs: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.steps = 0
        self.samples_seen = 0

    def add(self, phase: str, history: History, data_size: int) -> None:
        """Append one `fit` call's epochs; `data_size` is the size of the data it ran on."""
        done = 0.0
        for record in history.epochs:
            # a record's passes are cumulative over that call's own data
            self.samples_seen += round((record["passes"] - done) * data_size)
            done = record["passes"]
            self.epochs.append({**record, "phase": phase,
                                "passes": self.samples_seen / self.size})
        self.seconds += history.seconds
        self.steps += history.steps

    def cost(self, **counters: float) -> Cost:
        return Cost(self.seconds, self.samples_seen / self.size,
                    {"steps": float(self.steps), **counters})
