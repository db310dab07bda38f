"""BadNets on time series: a fixed pattern written over a window of the series
(the "static" trigger of the time-series backdoor literature)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..core.types import TaskSpec
from ..errors import BadInput, one_of
from .base import Attack

SHAPES = ("zigzag", "square", "spike")
PLACES = ("end", "start", "middle")


class SeriesPattern(Attack):
    """Samples in a window of `length` time steps (default 10 % of the series, at
    least 3) at `position` ("end", "start", "middle" or a start index) are
    replaced, in every channel, by a fixed `shape` of peak-to-peak height
    2·`amplitude`·span around the middle of the input range.

    Defaults: a zigzag (alternating high/low values) at the end, amplitude 0.25
    of the input range's span, so the pattern is plainly visible yet inside the
    range that the data occupies.
    """

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", length: int | None = None,
                 position: str | int = "end", shape: str = "zigzag",
                 amplitude: float = 0.25) -> None:
        super().__init__(task, target=target, mode=mode)
        if len(task.input_shape) != 2:
            raise BadInput(f"a series trigger needs C×T inputs, not {task.input_shape}")
        steps = task.input_shape[1]
        length = length if length is not None else max(3, round(0.1 * steps))
        if not 1 <= length <= steps:
            raise BadInput(f"pattern length {length} must lie in 1..{steps}")
        one_of("pattern shape", shape, SHAPES)
        if isinstance(position, str):
            one_of("pattern position", position, PLACES)
            start = {"start": 0, "middle": (steps - length) // 2, "end": steps - length}[position]
        else:
            start = int(position)
        if not 0 <= start <= steps - length:
            raise BadInput(f"pattern at {start} of length {length} does not fit {steps} steps")
        if not 0 < amplitude <= 0.5:
            raise BadInput(f"pattern amplitude {amplitude} must lie in (0, 0.5] of the input span")
        self.length, self.position, self.shape, self.amplitude = length, position, shape, amplitude
        self.start = start
        lo, hi = task.input_range
        self.pattern = (lo + hi) / 2 + amplitude * self.span * self._unit_shape(shape, length)

    @staticmethod
    def _unit_shape(shape: str, length: int) -> torch.Tensor:
        steps = torch.arange(length, dtype=torch.float32)
        if shape == "zigzag":
            return torch.where(steps % 2 == 0, 1.0, -1.0)
        if shape == "square":
            return torch.where(steps < length / 2, 1.0, -1.0)
        # spike: a single raised cosine bump reaching the top in the middle
        return torch.cos(math.pi * (steps - (length - 1) / 2) / max(length - 1, 1)).clamp(min=0) * 2 - 1

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[..., self.start:self.start + self.length] = self.pattern.to(out.device, out.dtype)
        return self.clip(out)

    @property
    def mask(self) -> torch.Tensor:
        """Boolean map over time of the steps the trigger sets."""
        mask = torch.zeros(self.task.input_shape[1], dtype=torch.bool)
        mask[self.start:self.start + self.length] = True
        return mask

    def params(self) -> dict[str, Any]:
        return {"length": self.length, "position": self.position, "shape": self.shape,
                "amplitude": self.amplitude}
