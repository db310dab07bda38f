"""ABL, anti-backdoor learning (Li, Lyu, Koren, Lyu, Li & Ma, NeurIPS 2021;
ALGORITHMS.md §3): backdoor samples are learnt much faster than clean ones, so
a model trained to hold every loss near a floor γ shows them with the lowest loss.

    defense = ABL(train=TrainConfig(epochs=30))
    trained = defense.fit(model, poisoned)     # -> Trained (model, isolated indices)

Three phases of the one training loop, on one model:

1. Isolation (`isolation_epochs`, the paper's 20 of 100: by default a fifth of
   `train.epochs`): train with the flooded loss sign(ℓ − γ)·ℓ. **(ours)** γ is
   0.5 · ln K / ln 10 — the paper's 0.5 at ten classes, the same share of chance
   loss for K classes (0.5 is near chance for 2 classes and isolates nothing).
2. Isolate the `isolation_share` (1 %) of samples with the lowest loss. **(ours)**
   The rank is on the mean per-sample loss over the last `rank_epochs` (3)
   isolation epochs, as recorded by the loop during training: a single epoch's
   rank swung between precision 0.03 and 1.0 in our prototype.
3. Train on the rest for the remaining `train.epochs − isolation_epochs` epochs
   (the model keeps learning from where isolation left it), then unlearn the
   isolated set. **(ours)** Unlearning is Adam at `unlearning_lr` (5e-4) on the
   clean CE of a batch of the rest minus the capped CE of the isolated samples
   (cap 2 · ln K), stopped as soon as the model's accuracy on the isolated
   samples (their given labels) is ≤ `stop_acc` (0.2), at most
   `unlearning_epochs` passes over the rest. The paper's plain SGD ascent at
   5e-4 did nothing to a saturated backdoor in our prototype, SGD at 1e-2 wrecked
   the model, and ascent alone on a poorly isolated set wiped out the target class.

Classification only: the flooding level and the stop rule are defined by
classes. See docs/abl.md for the measurements behind these choices.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...config import TrainConfig, train_settings
from ...core.runtime import Runtime
from ...core.training import (Hook, Objective, PerSampleLoss, StepLoss, TrainState, fit,
                              predict, task_loss)
from ...core.types import ArrayDataset, Batch
from ..base import Trained, TrainingDefense, register_defense
from .common import (Phases, capped_ascent, check_params, count, default_cap, flooded,
                     lga_gamma)


def lga_objective(loss: PerSampleLoss, gamma: float) -> Objective:
    """The isolation objective: the flooded loss; the raw per-sample losses are
    what the loop records for ranking."""

    def objective(model: nn.Module, batch: Batch) -> StepLoss:
        outputs = model(batch.x)
        per_sample = loss(outputs, batch.y)
        return StepLoss(flooded(per_sample, gamma), per_sample, outputs)

    return objective


class MeanLoss(Hook):
    """Sums the loop's per-sample losses over the epochs from `first` on."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.total: torch.Tensor | None = None
        self.epochs = 0

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch < self.first:
            return
        losses = state.sample_losses.detach().float().cpu()
        self.total = losses if self.total is None else self.total + losses
        self.epochs += 1

    @property
    def mean(self) -> torch.Tensor:
        assert self.total is not None, "no epoch was ranked"
        return self.total / self.epochs


class Unlearning:
    """Objective of the unlearning phase: clean CE on the loop's batch (from the
    non-isolated data) minus `weight` × the capped CE of a batch of the isolated
    samples, drawn with its own seeded generator."""

    def __init__(self, isolated: ArrayDataset, cap: float, weight: float, batch_size: int,
                 seed: int) -> None:
        self.isolated, self.cap, self.weight = isolated, cap, weight
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.loss = task_loss(isolated.task)

    def __call__(self, model: nn.Module, batch: Batch) -> StepLoss:
        outputs = model(batch.x)
        clean = self.loss(outputs, batch.y)
        n = len(self.isolated)
        pick = torch.randperm(n, generator=self.generator)[:self.batch_size]
        ascent = capped_ascent(self.loss(model(self.isolated.x[pick]), self.isolated.y[pick]),
                               self.cap)
        return StepLoss(clean.mean() + self.weight * ascent.mean(), clean, outputs)


class StopWhenUnlearnt(Hook):
    """Stops the loop once the model's accuracy on the isolated samples (their given
    labels, eval mode) is ≤ `stop_acc`: checked before the first step and after
    every step."""

    def __init__(self, isolated: ArrayDataset, stop_acc: float) -> None:
        self.isolated, self.stop_acc = isolated, stop_acc
        self.accuracy = float("nan")

    def check(self, state: TrainState) -> None:
        training = state.model.training
        outputs = predict(state.model, self.isolated.x, device=state.device)
        state.model.train(training)
        self.accuracy = float((outputs.argmax(1) == self.isolated.y.cpu()).float().mean())
        state.stop = self.accuracy <= self.stop_acc

    def on_fit_start(self, state: TrainState) -> None:
        self.check(state)

    def after_step(self, state: TrainState, batch: Batch, step: StepLoss) -> None:
        self.check(state)


@register_defense("abl", "training",
                  "anti-backdoor learning: flooded-loss isolation of the 1 % lowest-loss samples, "
                  "training on the rest, unlearning of the isolated set",
                  tasks=("classification",))
class ABL(TrainingDefense):
    """Anti-backdoor learning (see module doc)."""

    def __init__(self, *, train: TrainConfig | dict[str, Any] | None = None,
                 isolation_epochs: int | None = None, isolation_share: float = 0.01,
                 gamma: float | None = None, rank_epochs: int = 3, unlearning_epochs: int = 5,
                 unlearning_lr: float = 5e-4, ascent_cap: float | None = None,
                 ascent_weight: float = 1.0, stop_acc: float = 0.2) -> None:
        self.train = train_settings(train, TrainConfig(), "abl train")
        check_params("abl", {
            "isolation_epochs": (isolation_epochs is None or isolation_epochs >= 1,
                                 isolation_epochs, "an integer ≥ 1 or none"),
            "isolation_share": (0.0 < isolation_share < 1.0, isolation_share, "0 < share < 1"),
            "gamma": (gamma is None or gamma >= 0, gamma, "≥ 0 or none"),
            "rank_epochs": (rank_epochs >= 1, rank_epochs, "an integer ≥ 1"),
            "unlearning_epochs": (unlearning_epochs >= 0, unlearning_epochs, "an integer ≥ 0"),
            "unlearning_lr": (unlearning_lr > 0, unlearning_lr, "> 0"),
            "ascent_cap": (ascent_cap is None or ascent_cap > 0, ascent_cap, "> 0 or none"),
            "ascent_weight": (ascent_weight >= 0, ascent_weight, "≥ 0"),
            "stop_acc": (0.0 <= stop_acc <= 1.0, stop_acc, "0 ≤ stop_acc ≤ 1")})
        self.isolation_epochs = isolation_epochs
        self.isolation_share, self.gamma = float(isolation_share), gamma
        self.rank_epochs, self.unlearning_epochs = int(rank_epochs), int(unlearning_epochs)
        self.unlearning_lr, self.ascent_cap = float(unlearning_lr), ascent_cap
        self.ascent_weight, self.stop_acc = float(ascent_weight), float(stop_acc)

    def fit(self, model: nn.Module, poisoned: ArrayDataset, *,
            runtime: Runtime = Runtime()) -> Trained:
        self.check_task(poisoned.task)
        config, classes = self.train, poisoned.task.num_outputs
        isolation_epochs = self.isolation_epochs or max(1, round(config.epochs / 5))
        gamma = lga_gamma(classes, self.gamma)
        phases = Phases(len(poisoned))

        ranker = MeanLoss(first=max(0, isolation_epochs - self.rank_epochs))
        history = fit(model, poisoned, config.model_copy(update={"epochs": isolation_epochs}),
                      objective=lga_objective(task_loss(poisoned.task), gamma), hooks=[ranker], runtime=runtime,
                      description="abl: isolate")
        phases.add("isolation", history, len(poisoned))
        k = count(self.isolation_share, len(poisoned))
        isolated = ranker.mean.argsort(stable=True)[:k].sort().values
        keep = torch.ones(len(poisoned), dtype=torch.bool)
        keep[isolated] = False
        rest, suspects = poisoned.subset(torch.nonzero(keep).flatten()), poisoned.subset(isolated)

        remaining = max(0, config.epochs - isolation_epochs)
        history = fit(model, rest, config.model_copy(update={"epochs": remaining}),
                      runtime=runtime, description="abl: train on the rest")
        phases.add("training", history, len(rest))

        suspects = suspects.to(runtime.torch_device)  # the stopper and the objective share it
        stopper = StopWhenUnlearnt(suspects, self.stop_acc)
        unlearning = Unlearning(suspects,
                                default_cap(classes, self.ascent_cap), self.ascent_weight,
                                config.batch_size, runtime.seed)
        unlearn_config = config.model_copy(update={
            "epochs": self.unlearning_epochs, "optimizer": "adam", "lr": self.unlearning_lr,
            "weight_decay": 0.0, "schedule": "none"})
        history = fit(model, rest, unlearn_config, objective=unlearning, hooks=[stopper],
                      runtime=runtime, description="abl: unlearn")
        phases.add("unlearning", history, len(rest))

        details = {"gamma": gamma, "isolation_epochs": isolation_epochs,
                   "training_epochs": remaining, "unlearning_steps": history.steps,
                   "isolated_acc_after": stopper.accuracy, "history": phases.epochs}
        return Trained("abl", model.eval(), isolated.tolist(),
                       phases.cost(unlearning_steps=float(history.steps)), details)
