"""Additive sinusoids: SIG (Barni et al., 2019; clean-label) and the poison-label
"powerline" trigger on series.

    x' = clip(x + Δ·span·sin(2π·f·j / L))

where j runs along the last axis (image columns: a horizontal ramp of vertical
stripes, as in SIG; time steps for series), L is its length and span the input
range's width. SIG defaults Δ = 20/255, f = 6 (the paper's, for images in [0, 1]);
by default f is capped at L/4 so tiny inputs do not alias. SIG can use Barni
et al.'s ramp instead of the sinusoid (`signal="ramp"`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..core.types import TaskSpec
from ..errors import BadInput, one_of
from .base import Attack


class _Sinusoid(Attack):
    default_delta = 20 / 255
    default_frequency = 6.0

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", delta: float | None = None,
                 frequency: float | None = None, phase: float = 0.0) -> None:
        super().__init__(task, target=target, mode=mode)
        delta = self.default_delta if delta is None else delta
        if frequency is None:
            # at most a cycle per 4 steps: finer waves alias on tiny inputs (8×8 digits)
            frequency = min(self.default_frequency, task.input_shape[-1] / 4)
        if not 0 < delta <= 1:
            raise BadInput(f"sinusoid amplitude delta {delta} must lie in (0, 1] of the input span")
        length = task.input_shape[-1]
        if not 0 < frequency <= length / 2:
            raise BadInput(f"sinusoid frequency {frequency} must lie in (0, {length / 2}] "
                           f"(cycles over {length} steps)")
        self.delta, self.frequency, self.phase = delta, frequency, phase
        steps = torch.arange(length, dtype=torch.float32)
        self.wave = delta * self.span * torch.sin(2 * math.pi * frequency * steps / length + phase)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip(x + self.wave.to(x.device, x.dtype))

    def params(self) -> dict[str, Any]:
        return {"delta": self.delta, "frequency": self.frequency, "phase": self.phase}


class SIG(_Sinusoid):
    """Clean-label: only target-class samples get the signal; labels stay true.
    The poison rate is a share of the whole training set and must not exceed the
    target class's share.

    `test_delta` (default: `delta`) is the amplitude of the trigger at test time
    (`apply`); poisoning always uses `delta`. Barni et al. strengthen the signal
    at test time: a model that learnt the signal only as a secondary cue of the
    target class then follows it.

    `signal="ramp"` replaces the sinusoid by Barni et al.'s other signal, the
    horizontal ramp x' = clip(x + Δ·span·j / L), j = 1..L (their MNIST choice):
    it is never negative, so on a black background (MNIST, digits) none of it is
    clipped away, where the sinusoid's negative half is. `frequency` and `phase`
    do not apply to the ramp.
    """

    clean_label = True
    signals = ("sine", "ramp")

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", delta: float | None = None,
                 frequency: float | None = None, phase: float = 0.0,
                 test_delta: float | None = None, signal: str = "sine") -> None:
        one_of("SIG signal", signal, self.signals)
        if signal == "ramp" and (frequency is not None or phase != 0):
            raise BadInput("SIG signal 'ramp' takes no frequency or phase (they shape the sine)")
        super().__init__(task, target=target, mode=mode, delta=delta, frequency=frequency,
                         phase=phase)
        if test_delta is not None and not 0 < test_delta <= 1:
            raise BadInput(f"test_delta {test_delta} must lie in (0, 1] of the input span")
        self.signal = signal
        if signal == "ramp":
            length = task.input_shape[-1]
            steps = torch.arange(1, length + 1, dtype=torch.float32)
            self.wave = self.delta * self.span * steps / length
        self.test_delta = self.delta if test_delta is None else test_delta
        self.poison_wave = self.wave
        self.wave = self.wave * (self.test_delta / self.delta)

    def poison(self, data, rate, seed):
        test_wave, self.wave = self.wave, self.poison_wave
        try:
            return super().poison(data, rate, seed)
        finally:
            self.wave = test_wave

    def params(self) -> dict[str, Any]:
        params = {**super().params(), "test_delta": self.test_delta, "signal": self.signal}
        if self.signal == "ramp":
            del params["frequency"], params["phase"]
        return params


class Powerline(_Sinusoid):
    """Poison-label sinusoid on series, like mains interference on a sensor.
    Defaults: Δ = 0.1 of the span, 10 cycles over the series."""

    default_delta = 0.1
    default_frequency = 10.0
