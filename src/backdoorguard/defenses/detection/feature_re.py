"""FeatureRE (Wang et al., NeurIPS 2022): reverse-engineer the trigger in feature
space, for classification and, generalised here, for regression.

A transformation T (our `TriggerGenerator`) and a feature mask m (sigmoid over
the penultimate features F) are learnt together so that
- T(x) reaches the target: CE(f(T(x)), t) (classification, per class t) or
  mean_j (f_j(T(x)) − y_t,j)² / Var[f_j(x)] with y_t a free variable (regression);
- the features inside m are constant over inputs: Var[m ⊙ F(T(x))] / Var[F(x)];
- the features outside m keep their clean values: ((1 − m) ⊙ (F(T(x)) − F(x)))² / Var[F(x)];
- T stays close to x: a hinge on mean |T(x) − x| above `bound` (on the [0, 1] scale);
- m is small: a hinge on mean(m) above `mask_budget`.

Only a backdoored model has a small feature subspace that moves every input to
one target under a bounded change. Score (ours, the paper decides on one class
at a time): classification, the largest MAD anomaly index of the per-class
final target losses (flagged above 2); regression, 1 − the output variance left
on T(x) (flagged above a threshold, 0.9 until calibrated).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...core.runtime import Runtime
from ...core.training import StepLoss, predict
from ...core.types import ArrayDataset, Batch
from ..base import Cost, Detection, register_defense
from .common import (EPS, PerTaskDetector, Reversal, TriggerGenerator, check_positive,
                     clean_statistics, most_anomalous, output_collapse, reverse, target_residual)

HINGE_WEIGHT = 50.0


@register_defense("featurere", "detection",
                  "FeatureRE: a bounded input transformation and a feature mask that move "
                  "every input to one target; for regression the target is a free variable",
                  modalities=("image",))
class FeatureRE(PerTaskDetector):
    """`bound`: allowed mean |T(x) − x| on [0, 1]; `mask_budget`: allowed share of
    features in m; `feature_weight`: weight of the two feature terms."""

    needs_features = True

    def __init__(self, bound: float = 0.05, mask_budget: float = 0.05,
                 feature_weight: float = 1.0, steps: int = 200, lr: float = 1e-3,
                 batch_size: int = 32, width: int = 16, anomaly_threshold: float = 2.0,
                 threshold: float | None = None, max_samples: int = 500):
        for name, value in (("bound", bound), ("mask_budget", mask_budget),
                            ("feature_weight", feature_weight), ("lr", lr),
                            ("anomaly_threshold", anomaly_threshold)):
            check_positive(f"featurere {name}", value)
        for name, value in (("steps", steps), ("batch_size", batch_size), ("width", width),
                            ("max_samples", max_samples)):
            check_positive(f"featurere {name}", value, integer=True)
        self.bound, self.mask_budget, self.feature_weight = bound, mask_budget, feature_weight
        self.steps, self.lr, self.batch_size, self.width = steps, lr, batch_size, width
        self.anomaly_threshold, self.max_samples = anomaly_threshold, max_samples
        self.threshold = threshold

    def params(self) -> dict[str, Any]:
        return {"bound": self.bound, "mask_budget": self.mask_budget,
                "feature_weight": self.feature_weight, "steps": self.steps, "lr": self.lr,
                "batch_size": self.batch_size, "width": self.width,
                "max_samples": self.max_samples}

    @staticmethod
    @torch.no_grad()
    def feature_variance(model: nn.Module, clean: ArrayDataset) -> torch.Tensor:
        """Per-feature variance on the clean inputs: the unit of the feature terms."""
        return torch.cat([model.forward_features(clean.x[i:i + 256])
                          for i in range(0, len(clean), 256)]).var(0).clamp_min(EPS)

    def _run(self, model: nn.Module, clean: ArrayDataset, target_loss, extra: list[nn.Parameter],
             feature_var: torch.Tensor,
             runtime: Runtime) -> tuple[TriggerGenerator, torch.Tensor, float]:
        """One reversal; returns T, the feature mask and the passes it took."""
        device = runtime.torch_device
        torch.manual_seed(runtime.seed)
        generator = TriggerGenerator(clean.task, self.width).to(device)
        dim = model.head.in_features
        mask_logits = nn.Parameter(torch.zeros(dim, device=device))
        span = clean.task.input_range[1] - clean.task.input_range[0]

        def objective(wrapper: Reversal, batch: Batch) -> StepLoss:
            moved = wrapper.trigger(batch.x)
            features = model.forward_features(moved)
            with torch.no_grad():
                original = model.forward_features(batch.x)
            mask = torch.sigmoid(mask_logits)
            inside = ((mask * features).var(0) / feature_var).mean()
            outside = ((1 - mask) * (features - original)).pow(2).div(feature_var).mean()
            size = (moved - batch.x).abs().mean() / span
            loss = (target_loss(model.head(features), batch)
                    + self.feature_weight * (inside + outside)
                    + HINGE_WEIGHT * (F.relu(size - self.bound)
                                      + F.relu(mask.mean() - self.mask_budget)))
            return StepLoss(loss)

        history = reverse(Reversal(model, generator, [mask_logits, *extra]), clean, objective,
                          steps=self.steps, lr=self.lr, batch_size=self.batch_size,
                          runtime=runtime, description="featurere")
        return generator, torch.sigmoid(mask_logits.detach()), history.passes

    def _classification(self, model, clean, runtime, start) -> Detection:
        device = runtime.torch_device
        per_class, generators, passes = [], [], 0.0
        feature_var = self.feature_variance(model, clean)  # the same for every class
        for target in range(clean.task.num_outputs):
            def target_loss(outputs, batch, target=target):
                return F.cross_entropy(outputs, torch.full_like(batch.y, target))

            generator, mask, used = self._run(model, clean, target_loss, [], feature_var,
                                              replace(runtime, seed=runtime.seed + target))
            moved = predict(generator, clean.x, batch_size=256, device=device).to(device)
            with torch.no_grad():
                outputs = model(moved)
                wanted = torch.full_like(clean.y, target)
                loss = float(F.cross_entropy(outputs, wanted))
                others = clean.y != target
                success = float((outputs.argmax(1)[others] == target).float().mean())
            per_class.append({"class": target, "target_loss": loss, "success": success,
                              "mask_share": float(mask.mean())})
            generators.append(generator)
            passes += used + 1
        target = most_anomalous(per_class, "target_loss")
        score = per_class[target]["anomaly_index"]
        threshold = self.anomaly_threshold if self.threshold is None else self.threshold
        evidence = {"per_class": per_class, "params": self.params(), "clean_samples": len(clean),
                    "rule": "max MAD anomaly index of the reversed target loss"}
        return Detection("featurere", score, threshold, bool(score > threshold),
                         target, evidence,
                         Cost(time.perf_counter() - start, passes,
                              {"classes": len(per_class)}),
                         trigger=generators[target].cpu().eval())

    def _regression(self, model, clean, runtime, start) -> Detection:
        device = runtime.torch_device
        stats = clean_statistics(model, clean.x, device)
        target = nn.Parameter(stats["output_mean"].clone())

        def target_loss(outputs, batch):
            return target_residual(outputs, target, stats["output_var"])

        generator, mask, passes = self._run(model, clean, target_loss, [target],
                                            self.feature_variance(model, clean), runtime)
        moved = predict(generator, clean.x, batch_size=256, device=device).to(device)
        with torch.no_grad():
            outputs = model(moved)
            collapse = float(output_collapse(outputs, stats["output_var"]))
            size = float((moved - clean.x).abs().mean()
                         / (clean.task.input_range[1] - clean.task.input_range[0]))
        score = 1.0 - collapse
        threshold = 0.9 if self.threshold is None else self.threshold
        evidence = {"collapse": collapse, "trigger_size": size, "mask_share": float(mask.mean()),
                    "params": self.params(), "clean_samples": len(clean)}
        return Detection("featurere", score, threshold, bool(score > threshold),
                         outputs.mean(0).cpu().tolist(), evidence,
                         Cost(time.perf_counter() - start, passes + 2, {}),
                         trigger=generator.cpu().eval())
