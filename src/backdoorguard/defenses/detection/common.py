"""Pieces the detectors share.

- `prepared`: the checks before a scan (the task; `models.check_convention` for
  detectors that read features and the head), then the model and data on the device.
- `TriggerGenerator`: the reversed trigger of DRMGuard and FeatureRE, an
  input-to-input network in residual form.
- `MaskTrigger`: Neural Cleanse's mask and pattern, x' = (1 - m) x + m p.
- `Reversal` and `reverse`: the inspected model frozen in eval mode behind a
  trainable trigger, trained through the one training loop (`core.training.fit`)
  with a method's own objective and hooks.
- `anomaly_index` and `most_anomalous`: the MAD anomaly index of Neural Cleanse
  and the class it points at.
- `output_collapse` and `target_residual`: how far reversed inputs collapse the
  outputs, in units of the clean output variance; `collapse_offset`: how far
  from the clean outputs' mean they collapse, in clean standard deviations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...config import TrainConfig
from ...core.runtime import Runtime
from ...core.training import Hook, History, Objective, fit
from ...core.types import ArrayDataset, TaskSpec
from ...errors import BadInput
from ...models.base import check_convention, has_convention
from ..base import Detection, Detector

EPS = 1e-8


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise BadInput(f"{name} {value!r} must be a whole number")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 \
            or not math.isfinite(value):
        raise BadInput(f"{name} {value!r} must be a positive number")


def prepared(detector, model: nn.Module, clean: ArrayDataset, runtime: Runtime, *,
             features: bool) -> tuple[nn.Module, ArrayDataset, float]:
    """Checks before a scan (task; the model convention when `features`), then the
    model in eval mode and at most `detector.max_samples` clean inputs on the
    runtime's device, and the start time."""
    detector.check_task(clean.task)
    if features:
        check_convention(model, detector.name)
    start = time.perf_counter()
    device = runtime.torch_device
    clean = limit(clean, detector.max_samples, runtime.seed).to(device)
    return model.to(device).eval(), clean, start


class PerTaskDetector(Detector):
    """A detector with one scan for classification (`_classification`) and one for
    regression (`_regression`), both called as `scan(model, clean, runtime, start)`
    after the common checks; `needs_features` asks for the `forward_features` /
    `head` convention."""

    needs_features = False

    def inspect(self, model: nn.Module, clean: ArrayDataset, *,
                runtime: Runtime = Runtime()) -> Detection:
        model, clean, start = prepared(self, model, clean, runtime, features=self.needs_features)
        scan = self._classification if clean.task.is_classification else self._regression
        return scan(model, clean, runtime, start)


def limit(clean: ArrayDataset, max_samples: int, seed: int) -> ArrayDataset:
    """At most `max_samples` of the clean set (a seeded choice): scans stay cheap."""
    if len(clean) <= max_samples:
        return clean
    order = torch.randperm(len(clean), generator=torch.Generator().manual_seed(seed))
    return clean.subset(order[:max_samples].sort().values)


def straight_through_clip(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Clip in the forward pass, identity in the backward pass: a hard clip stops
    gradients at saturated pixels and left generators stuck at constant images."""
    return x + (x.clamp(low, high) - x).detach()


def coordinate_channels(height: int, width: int) -> torch.Tensor:
    """Two channels holding each pixel's row and column in [-1, 1]."""
    rows = torch.linspace(-1, 1, height).view(height, 1).expand(height, width)
    cols = torch.linspace(-1, 1, width).view(1, width).expand(height, width)
    return torch.stack([rows, cols])


class TriggerGenerator(nn.Module):
    """x' = clip(x + Δ(x, coords) + b) on C×H×W images.

    Δ is a small conv encoder–decoder fed the image and two coordinate channels,
    so it can act at a fixed place; b is a free per-pixel bias map, so it can draw
    a fixed pattern. Δ's last layer and b start at zero: the generator starts as
    the identity. The clip is straight-through (see `straight_through_clip`).
    """

    def __init__(self, task: TaskSpec, width: int = 16):
        super().__init__()
        if len(task.input_shape) != 3:
            raise BadInput(f"the trigger generator takes C×H×W images, not inputs of shape "
                           f"{task.input_shape}")
        channels, height, width_px = task.input_shape
        self.low, self.high = task.input_range
        self.register_buffer("coords", coordinate_channels(height, width_px))
        self.encode = nn.Sequential(nn.Conv2d(channels + 2, width, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.decode = nn.Conv2d(2 * width, channels, 3, padding=1)
        nn.init.zeros_(self.decode.weight)
        nn.init.zeros_(self.decode.bias)
        self.bias = nn.Parameter(torch.zeros(task.input_shape))

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        """Δ(x) + b before clipping, in the input's units."""
        span = self.high - self.low
        inputs = torch.cat([(x - self.low) / span, self.coords.expand(len(x), -1, -1, -1)], 1)
        near = self.encode(inputs)
        far = F.interpolate(self.down(near), size=x.shape[-2:], mode="nearest")
        return span * (self.decode(torch.cat([near, far], 1)) + self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return straight_through_clip(x + self.perturbation(x), self.low, self.high)


class MaskTrigger(nn.Module):
    """Neural Cleanse's trigger: x' = (1 - m) x + m p, with m = sigmoid(mask
    logits) shared over channels (1×H×W or 1×T) and p = sigmoid(pattern logits)
    scaled to the input range. `count` triggers are held side by side (one per
    class), so all classes are reversed in one batched run; `forward` applies the
    first."""

    def __init__(self, task: TaskSpec, count: int = 1, mask_init: float = 0.1):
        super().__init__()
        shape = task.input_shape
        self.low, self.high = task.input_range
        mask_shape = (count, 1, *shape[1:]) if len(shape) > 1 else (count, *shape)
        self.mask_logits = nn.Parameter(torch.full(mask_shape,
                                                   math.log(mask_init / (1 - mask_init))))
        self.pattern_logits = nn.Parameter(torch.zeros(count, *shape))

    @property
    def mask(self) -> torch.Tensor:
        return torch.sigmoid(self.mask_logits)

    @property
    def pattern(self) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.pattern_logits)

    def sizes(self) -> torch.Tensor:
        """Mean mask value of each trigger, [count]."""
        return self.mask.flatten(1).mean(1)

    def stamped(self, x: torch.Tensor) -> torch.Tensor:
        """Every trigger on every input: [count, B, ...]."""
        mask = self.mask.unsqueeze(1)
        return (1 - mask) * x.unsqueeze(0) + mask * self.pattern.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask[0]
        return (1 - mask) * x + mask * self.pattern[0]

    def tensors(self, index: int = 0) -> dict[str, torch.Tensor]:
        return {"mask": self.mask[index].detach().cpu(),
                "pattern": self.pattern[index].detach().cpu()}


class Reversal(nn.Module):
    """The inspected model behind a trainable trigger. `train()` only reaches the
    trigger: the model stays in eval mode (its batch-norm statistics are never
    updated) and `fit` trains only the parameters it is given."""

    def __init__(self, model: nn.Module, trigger: nn.Module, extra: Sequence[nn.Parameter] = ()):
        super().__init__()
        self.model = model
        self.trigger = trigger
        self.extra = nn.ParameterList(extra)

    def train(self, mode: bool = True) -> Reversal:
        self.training = mode
        self.trigger.train(mode)
        self.model.eval()
        return self

    def trainable(self) -> list[nn.Parameter]:
        return [*self.trigger.parameters(), *self.extra]


def reverse(reversal: Reversal, clean: ArrayDataset, objective: Objective, *, steps: int,
            lr: float, batch_size: int, runtime: Runtime, hooks: Sequence[Hook] = (),
            description: str = "reverse") -> History:
    """Train the trigger (and any extra parameters) for about `steps` Adam steps
    (rounded up to whole passes over `clean`) through `core.training.fit`."""
    batches = clean.num_batches(batch_size, drop_last=True)
    config = TrainConfig(epochs=max(1, math.ceil(steps / batches)), batch_size=batch_size,
                         optimizer="adam", lr=lr, schedule="none", amp=False, drop_last=True)
    quiet = replace(runtime, progress=False)
    return fit(reversal, clean, config, objective=objective, hooks=hooks,
               parameters=reversal.trainable(), runtime=quiet, description=description)


def head_angles(features: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """[B, d] angles (radians) between each feature vector and each head row."""
    cosine = F.cosine_similarity(features.unsqueeze(1), head.weight.unsqueeze(0), dim=-1,
                                 eps=EPS)
    return torch.arccos(cosine.clamp(-1 + 1e-6, 1 - 1e-6))


@torch.no_grad()
def clean_statistics(model: nn.Module, x: torch.Tensor, device: torch.device,
                     batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per-output mean and variance of the outputs and (for a model with the
    feature convention) variance of the feature–head angles on clean inputs: the
    denominators that make DRMGuard's terms unit-free."""
    model.eval()
    if not has_convention(model):
        outputs = torch.cat([model(x[i:i + batch_size].to(device))
                             for i in range(0, len(x), batch_size)])
        return {"output_var": outputs.var(0).clamp_min(EPS), "output_mean": outputs.mean(0)}
    features = torch.cat([model.forward_features(x[i:i + batch_size].to(device))
                          for i in range(0, len(x), batch_size)])
    outputs = model.head(features)
    return {"output_var": outputs.var(0).clamp_min(EPS),
            "angle_var": head_angles(features, model.head).var(0).clamp_min(EPS),
            "output_mean": outputs.mean(0)}


def anomaly_index(values: Sequence[float]) -> list[float]:
    """How far below the median each value lies, in units of the consistency-
    scaled median absolute deviation (1.4826·MAD), as Neural Cleanse ranks its
    per-class mask norms. Small values (easy triggers) get large indices."""
    tensor = torch.tensor(list(values), dtype=torch.float64)
    median = tensor.median()
    mad = 1.4826 * (tensor - median).abs().median()
    return ((median - tensor) / mad.clamp_min(1e-12)).tolist()


def most_anomalous(per_class: list[dict[str, Any]], key: str) -> int:
    """Record in each class's entry the anomaly index of its `key`; the class
    with the largest index (Neural Cleanse's and FeatureRE's candidate target)."""
    indices = anomaly_index([entry[key] for entry in per_class])
    for entry, index in zip(per_class, indices):
        entry["anomaly_index"] = index
    return max(range(len(indices)), key=lambda t: indices[t])


def output_collapse(outputs: torch.Tensor, output_var: torch.Tensor) -> torch.Tensor:
    """The share of the clean output variance left in `outputs` (mean over the
    outputs; 1 = untouched, 0 = every input sent to one output)."""
    return (outputs.var(0) / output_var).mean()


def target_residual(outputs: torch.Tensor, target: torch.Tensor,
                    output_var: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of `outputs` from `target`, each output in units of
    its clean variance."""
    return ((outputs - target) ** 2 / output_var).mean()


def collapse_offset(outputs: torch.Tensor, output_mean: torch.Tensor,
                    output_var: torch.Tensor) -> torch.Tensor:
    """Per output, how far the collapse point (the mean of `outputs`) lies from
    the clean outputs' mean, in clean standard deviations: unit-free."""
    return (outputs.mean(0) - output_mean).abs() / output_var.sqrt()


def effective_size(size: float, residual: float, bound: float) -> float:
    """A trigger's size, inflated when it left more than `bound` of the clean output
    variance: a small trigger that did not collapse the outputs is not evidence."""
    return size * max(1.0, residual / bound)
