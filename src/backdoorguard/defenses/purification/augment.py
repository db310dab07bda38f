"""Augmenting the defender's clean set while a purifier fine-tunes.

With 5 % clean data a time-series purifier holds a handful of series (GunPoint:
2, BasicMotions: 4). Fine-tuning on them either memorises them (GunPoint: clean
accuracy 1.00 → 0.70) or stops at once because the backdoored model already
fits them (BasicMotions: zero loss, zero gradient, the backdoor untouched).
Augmenting the clean set is what the small-data literature does about both; for
series the usual label-preserving changes (Um et al. 2017, "Data augmentation of
wearable sensor data"; Le Guennec et al. 2016, "Data augmentation for time series
classification using convolutional neural networks"; Iwana & Uchida 2021, survey):

- **time shift** (crop and pad): each series moves by up to `shift` × its length
  either way, the emptied steps repeat the edge value;
- **amplitude scaling**: each channel of each series is multiplied by a factor
  drawn uniformly from [1 − `scale`, 1 + `scale`];
- **jitter**: Gaussian noise of `jitter` × the channel's standard deviation.

Results are clipped to the task's input range. Each training batch gets fresh
draws from a generator seeded once per fine-tuning run, so the same seed gives
the same run; the clean set itself is never changed.

`augment` (a parameter of every purifier): "auto" (default) augments
classification series and nothing else; "series" asks for it (refused on other
data); "off" never augments (YAML reads `--param augment=off` as false and
`on` as true: false means "off", true "series"). Why "auto" stops there: images and tabular data
have no augmentation here (the image results were measured without it and stay
as they are), and a regression label may depend on a series' amplitude or
timing, which these changes alter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...core.training import Objective, StepLoss
from ...core.types import Batch, TaskSpec
from ...errors import BadInput, one_of

AUGMENT_MODES = ("auto", "series", "off")


def augment_mode(value: str | bool) -> str:
    """The mode `value` names; booleans (how YAML reads off and on) count as "off"
    and "series"."""
    if isinstance(value, bool):
        return "series" if value else "off"
    one_of("augment", value, AUGMENT_MODES)
    return value


def augmentation_for(mode: str | bool, task: TaskSpec) -> str:
    """What `mode` means for data of `task`: "series" or "off"."""
    mode = augment_mode(mode)
    if mode == "off":
        return "off"
    series = task.modality == "series"
    if mode == "series":
        if not series:
            raise BadInput(f"augment='series' needs series data; this task is {task.modality} "
                           f"(allowed here: 'auto' or 'off')")
        return "series"
    return "series" if series and task.is_classification else "off"


class SeriesAugment:
    """Random time shift, amplitude scaling and jitter of C×T series batches
    (see module doc); `__call__(x)` returns a new tensor of x's shape."""

    def __init__(self, task: TaskSpec, *, shift: float = 0.1, scale: float = 0.2,
                 jitter: float = 0.05, seed: int = 0) -> None:
        if len(task.input_shape) != 2:
            raise BadInput(f"series augmentation needs C×T inputs, not {task.input_shape}")
        if not (0 <= shift < 1 and 0 <= scale < 1 and jitter >= 0):
            raise BadInput(f"series augmentation: shift {shift} and scale {scale} must lie "
                           f"in [0, 1), jitter {jitter} ≥ 0")
        self.task, self.shift, self.scale, self.jitter = task, shift, scale, jitter
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, steps = x.shape
        g = self.generator
        most = int(round(self.shift * steps))
        offsets = torch.randint(-most, most + 1, (n, 1), generator=g)
        index = (torch.arange(steps).unsqueeze(0) - offsets).clamp(0, steps - 1)
        out = x.gather(2, index.to(x.device).unsqueeze(1).expand(n, channels, steps))
        factors = 1 + self.scale * (2 * torch.rand(n, channels, 1, generator=g) - 1)
        out = out * factors.to(out)
        noise = torch.randn(out.shape, generator=g).to(out)
        out = out + self.jitter * x.std(dim=2, keepdim=True) * noise
        low, high = self.task.input_range
        return out.clamp(low, high)


def augmented(objective: Objective, transform: Callable[[torch.Tensor], torch.Tensor]) -> Objective:
    """`objective` on batches whose inputs pass through `transform` first."""

    def on_augmented(model: torch.nn.Module, batch: Batch) -> StepLoss:
        return objective(model, batch._replace(x=transform(batch.x)))

    return on_augmented
