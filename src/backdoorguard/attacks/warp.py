"""WaNet (Nguyen & Tran, ICLR 2021): an invisible trigger made of a smooth warp.

Images: a random k×k field of 2-D displacements, normalised to mean magnitude 1,
upsampled (bicubic) to the image size and scaled by `strength`/size, moves every
pixel a fraction of a pixel to a few pixels; `grid_sample` applies it. Series: the
same with a 1-D field over time (time warping).

Noise mode: with `cross_ratio` > 0, `poison` also warps that many extra samples
(relative to the poisoned count) with the trigger field *plus* per-sample random
noise and keeps their true labels, so the model must learn the exact field, not
"any warp" — this is what keeps WaNet hard to detect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..core.types import ArrayDataset, PoisonedDataset, TaskSpec
from ..errors import BadInput
from .base import Attack


class _Warp(Attack):
    """Shared parameters, noise mode and poisoning of the image and series warps."""

    dims: int = 2

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", k: int = 4, strength: float | None = None,
                 cross_ratio: float = 0.0, seed: int = 0) -> None:
        super().__init__(task, target=target, mode=mode)
        if strength is None:
            strength = self.default_strength(task)
        if len(task.input_shape) != self.dims + 1:
            raise BadInput(f"{self.name} on {task.modality} data needs "
                           f"{'C×H×W' if self.dims == 2 else 'C×T'} inputs, not {task.input_shape}")
        size = min(task.input_shape[1:])
        if not 2 <= k <= size:
            raise BadInput(f"warp control grid k={k} must lie in 2..{size}")
        if strength <= 0:
            raise BadInput(f"warp strength {strength} must be positive")
        if not 0 <= cross_ratio <= 4:
            raise BadInput(f"cross_ratio {cross_ratio} must lie in [0, 4]")
        self.k, self.strength, self.cross_ratio, self.seed = k, strength, cross_ratio, seed
        generator = torch.Generator().manual_seed(seed)
        field = torch.rand(1, self.dims, *([k] * self.dims), generator=generator) * 2 - 1
        self.field = field / field.abs().mean()
        self.grid = self._grid()

    def _grid(self) -> torch.Tensor:
        """Sampling grid (1, H, W, 2) in grid_sample's [−1, 1] coordinates."""
        sizes = self.task.input_shape[1:]
        if self.dims == 2:
            upsampled = F.interpolate(self.field, size=sizes, mode="bicubic", align_corners=True)
            height, width = sizes
            displacement = upsampled.permute(0, 2, 3, 1) / torch.tensor([width, height])
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                                        indexing="ij")
            identity = torch.stack((cols, rows), dim=-1)[None]
        else:
            (steps,) = sizes
            upsampled = F.interpolate(self.field, size=steps, mode="linear", align_corners=True)
            shift = upsampled[:, 0, :] / steps  # (1, T)
            displacement = torch.stack((shift, torch.zeros_like(shift)), dim=-1)[:, None]
            times = torch.linspace(-1, 1, steps)
            identity = torch.stack((times, torch.zeros_like(times)), dim=-1)[None, None]
        return (identity + self.strength * displacement).clamp(-1, 1)

    def _sample(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        grid = grid.to(x.device, x.dtype).expand(len(x), -1, -1, -1)  # one grid, or one per sample
        if self.dims == 2:
            out = F.grid_sample(x, grid, align_corners=True)
        else:
            out = F.grid_sample(x[:, :, None, :], grid, align_corners=True)[:, :, 0, :]
        return self.clip(out)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._sample(x, self.grid)

    def apply_noisy(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The noise-mode warp: the trigger field plus per-sample random noise."""
        sizes = self.task.input_shape[1:]
        noise = torch.rand(len(x), *self.grid.shape[1:], generator=generator) * 2 - 1
        scale = torch.tensor([sizes[-1], sizes[0] if self.dims == 2 else 1])
        if self.dims == 1:
            noise[..., 1] = 0
        grid = (self.grid + noise / scale).clamp(-1, 1)
        return self._sample(x, grid)

    def poison(self, data: ArrayDataset, rate: float, seed: int) -> PoisonedDataset:
        poisoned = super().poison(data, rate, seed)
        count = round(self.cross_ratio * len(poisoned.poison_index))
        if count == 0:
            return poisoned
        generator = torch.Generator().manual_seed(seed + 1)
        free = torch.nonzero(~poisoned.poison_mask).flatten()
        cross = free[torch.randperm(len(free), generator=generator)[:count]]
        poisoned.x[cross] = self.apply_noisy(data.x[cross], generator)
        return poisoned

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "strength": self.strength, "cross_ratio": self.cross_ratio,
                "seed": self.seed}


class WaNet(_Warp):
    """WaNet on images; defaults k = 4, strength s = 0.5 (the paper's)."""

    dims = 2

    @staticmethod
    def default_strength(task: TaskSpec) -> float:
        return 0.5


class TimeWarp(_Warp):
    """WaNet's idea on series: a smooth random warp of the time axis.

    Default strength 0.1·T (ours): displacements of about 5 % of the series'
    length. The image default (s = 0.5, a fraction of a step) leaves a series
    practically unchanged, and UCR training sets are small (10 % of GunPoint's
    50 series is 5 poisons), so a sub-step warp cannot be learnt at all.
    """

    dims = 1

    @staticmethod
    def default_strength(task: TaskSpec) -> float:
        return 0.1 * task.input_shape[-1]
