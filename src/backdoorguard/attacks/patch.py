"""BadNets (Gu et al., 2017): a small fixed patch stamped onto the input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..core.types import TaskSpec
from ..errors import BadInput, one_of
from .base import Attack

CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")
PATTERNS = ("checkerboard", "white", "black", "random")


class BadNets(Attack):
    """A `size`×`size` patch replaces the pixels at `position` (a corner name or
    (row, col) of the patch's top-left pixel), in every channel.

    Defaults: a checkerboard of the input range's extremes, about 10 % of the
    shorter side (at least 3 px), in the bottom-right corner (`margin` pixels in).
    """

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", size: int | None = None,
                 position: str | Sequence[int] = "bottom-right", margin: int = 0,
                 pattern: str = "checkerboard", seed: int = 0) -> None:
        super().__init__(task, target=target, mode=mode)
        if len(task.input_shape) != 3:
            raise BadInput(f"badnets on images needs C×H×W inputs, not {task.input_shape}")
        channels, height, width = task.input_shape
        size = size if size is not None else max(3, round(0.1 * min(height, width)))
        if not 1 <= size <= min(height, width):
            raise BadInput(f"patch size {size} must lie in 1..{min(height, width)}")
        one_of("patch pattern", pattern, PATTERNS)
        if isinstance(position, str):
            one_of("patch position", position, CORNERS)
            row = margin if position.startswith("top") else height - size - margin
            col = margin if position.endswith("left") else width - size - margin
            row, col = max(0, row), max(0, col)
        else:
            row, col = (int(v) for v in position)
        if not (0 <= row <= height - size and 0 <= col <= width - size):
            raise BadInput(f"patch at ({row}, {col}) of size {size} does not fit a "
                           f"{height}×{width} image")
        self.size, self.position, self.margin, self.pattern_name = size, position, margin, pattern
        self.seed = seed
        self.row, self.col = row, col
        self.pattern = self._pattern(channels, size, pattern, seed)

    def _pattern(self, channels: int, size: int, pattern: str, seed: int) -> torch.Tensor:
        lo, hi = self.task.input_range
        if pattern == "checkerboard":
            grid = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 == 0
            values = torch.where(grid, hi, lo)
        elif pattern == "white":
            values = torch.full((size, size), hi)
        elif pattern == "black":
            values = torch.full((size, size), lo)
        else:
            generator = torch.Generator().manual_seed(seed)
            values = lo + (hi - lo) * (torch.rand(size, size, generator=generator) > 0.5).float()
        return values.expand(channels, size, size).clone()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        r, c, s = self.row, self.col, self.size
        out[..., r:r + s, c:c + s] = self.pattern.to(out.device, out.dtype)
        return out

    @property
    def mask(self) -> torch.Tensor:
        """Boolean H×W map of the pixels the trigger sets."""
        _, height, width = self.task.input_shape
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[self.row:self.row + self.size, self.col:self.col + self.size] = True
        return mask

    def params(self) -> dict[str, Any]:
        position = self.position if isinstance(self.position, str) else list(self.position)
        return {"size": self.size, "position": position, "margin": self.margin,
                "pattern": self.pattern_name, "seed": self.seed}
