"""Input-aware dynamic backdoor (Nguyen & Tran, NeurIPS 2020).

A pattern generator g and a mask generator m (small conv encoder–decoders) make
a different trigger for every input: x' = x + (g(x) − x) ⊙ m(x). The mask
generator is trained first (its masks must be sparse and diverse); then g and
the model are trained together on batches where a `rate` share carries each
input's own trigger with the target label, a `cross_ratio` share carries the
trigger made for *another* input with the true label (so a trigger only works
on the input it was made for), and the rest is clean. A diversity loss keeps
g from collapsing to one pattern.

Defaults from the paper: mask density 0.032 (ours: at least 8 pixels on tiny
images), λ_norm = 100, λ_div = 1, cross share 0.1. Ours: both generators are kept small (CPU) and use no BatchNorm; the
near-binary mask is a steep sigmoid of the mask generator's output; g and the
model share the training run's optimiser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.types import ArrayDataset, Batch, PoisonedDataset, TaskSpec
from ..errors import BadInput
from .base import Attack

EPS = 1e-6


class Generator(nn.Module):
    """Conv encoder–decoder mapping an image to an image-sized map in (0, 1)."""

    def __init__(self, channels_in: int, channels_out: int, size: tuple[int, int], width: int = 16):
        super().__init__()
        self.size = size
        self.encode = nn.Sequential(
            nn.Conv2d(channels_in, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.decode = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, channels_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.encode(x)
        hidden = F.interpolate(hidden, size=self.size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.decode(hidden))


class InputAware(Attack):
    """The dynamic trigger; `apply` works once `train_model` (or `load_tensors`)
    has trained the generators."""

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", cross_ratio: float = 0.1, mask_density: float | None = None,
                 lambda_norm: float = 100.0, lambda_div: float = 1.0, mask_epochs: int = 10,
                 width: int = 16, seed: int = 0) -> None:
        super().__init__(task, target=target, mode=mode)
        if len(task.input_shape) != 3:
            raise BadInput(f"input-aware needs C×H×W images, not {task.input_shape}")
        if mask_density is None:
            # the paper's 3.2 % of a 32×32 image is 33 pixels; on 8×8 digits it would
            # be 2, too few to carry a trigger, so keep at least 8 pixels
            mask_density = max(0.032, 8 / (task.input_shape[1] * task.input_shape[2]))
        if not 0 <= cross_ratio < 1 or not 0 < mask_density < 1:
            raise BadInput(f"cross_ratio {cross_ratio} must lie in [0, 1) and mask_density "
                           f"{mask_density} in (0, 1)")
        if mask_epochs < 1 or width < 1:
            raise BadInput(f"mask_epochs {mask_epochs} and width {width} must be positive")
        self.cross_ratio, self.mask_density = cross_ratio, mask_density
        self.lambda_norm, self.lambda_div = lambda_norm, lambda_div
        self.mask_epochs, self.width, self.seed = mask_epochs, width, seed
        channels, height, width_px = task.input_shape
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.pattern_net = Generator(channels, channels, (height, width_px), width)
            self.mask_net = Generator(channels, 1, (height, width_px), width)
        self.trained = False

    # ------------------------------------------------------------ the trigger

    def _pattern(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.task.input_range
        return lo + (hi - lo) * self.pattern_net(x)

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(20 * (self.mask_net(x) - 0.5))

    def _stamp(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """x with the trigger generated from `source` (x itself, or another input)."""
        mask = self._mask(source)
        return self.clip(x + (self._pattern(source) - x) * mask)

    @torch.no_grad()
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if not self.trained:
            raise BadInput("input-aware has no trigger yet: it is learnt while training the "
                           "model (train_model) or loaded with the model's checkpoint")
        device = x.device
        self.pattern_net.to(device).eval()
        self.mask_net.to(device).eval()
        return torch.cat([self._stamp(x[i:i + 512], x[i:i + 512]) for i in range(0, len(x), 512)])

    # ------------------------------------------------------------ training

    @staticmethod
    def _diversity(x: torch.Tensor, x2: torch.Tensor, out: torch.Tensor, out2: torch.Tensor) -> torch.Tensor:
        """Mean of ‖x − x2‖ / ‖out − out2‖: small when different inputs get different outputs.

        The root is taken of the mean square plus EPS²: a saturated generator gives
        two inputs exactly the same output in float32 (a sigmoid is exactly 1 above
        17, and the steep mask is one value wherever the generator is below −14),
        and the plain root's gradient at 0 is infinite, times a zero difference:
        NaN, which Adam spreads to every weight."""
        d_in = (x - x2).flatten(1).pow(2).mean(1).sqrt()
        d_out = ((out - out2).flatten(1).pow(2).mean(1) + EPS ** 2).sqrt()
        return (d_in / (d_out + EPS)).mean()

    def _mask_objective(self, container: nn.Module, batch: Batch):
        from ..core.training import StepLoss

        x, x2 = batch.x, torch.roll(batch.x, 1, dims=0)
        m, m2 = self._mask(x), self._mask(x2)
        norm = F.relu(m.mean() - self.mask_density)
        return StepLoss(self.lambda_norm * norm + self.lambda_div * self._diversity(x, x2, m, m2))

    def _joint_objective(self, loss):
        from ..core.training import StepLoss

        def objective(container: nn.Module, batch: Batch):
            x, y = batch.x, batch.y
            n_bd = round(self.rate * len(x))
            n_cross = round(self.cross_ratio * len(x))
            x2 = torch.roll(x, 1, dims=0)
            with torch.no_grad():
                masks = self._mask(torch.cat([x[:n_bd], x2[n_bd:n_bd + n_cross]]))
            patterns = self._pattern(torch.cat([x[:n_bd], x2[n_bd:n_bd + n_cross]]))
            head = x[:n_bd + n_cross]
            stamped = self.clip(head + (patterns - head) * masks)
            inputs = torch.cat([stamped, x[n_bd + n_cross:]])
            targets = torch.cat([self.target(y[:n_bd]), y[n_bd:]])
            outputs = container["model"](inputs)
            per_sample = loss(outputs, targets)
            diversity = self._diversity(x[:n_bd], x2[:n_bd], patterns[:n_bd],
                                        self._pattern(x2[:n_bd])) if n_bd > 1 else 0.0
            return StepLoss(per_sample.mean() + self.lambda_div * diversity, per_sample, None)

        return objective

    def train_model(self, model, data, config, rate, runtime):
        from ..core.training import fit, task_loss

        if not 0.0 < rate < 1.0:
            raise BadInput(f"poison rate {rate} must lie strictly between 0 and 1")
        self.rate = rate
        container = nn.ModuleDict({"model": model, "pattern": self.pattern_net, "mask": self.mask_net})
        mask_config = config.model_copy(update={"epochs": self.mask_epochs, "optimizer": "adam",
                                                "lr": 1e-2, "schedule": "none", "weight_decay": 0.0})
        fit(container, data, mask_config, objective=self._mask_objective,
            parameters=list(self.mask_net.parameters()), runtime=runtime,
            description="input-aware: mask generator")
        history = fit(container, data, config, objective=self._joint_objective(task_loss(data.task, config.loss)),
                      parameters=list(model.parameters()) + list(self.pattern_net.parameters()),
                      runtime=runtime, description="input-aware: model and pattern generator")
        self.trained = True
        self.pattern_net.eval()
        self.mask_net.eval()
        return history, data

    def poison(self, data: ArrayDataset, rate: float, seed: int) -> PoisonedDataset:
        if not self.trained:
            raise BadInput("input-aware poisons while training the model; train a model with it "
                           "first (its trigger is learnt), then it can poison other data")
        return super().poison(data, rate, seed)

    # ------------------------------------------------------------ state

    def tensors(self) -> dict[str, torch.Tensor]:
        state = {f"pattern.{k}": v for k, v in self.pattern_net.state_dict().items()}
        state.update({f"mask.{k}": v for k, v in self.mask_net.state_dict().items()})
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        from ..core.checkpoint import load_weights

        for prefix, net in (("pattern.", self.pattern_net), ("mask.", self.mask_net)):
            part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            load_weights(net, part, f"the input-aware {prefix[:-1]} generator")
        self.trained = True

    def params(self) -> dict[str, Any]:
        return {"cross_ratio": self.cross_ratio, "mask_density": self.mask_density,
                "lambda_norm": self.lambda_norm, "lambda_div": self.lambda_div,
                "mask_epochs": self.mask_epochs, "width": self.width, "seed": self.seed}
