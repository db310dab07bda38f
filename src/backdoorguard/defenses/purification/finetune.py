"""FT: fine-tune every layer on the clean data (the baseline of every
purification paper; lr 0.01, 10 epochs, SGD with momentum)."""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from ...config import TrainConfig
from ...core.runtime import Runtime
from ...core.types import ArrayDataset
from ..base import Purified, register_defense
from .common import FineTuningPurifier


@register_defense("ft", "purification", "fine-tuning: every layer trained on the clean data "
                  "(baseline)")
class FineTune(FineTuningPurifier):
    """Fine-tune all layers with the task loss (cross-entropy; regression: the
    span-normalised squared error of `core.training.task_loss`)."""

    def __init__(self, *, train: TrainConfig | dict[str, Any] | None = None,
                 min_steps: int = 100, batchnorm: str = "frozen",
                 augment: str | bool = "auto") -> None:
        super().__init__(train=train, min_steps=min_steps, batchnorm=batchnorm,
                         augment=augment)

    def purify(self, model: nn.Module, clean: ArrayDataset, *,
               runtime: Runtime = Runtime()) -> Purified:
        start = time.perf_counter()
        model = self.prepare(model, clean, runtime)
        history = self.finetune(model, clean, runtime)
        return self.result(model, {"layers": "all", "epochs": len(history.epochs)}, start,
                           [history], clean.task)
