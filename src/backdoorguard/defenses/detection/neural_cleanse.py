"""Neural Cleanse (Wang et al., IEEE S&P 2019), for classification and, generalised
here, for regression.

A trigger is a mask m and a pattern p: x' = (1 - m) x + m p (m shared over
channels).

Classification: for each class t minimise CE(f(x'), t) + λ·mean(m); a backdoor
target needs a far smaller mask than the other classes. The score is the largest
MAD anomaly index of the per-class mask sizes (`anomaly_index`); flagged when it
exceeds 2, the paper's rule. The mask size of a class whose trigger moved fewer
than `min_success` of its inputs counts as size · min_success / success (ours: it
did not find a full trigger, and a hard substitute broke the MAD on small sets).

Regression (ours): the target y_t is a free variable optimised with the trigger;
the loss is mean_j (f_j(x') - y_t,j)² / Var[f_j(x)] + λ·mean(m), unit-free as
DRMGuard's. The score is −size of the mask (inflated like DRMGuard's when the
outputs did not collapse), compared with a threshold calibrated on clean models.

Per-class calibration (ours, classification): some classes need small triggers
on clean models too (on the mnist5k zoo class 8 is the most anomalous class of
11 of 12 clean models), so the largest raw index does not single out a backdoor.
`calibrate` therefore first learns, from the known-clean models it scans, each
class's mean and spread of the anomaly index (`fit_clean`, stored as
`class_standardise`), and the calibrated score is

    z_c = (a_c − mean_c) / max(sd_c, min_spread),    score = max_c z_c

with the estimated target argmax_c z_c; the threshold is then set on it by the
usual rule. The floor `min_spread` (one unit of the anomaly index, itself in
units of 1.4826·MAD) keeps a class whose index hardly varied over a few clean
models from dominating, and is the spread when one clean model gives none;
chosen on the two classification zoos over calibration draws (no floor, 0.25,
0.5, 1: docs/detection.md).
Uncalibrated, the paper's rule stands (largest index > 2); `per_class=False`
keeps the raw largest index under calibration too. Regression has no classes:
calibration sets its threshold only.

Our choices: all classes are reversed in one batched run (the per-class losses
are summed, so each class still gets its own gradient); λ is fixed rather than
adapted during the run (the paper raises and lowers it to hold the attack success
near 99 %); the mask starts at 0.1 everywhere. Defaults (λ = 10 on the mean mask,
300 Adam steps at lr 0.1, batch 32) were chosen on the demo's digits models
(cnn-small, 3×3 BadNets patch on 8×8 digits): a weak size cost (λ ≤ 3) lets every
class's mask grow to 20–50 % of the image and the patch class does not stand out
(anomaly index < 2); λ = 10 with 150 steps had not converged (backdoored 1.58,
clean 1.78); 300 steps separate them (2.44 vs 1.33). See docs/detection.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...core.training import History, StepLoss, predict
from ...core.types import Batch, TaskSpec
from ...errors import BadInput
from ..base import Cost, Detection, register_defense
from .common import (MaskTrigger, PerTaskDetector, Reversal, check_positive, clean_statistics,
                     effective_size, most_anomalous, output_collapse, reverse, target_residual)


def class_standardisation(indices: Sequence[Sequence[float]], min_spread: float
                          ) -> list[list[float]]:
    """Each class's [mean, spread] of the anomaly index over clean models (rows of
    `indices`, one per model): the sample standard deviation, at least `min_spread`
    (also the spread when one model gives none)."""
    rows = [list(row) for row in indices]
    values = np.asarray(rows if len({len(row) for row in rows}) == 1 else [], dtype=float)
    if values.ndim != 2 or values.shape[1] < 2 or not np.isfinite(values).all():
        raise BadInput("nc per-class calibration needs the finite anomaly indices of at "
                       "least one clean model, the same classes for each")
    spread = values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    return [[float(mean), float(max(sd, min_spread))]
            for mean, sd in zip(values.mean(0), spread)]


def standardised_indices(indices: Sequence[float], class_standardise: Sequence[Sequence[float]]
                         ) -> list[float]:
    """z_c = (a_c − mean_c) / spread_c for one model's anomaly indices."""
    return [(index - mean) / spread for index, (mean, spread) in zip(indices, class_standardise)]


def check_class_standardise(value: Any) -> list[list[float]]:
    """`class_standardise` as floats, or a one-line BadInput naming what is wrong."""
    allowed = ("must be a list of [mean, spread] per class (at least two classes, finite "
               "numbers, spread > 0), as `calibrate` writes it")
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise BadInput(f"nc class_standardise {value!r} {allowed}")
    for c, pair in enumerate(value):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in pair) or not pair[1] > 0):
            raise BadInput(f"nc class_standardise[{c}] {pair!r} {allowed}")
    return [[float(mean), float(spread)] for mean, spread in value]


@register_defense("nc", "detection",
                  "Neural Cleanse: per-class mask and pattern, MAD anomaly index; for "
                  "regression the target is a free variable", modalities=("image", "series"))
class NeuralCleanse(PerTaskDetector):
    """`cost`: λ on the mean mask value; `steps`, `lr`, `batch_size`: the Adam run per
    class (or per model for regression); `anomaly_threshold`: the MAD rule's bound
    (classification; with `class_standardise`, the bound on max_c z_c until
    `calibrate` sets one); `threshold`: the score bound (regression, −mask size, or
    set by `calibrate`). Classification only: `per_class`: whether `calibrate`
    standardises each class's index by the clean models (`fit_clean`);
    `class_standardise`: each class's [mean, spread], set by it; `min_spread`:
    the smallest spread (see the module docstring)."""

    # settings that change how a scan is scored, not the scan itself
    calibration_keys = ("per_class", "min_spread", "class_standardise")

    def __init__(self, cost: float = 10.0, steps: int = 300, lr: float = 0.1,
                 batch_size: int = 32, min_success: float = 0.9, anomaly_threshold: float = 2.0,
                 threshold: float | None = None, collapse_bound: float = 0.2,
                 max_samples: int = 500, per_class: bool = True, min_spread: float = 1.0,
                 class_standardise: Sequence[Sequence[float]] | None = None):
        check_positive("nc cost", cost)
        for name, value in (("steps", steps), ("batch_size", batch_size),
                            ("max_samples", max_samples)):
            check_positive(f"nc {name}", value, integer=True)
        check_positive("nc lr", lr)
        check_positive("nc anomaly_threshold", anomaly_threshold)
        check_positive("nc collapse_bound", collapse_bound)
        if not 0 < min_success <= 1:
            raise BadInput(f"nc min_success {min_success!r} must lie in (0, 1]")
        self.cost, self.steps, self.lr, self.batch_size = cost, steps, lr, batch_size
        self.min_success, self.anomaly_threshold = min_success, anomaly_threshold
        self.collapse_bound, self.max_samples = collapse_bound, max_samples
        self.threshold = threshold
        if not isinstance(per_class, bool):
            raise BadInput(f"nc per_class {per_class!r} must be true or false")
        check_positive("nc min_spread", min_spread)
        self.per_class, self.min_spread = per_class, float(min_spread)
        self.class_standardise: list[list[float]] | None = None
        if class_standardise is not None:
            self.set_fit(class_standardise)

    def params(self) -> dict[str, Any]:
        return {"cost": self.cost, "steps": self.steps, "lr": self.lr,
                "batch_size": self.batch_size, "min_success": self.min_success,
                "collapse_bound": self.collapse_bound, "max_samples": self.max_samples,
                "per_class": self.per_class, "min_spread": self.min_spread,
                **self.fitted()}

    def check_task(self, task: TaskSpec) -> None:
        super().check_task(task)
        if self.class_standardise is None:
            return
        if not task.is_classification:
            raise BadInput("nc class_standardise is for classification models; a regression "
                           "model has no classes (calibrate it without it)")
        if len(self.class_standardise) != task.num_outputs:
            raise BadInput(f"nc class_standardise has {len(self.class_standardise)} classes, "
                           f"the model {task.num_outputs}: calibrate on models of this task")

    # ------------------------------------------------------------ calibration

    def fitted(self) -> dict[str, Any]:
        """What `fit_clean` learnt, as constructor parameters (empty when nothing)."""
        return {} if self.class_standardise is None else {
            "class_standardise": self.class_standardise}

    def set_fit(self, class_standardise: Sequence[Sequence[float]]) -> None:
        """Use per-class statistics learnt before (checked)."""
        if not self.per_class:
            raise BadInput("nc class_standardise needs per_class=true")
        self.class_standardise = check_class_standardise(class_standardise)

    def fit_indices(self, indices: Sequence[Sequence[float]]) -> list[list[float]]:
        """Learn `class_standardise` from clean models' per-class anomaly indices."""
        self.class_standardise = class_standardisation(indices, self.min_spread)
        return self.class_standardise

    def standardised(self, indices: Sequence[float]) -> tuple[float, int, list[float]]:
        """(score max_c z_c, its class, every z_c) of one model's anomaly indices
        under the learnt `class_standardise`."""
        z = standardised_indices(indices, self.class_standardise)
        target = max(range(len(z)), key=z.__getitem__)
        return z[target], target, z

    def fit_clean(self, detections: Mapping[str, Detection]) -> dict[str, float]:
        """Learn each class's mean and spread from scans of known-clean models and
        return their scores under it (what `calibrate` sets the threshold from);
        regression scans, or `per_class=False`: their scores as they are."""
        if not self.per_class or not all("per_class" in d.evidence
                                         for d in detections.values()):
            return {name: d.score for name, d in detections.items()}
        indices = {name: [c["anomaly_index"] for c in d.evidence["per_class"]]
                   for name, d in detections.items()}
        self.fit_indices(list(indices.values()))
        return {name: self.standardised(values)[0] for name, values in indices.items()}

    # ------------------------------------------------------------ classification

    def _classification(self, model, clean, runtime, start) -> Detection:
        per_class, triggers, history = self._reverse_classes(model, clean, runtime)
        classes = len(per_class)
        passes, steps = history.passes * classes + 1, history.steps
        target = most_anomalous(per_class, "counted_size")
        score = per_class[target]["anomaly_index"]
        evidence = {"per_class": per_class, "params": self.params(),
                    "clean_samples": len(clean), "rule": "max MAD anomaly index of mask size"}
        if self.class_standardise is not None:  # its class count checked by check_task
            evidence.update(raw_score=score, raw_target=target,
                            rule="max over classes of the MAD anomaly index standardised by "
                                 "known-clean models, (a_c - mean_c) / spread_c")
            score, target, z = self.standardised([c["anomaly_index"] for c in per_class])
            for entry, value in zip(per_class, z):
                entry["standardised_index"] = value
        threshold = self.anomaly_threshold if self.threshold is None else self.threshold
        return Detection("nc", score, threshold, bool(score > threshold), target, evidence,
                         Cost(time.perf_counter() - start, passes,
                              {"classes": classes, "steps": steps}),
                         trigger=triggers.tensors(target))

    def _reverse_classes(self, model, clean, runtime) -> tuple[list[dict[str, Any]],
                                                                 MaskTrigger, History]:
        """One trigger per class, all reversed in one run: each class's entry (mask
        size, the share of other classes' inputs it moves, the size as counted),
        the triggers and the run's history."""
        device = runtime.torch_device
        classes = clean.task.num_outputs
        torch.manual_seed(runtime.seed)
        triggers = MaskTrigger(clean.task, count=classes).to(device)
        wanted = torch.arange(classes, device=device)

        def objective(wrapper: Reversal, batch: Batch) -> StepLoss:
            stamped = wrapper.trigger.stamped(batch.x)
            outputs = model(stamped.flatten(0, 1))
            per_class = F.cross_entropy(outputs, wanted.repeat_interleave(len(batch.x)),
                                        reduction="none").view(classes, -1).mean(1)
            # classes are independent: the sum gives each its own gradient
            return StepLoss((per_class + self.cost * wrapper.trigger.sizes()).sum())

        history = reverse(Reversal(model, triggers), clean, objective, steps=self.steps,
                          lr=self.lr, batch_size=self.batch_size, runtime=runtime,
                          description="nc")
        per_class = []
        sizes = triggers.sizes().detach().cpu()
        for target in range(classes):
            others = clean.y != target
            with torch.no_grad():
                stamped = triggers.stamped(clean.x[others])[target]
                predicted = model(stamped).argmax(1)
            success = float((predicted == target).float().mean()) if others.any() else 0.0
            size = float(sizes[target])
            per_class.append({"class": target, "mask_size": size, "success": success,
                              "counted_size": size * max(1.0, self.min_success
                                                         / max(success, 1e-3))})
        return per_class, triggers, history

    # ------------------------------------------------------------ regression

    def _regression(self, model, clean, runtime, start) -> Detection:
        device = runtime.torch_device
        stats = clean_statistics(model, clean.x, device)
        torch.manual_seed(runtime.seed)
        trigger = MaskTrigger(clean.task).to(device)
        target = nn.Parameter(stats["output_mean"].clone())
        reversal = Reversal(model, trigger, [target])

        def objective(wrapper: Reversal, batch: Batch) -> StepLoss:
            outputs = model(wrapper.trigger(batch.x))
            residual = target_residual(outputs, target, stats["output_var"])
            return StepLoss(residual + self.cost * wrapper.trigger.sizes().sum())

        history = reverse(reversal, clean, objective, steps=self.steps, lr=self.lr,
                          batch_size=self.batch_size, runtime=runtime, description="nc")
        reversed_x = predict(trigger, clean.x, batch_size=256, device=device)
        with torch.no_grad():
            outputs = model(reversed_x.to(device))
            collapse = float(output_collapse(outputs, stats["output_var"]))
        size = float(trigger.sizes().detach()[0])
        score = -effective_size(size, collapse, self.collapse_bound)
        threshold = -0.03 if self.threshold is None else self.threshold
        evidence = {"mask_size": size, "collapse": collapse, "params": self.params(),
                    "clean_samples": len(clean), "collapsed": collapse <= self.collapse_bound}
        return Detection("nc", score, threshold,
                         bool(score > threshold and collapse <= self.collapse_bound),
                         outputs.mean(0).cpu().tolist(), evidence,
                         Cost(time.perf_counter() - start, history.passes + 2,
                              {"steps": history.steps}),
                         trigger=trigger.tensors())
