"""NAD: neural attention distillation (Li et al., ICLR 2021).

A teacher is the backdoored model fine-tuned on the clean data (FT); the
student, a fresh copy of the backdoored model, is then fine-tuned with the task
loss plus β × the distance between its attention maps and the teacher's at the
output of every stage. Attention of a stage output A (B×C×…): the channel mean
of |A|^p (p = 2), flattened and L2-normalised; the distance is the mean squared
difference. β = 5000 for classification (the paper's CIFAR setting).

**Ours:** regression uses the same attention term with the span-normalised
squared error as the task loss (β unchanged: the attention term does not depend
on the label scale). Gradients are clipped to norm 5 (as for every purifier
here, `common`): on small attention maps (4×4 on digits) β × the attention
term's gradient threw SGD at lr 0.01 to NaN within three steps. The teacher trains for `teacher_epochs` (default 10) with at
least half of `min_steps`; the student as the other purifiers.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from ...config import TrainConfig
from ...core.runtime import Runtime
from ...core.training import StepLoss, task_loss
from ...core.types import ArrayDataset, Batch
from ...errors import BadInput
from ..base import Purified, register_defense
from .common import FineTuningPurifier


def attention(stage_output: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """[B, spatial] L2-normalised channel mean of |A|^p. The norm has a small
    constant under the root: a map that is zero everywhere (a dead ReLU stage on a
    tiny input) would otherwise give NaN gradients."""
    power = stage_output.abs().pow(p)
    # a stage of flat features (mlp) has no channels to average: its units are the map
    flat = power.mean(1).flatten(1) if power.dim() > 2 else power
    return flat / (flat.pow(2).sum(1, keepdim=True) + 1e-12).sqrt()


@register_defense("nad", "purification", "neural attention distillation from a fine-tuned "
                  "teacher (baseline)")
class NAD(FineTuningPurifier):
    """Distil the attention of a fine-tuned teacher into the student (see module doc)."""

    def __init__(self, *, beta: float = 5000.0, p: float = 2.0, teacher_epochs: int = 10,
                 train: TrainConfig | dict[str, Any] | None = None, min_steps: int = 100,
                 batchnorm: str = "frozen", augment: str | bool = "auto") -> None:
        super().__init__(train=train, min_steps=min_steps, batchnorm=batchnorm,
                         augment=augment)
        if not beta >= 0 or not p > 0 or teacher_epochs < 1:
            raise BadInput(f"nad: beta {beta} must be ≥ 0, p {p} > 0, teacher_epochs "
                           f"{teacher_epochs} ≥ 1")
        self.beta, self.p, self.teacher_epochs = float(beta), float(p), int(teacher_epochs)

    def objective(self, teacher: nn.Module, clean: ArrayDataset):
        loss = task_loss(clean.task, self.train.loss)

        def distil(model: nn.Module, batch: Batch) -> StepLoss:
            with torch.no_grad():
                targets = [attention(a, self.p) for a in teacher.forward_stages(batch.x)]
            stages = model.forward_stages(batch.x)
            outputs = model.head(model.neck(stages[-1]))
            per_sample = loss(outputs, batch.y)
            distance = sum((attention(a, self.p) - t).pow(2).mean()
                           for a, t in zip(stages, targets))
            return StepLoss(per_sample.mean() + self.beta * distance, per_sample, outputs)

        return distil

    def purify(self, model: nn.Module, clean: ArrayDataset, *,
               runtime: Runtime = Runtime()) -> Purified:
        start = time.perf_counter()
        student = self.prepare(model, clean, runtime)
        if not callable(getattr(student, "forward_stages", None)) or not hasattr(student, "neck"):
            raise BadInput("nad needs a model with forward_stages() and a `neck` (the "
                           "convention of backdoorguard.models)")
        teacher = copy.deepcopy(student)
        config = self.config(clean, epochs=self.teacher_epochs, min_steps=self.min_steps // 2)
        taught = self.finetune(teacher, clean, runtime, config=config,
                               description="purify (nad teacher)")
        teacher.eval()
        history = self.finetune(student, clean, runtime, objective=self.objective(teacher, clean))
        changes = {"beta": self.beta, "stages": len(student.stages),
                   "teacher_epochs": len(taught.epochs), "epochs": len(history.epochs)}
        return self.result(student, changes, start, [taught, history], clean.task)
