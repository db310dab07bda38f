"""What every purifier shares: the fine-tuning settings, a copy of the model to
change, BatchNorm kept in eval mode, and the run through `core.training.fit`.

A purifier holds a few hundred clean samples, sometimes a handful (5 % of
GunPoint is two series). Two consequences shape the defaults:

- **BatchNorm statistics stay frozen** (`batchnorm="frozen"`, the default): in
  train mode the running means and variances are re-estimated from the tiny clean
  batches and wreck the model (an earlier attempt lost time-series models this
  way). `FrozenBatchNorm` puts every BatchNorm layer in eval mode at the start of
  each epoch (after `fit` has switched the model to train mode); their affine
  weights still train. `batchnorm="train"` restores the papers' setting.
- **Length in optimiser steps as well as epochs**: ten epochs of two series are
  ten steps. The run lasts `max(epochs, ceil(min_steps / batches per epoch))`
  epochs, which keeps the cost of small clean sets bounded by `min_steps`
  batches and of large ones by `epochs` passes.
- **Batch 64** (the papers: 128, D3 256): the papers' clean sets hold 2,500
  images; 5 % of mnist5k is 200, a single batch of 256, and full-batch steps to
  `min_steps` cost a third of the model's training time (measured: D3 on
  mnist5k-small would have taken 33 %, FT 15 %).
- **The clean set is augmented on classification series** (`augment="auto"`,
  the default; see `augment`): fresh random shifts, amplitude scalings and
  jitter of the clean series in every batch, applied by wrapping the objective
  that `fit` calls, so every purifier gets it through `finetune`. Images and
  tabular data are fine-tuned on the clean samples as they are.
- **Gradients clipped to norm 5**: the papers' SGD at lr 0.01 on a model trained
  with Adam threw regression models (span-normalised squared error, labels of
  small span: Covid3Month) and NAD's attention term to NaN within a few steps.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...config import TrainConfig, train_settings
from ...core.runtime import Runtime
from ...core.training import Hook, History, Objective, TrainState, default_objective, fit
from ...core.types import ArrayDataset, TaskSpec
from ...errors import BadInput, one_of
from ...models import check_convention
from ..base import Cost, Purified, Purifier
from .augment import SeriesAugment, augment_mode, augmentation_for, augmented

BATCHNORM_MODES = ("frozen", "train")
BATCHNORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


class FrozenBatchNorm(Hook):
    """Keep every BatchNorm layer in eval mode while `fit` trains: running
    statistics are used and never updated (affine weights still learn)."""

    def on_epoch_start(self, state: TrainState) -> None:
        for module in state.model.modules():
            if isinstance(module, BATCHNORM_TYPES):
                module.eval()


def batchnorm_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the BatchNorm running statistics (to check they stay put)."""
    return {name: value.detach().clone() for name, value in model.named_buffers()
            if name.endswith(("running_mean", "running_var"))}


class FineTuningPurifier(Purifier):
    """Base of the purifiers in this package: stores the fine-tuning settings
    (`train` overrides a method's `DEFAULT_TRAIN`) and runs `fit`."""

    DEFAULT_TRAIN = TrainConfig(epochs=10, batch_size=64, optimizer="sgd", lr=0.01,
                                momentum=0.9, weight_decay=5e-4, schedule="cosine",
                                grad_clip=5.0, amp=False)

    def __init__(self, *, train: TrainConfig | dict[str, Any] | None = None,
                 min_steps: int = 100, batchnorm: str = "frozen",
                 augment: str | bool = "auto") -> None:
        one_of("batchnorm mode", batchnorm, BATCHNORM_MODES)
        augment = augment_mode(augment)
        if min_steps < 0:
            raise BadInput(f"min_steps {min_steps} must be ≥ 0")
        self.train = train_settings(train, self.DEFAULT_TRAIN, f"{self.name} train")
        self.min_steps = int(min_steps)
        self.batchnorm = batchnorm
        self.augment = augment

    # ------------------------------------------------------------ helpers for subclasses

    def prepare(self, model: nn.Module, clean: ArrayDataset, runtime: Runtime) -> nn.Module:
        """Checks, then the copy of `model` (on the runtime's device) to change."""
        self.check_task(clean.task)
        augmentation_for(self.augment, clean.task)  # refuses augment="series" on other data
        check_convention(model, self.name)
        if len(clean) == 0:
            raise BadInput(f"{self.name} needs clean data; the clean set is empty")
        runtime.apply()
        return copy.deepcopy(model).to(runtime.torch_device).eval()

    def config(self, clean: ArrayDataset, *, epochs: int | None = None,
               min_steps: int | None = None, **changes: Any) -> TrainConfig:
        """The training config for a run over `clean`: at least `min_steps` steps."""
        base = self.train.model_copy(update=changes)
        epochs = base.epochs if epochs is None else epochs
        min_steps = self.min_steps if min_steps is None else min_steps
        per_epoch = max(1, clean.num_batches(base.batch_size, base.drop_last))
        return base.model_copy(update={"epochs": max(epochs, math.ceil(min_steps / per_epoch))})

    def finetune(self, model: nn.Module, data: ArrayDataset, runtime: Runtime, *,
                 config: TrainConfig | None = None, objective: Objective | None = None,
                 hooks: Sequence[Hook] = (), parameters: Sequence[nn.Parameter] | None = None,
                 description: str | None = None) -> History:
        """`fit` with this purifier's settings, BatchNorm handling and augmentation
        (fresh draws, seeded from the runtime's seed, for every batch)."""
        hooks = list(hooks)
        if self.batchnorm == "frozen":
            hooks.insert(0, FrozenBatchNorm())
        config = config or self.config(data)
        if augmentation_for(self.augment, data.task) == "series":
            objective = augmented(objective or default_objective(data.task, config),
                                  SeriesAugment(data.task, seed=runtime.seed))
        return fit(model, data, config, objective=objective, hooks=hooks,
                   parameters=parameters, runtime=runtime,
                   description=description or f"purify ({self.name})")

    def result(self, model: nn.Module, changes: dict[str, Any], start: float,
               histories: Sequence[History], task: TaskSpec, **counters: float) -> Purified:
        """The `Purified` record: the model in eval mode on the CPU, what changed
        (with the BatchNorm mode and the augmentation used on `task`), the cost."""
        passes = sum(h.passes for h in histories)
        steps = sum(h.steps for h in histories)
        changes = {"batchnorm": self.batchnorm,
                   "augment": augmentation_for(self.augment, task), **changes}
        return Purified(self.name, model.cpu().eval(), changes,
                        Cost(time.perf_counter() - start, passes,
                             {"steps": float(steps), **counters}))
