"""Blended (Chen et al., 2017): x' = (1 − α)·x + α·pattern, with a fixed pattern."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.types import TaskSpec
from ..errors import BadInput
from .base import Attack

PATTERNS = ("noise", "sine")


class Blended(Attack):
    """Blend every input with one fixed `pattern` of the input's shape.

    `pattern`: "noise" (uniform noise over the input range, seeded; the common
    stand-in for the paper's Hello-Kitty image), "sine" (a smooth wave), or the
    path of a `.npy` array of the input's shape with values in the input range
    (read with `allow_pickle=False`). α = 0.15 by default (ALGORITHMS.md).
    Works for images and series alike.
    """

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", alpha: float = 0.15, pattern: str = "noise",
                 seed: int = 0) -> None:
        super().__init__(task, target=target, mode=mode)
        if not 0.0 < alpha < 1.0:
            raise BadInput(f"blend alpha {alpha} must lie strictly between 0 and 1")
        self.alpha, self.pattern_name, self.seed = alpha, pattern, seed
        self.pattern = self._pattern(pattern, seed)

    def _pattern(self, pattern: str, seed: int) -> torch.Tensor:
        shape = self.task.input_shape
        lo, hi = self.task.input_range
        if pattern == "noise":
            generator = torch.Generator().manual_seed(seed)
            return lo + (hi - lo) * torch.rand(shape, generator=generator)
        if pattern == "sine":
            # a wave along the last axis, phase-shifted along the others
            steps = torch.arange(shape[-1], dtype=torch.float32)
            rows = torch.arange(int(np.prod(shape[:-1])), dtype=torch.float32)[:, None]
            wave = torch.sin(2 * math.pi * (steps / max(shape[-1] / 4, 1) + rows / 7))
            return (lo + (hi - lo) * (wave + 1) / 2).reshape(shape)
        path = Path(pattern)
        if path.suffix != ".npy" or not path.is_file():
            raise BadInput(f"blend pattern {pattern!r} must be one of {', '.join(PATTERNS)} "
                           "or an existing .npy file")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise BadInput(f"cannot read blend pattern {pattern!r}: {error}") from None
        if tuple(array.shape) != shape:
            raise BadInput(f"blend pattern {pattern!r} has shape {array.shape}, inputs have {shape}")
        return torch.as_tensor(array, dtype=torch.float32).clamp(lo, hi)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        pattern = self.pattern.to(x.device, x.dtype)
        return self.clip((1 - self.alpha) * x + self.alpha * pattern)

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "pattern": self.pattern_name, "seed": self.seed}
