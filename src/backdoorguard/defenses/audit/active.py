"""Active learning with the audit's loop: train a clean surrogate with few oracle calls.

Label where the surrogate is wrong, but never twice in the same place. One round:

1. **spread**: pick `search_share` of the round's calls from the unlabelled pool
   by farthest-point sampling (each pick the pool input farthest from every
   input labelled so far) and run the audit's screening on them (no density
   test: every large error is worth labelling) — the oracle labels them and
   gives the current surrogate's error there;
2. **error-weighted spread**: spend the rest of the round the same way, but with
   each pool input's distance to the labelled set multiplied by
   (error of its nearest screened input ÷ their median) ^ `error_power`, so the
   picks crowd where the surrogate is most wrong and still keep apart;
3. retrain from scratch on everything labelled so far.

Random sampling, the baseline, labels the same number of points drawn from the
pool (the data's law). Both train with the same `TrainConfig` and the same step
count rule, so the comparison measures only where the labels come from.

Rounds end at the calls in `checkpoints` (and grow by `growth` in between), so
the model at each checkpoint has used exactly that many oracle calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ...config import TrainConfig
from ...core.oracle import Oracle
from ...core.runtime import Runtime
from ...core.training import fit
from ...core.types import ArrayDataset, TaskSpec
from ...errors import BadInput
from .error_maximizers import Box, ErrorMaximizers

ModelFactory = Callable[[], nn.Module]


@dataclass
class Curve:
    """Test error of the surrogate after each checkpoint's oracle calls."""

    calls: list[int] = field(default_factory=list)
    rmse: list[float] = field(default_factory=list)
    labelled: list[int] = field(default_factory=list)

    def add(self, calls: int, rmse: float, labelled: int) -> None:
        self.calls.append(calls)
        self.rmse.append(rmse)
        self.labelled.append(labelled)

    def to_dict(self) -> dict[str, list]:
        return {"calls": self.calls, "rmse": self.rmse, "labelled": self.labelled}


def train_steps(config: TrainConfig, size: int, steps: int) -> TrainConfig:
    """`config` with enough epochs for about `steps` optimiser steps on `size` samples."""
    per_epoch = max(1, math.ceil(size / config.batch_size))
    return config.model_copy(update={"epochs": max(1, math.ceil(steps / per_epoch))})


def schedule(initial: int, checkpoints: Sequence[int], growth: float) -> list[int]:
    """Cumulative call counts at which rounds end: geometric steps through the checkpoints."""
    ends, current = [], initial
    for target in sorted(checkpoints):
        while current * growth < target:
            current = int(round(current * growth))
            ends.append(current)
        current = target
        ends.append(target)
    return sorted(set(e for e in ends if e > initial))


def spread(pool_u: torch.Tensor, gap: torch.Tensor, count: int,
           weight: torch.Tensor | None = None) -> torch.Tensor:
    """Up to `count` pool inputs by (weighted) farthest-point sampling. `gap` holds
    each pool input's distance to the nearest labelled input and is updated in
    place: a picked input's gap (and its duplicates') becomes 0, and an input
    with gap 0 is never picked, so nothing is labelled twice. Fewer than `count`
    come back only when no unlabelled input is left."""
    if weight is not None:
        # A zero weight (a zero screened error) still ranks by gap; inf/NaN cannot win.
        weight = weight.nan_to_num(nan=1e-6, posinf=1e30).clamp_min(1e-6)
    picks = []
    for _ in range(count):
        score = gap * weight if weight is not None else gap.clone()
        score[~(gap > 0)] = -float("inf")
        i = int(score.argmax())
        if score[i] == -float("inf"):
            break
        picks.append(i)
        torch.minimum(gap, (pool_u - pool_u[i]).norm(dim=1), out=gap)
    return torch.tensor(picks, dtype=torch.long)


def too_few(pool: torch.Tensor, wanted: int) -> BadInput:
    return BadInput(f"the pool holds too few distinct unlabelled inputs for {wanted} more "
                    f"oracle calls ({len(pool)} inputs in all); give a larger pool")


def check_checkpoints(checkpoints: Sequence[int], pool_size: int) -> None:
    if not checkpoints:
        raise BadInput("active learning needs at least one checkpoint (a number of oracle calls)")
    if max(checkpoints) > pool_size:
        raise BadInput(f"the pool holds {pool_size} inputs, fewer than {max(checkpoints)} calls")


@dataclass
class ActiveLearning:
    """Active learning of a regression surrogate from an oracle (see module doc).

    Defaults (ours, chosen on barrier-option with calibration seeds 100–102,
    docs/regression-audit.md): 250 random initial labels, rounds growing ×1.5,
    half of each round spread over the pool and screened, half error-weighted
    spread with `error_power` 1, 3,000 optimiser steps per training. Screening
    only, no ascent: ascents label inputs the data's law rarely holds.
    """

    initial: int = 250
    growth: float = 1.5
    search_share: float = 0.5
    error_power: float = 1.0
    steps: int = 3000
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=1, batch_size=64, optimizer="adam", lr=2e-3))
    search: dict[str, Any] = field(default_factory=lambda: {
        "random_share": 0.0, "ascents": 0, "steps": 4, "fd_step": 0.02,
        "dense_seeds_only": False})

    def __post_init__(self) -> None:
        if self.initial < 2 or not self.growth > 1.0 or not 0.0 < self.search_share <= 1.0 \
                or not self.error_power >= 0:
            raise BadInput(f"active learning: initial {self.initial} must be ≥ 2, growth "
                           f"{self.growth} > 1, search_share {self.search_share} in (0, 1] "
                           f"and error_power {self.error_power} ≥ 0")

    def fit_model(self, factory: ModelFactory, data: ArrayDataset, runtime: Runtime) -> nn.Module:
        model = factory()
        fit(model, data, train_steps(self.train, len(data), self.steps), runtime=runtime,
            description=f"train on {len(data)} labels")
        return model

    def run(self, factory: ModelFactory, pool: torch.Tensor, task: TaskSpec, oracle: Oracle,
            checkpoints: Sequence[int], evaluate: Callable[[nn.Module], float], *,
            runtime: Runtime = Runtime()) -> Curve:
        """Label actively up to max(checkpoints) calls; test error at each checkpoint."""
        check_checkpoints(checkpoints, len(pool))
        generator = torch.Generator().manual_seed(runtime.seed)
        first = torch.randperm(len(pool), generator=generator)[:self.initial]
        labelled = ArrayDataset(pool[first], oracle(pool[first]).to(torch.float32), task)
        box = Box(oracle)
        pool_u = box.unit(pool)
        gap = torch.cdist(pool_u, pool_u[first]).min(1).values
        gap[first] = 0.0          # cdist's matrix-product form leaves ~1e-4 on the diagonal
        curve = Curve()
        model = self.fit_model(factory, labelled, runtime)
        for number, end in enumerate(schedule(self.initial, checkpoints, self.growth)):
            round_calls = end - oracle.calls
            wanted = max(1, int(self.search_share * round_calls))
            # Picked on a copy: the search may label fewer of them (with uniform seeds
            # or ascents in `search`), so the gaps follow what it really labelled.
            screen = spread(pool_u, gap.clone(), wanted)
            if len(screen) < wanted:
                raise too_few(pool, round_calls)
            search = ErrorMaximizers(budget=len(screen), **self.search)
            search.audit(model, ArrayDataset(pool[screen], torch.zeros(len(screen), task.num_outputs),
                                             task), oracle,
                         runtime=replace(runtime, seed=runtime.seed * 1009 + number + 1))
            queries = search.queries_
            queried_u = box.unit(queries.x)
            for point in queried_u:
                torch.minimum(gap, (pool_u - point).norm(dim=1), out=gap)
            x, z = [queries.x], [queries.z]
            remaining = end - oracle.calls
            if remaining > 0:
                nearest = torch.cdist(pool_u, queried_u).argmin(1)
                error = queries.error[nearest] / queries.error.median().clamp_min(1e-12)
                picked = spread(pool_u, gap, remaining, error.pow(self.error_power))
                if len(picked) < remaining:
                    raise too_few(pool, remaining)
                x.append(pool[picked])
                z.append(oracle(x[-1]))
            labelled = ArrayDataset(torch.cat([labelled.x, *x]),
                                    torch.cat([labelled.y, *z]).to(torch.float32), task)
            model = self.fit_model(factory, labelled, runtime)
            if end in checkpoints:
                curve.add(end, evaluate(model), len(labelled))
        self.labelled_ = labelled
        return curve

    def run_random(self, factory: ModelFactory, pool: torch.Tensor, task: TaskSpec,
                   oracle: Oracle, checkpoints: Sequence[int],
                   evaluate: Callable[[nn.Module], float], *,
                   runtime: Runtime = Runtime()) -> Curve:
        """The baseline: the same budgets spent on random pool points."""
        generator = torch.Generator().manual_seed(runtime.seed)
        order = torch.randperm(len(pool), generator=generator)
        check_checkpoints(checkpoints, len(pool))
        curve = Curve()
        labels = torch.zeros(0, task.num_outputs)
        for end in sorted(checkpoints):
            x = pool[order[:end]]
            labels = torch.cat([labels, oracle(x[len(labels):]).to(torch.float32)])
            data = ArrayDataset(x, labels, task)
            curve.add(end, evaluate(self.fit_model(factory, data, runtime)), len(data))
        return curve
