"""A counted, timed, budgeted black box: the expensive solver a regression
surrogate replaces (a PDE or Monte Carlo pricer).

    oracle = Oracle(my_solver, low=[0, 0], high=[1, 1], budget=2000)
    y = oracle(x)            # x: [n, d] inside the box -> [n, outputs]
    oracle.calls, oracle.seconds, oracle.remaining

`my_solver` takes a float64 NumPy array of shape [n, d] and returns n values
(or [n, outputs]). Every point counts as one call, however the solver computes
it: a finite-difference gradient in d dimensions costs d (forward) or 2d
(central) calls. A request that would exceed the budget raises
`OracleBudgetExceeded` before the solver runs, so the budget is a hard limit.

The oracle works in the model's input space: a data set whose models see scaled
inputs (the barrier option's unit box) hands out an oracle that maps back to raw
units inside its solver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..errors import BadInput

# Inputs may overshoot the box by rounding only.
BOX_SLACK = 1e-6


class OracleBudgetExceeded(BadInput):
    """More oracle calls were asked for than the budget allows."""


def _as_bounds(value: float | Sequence[float] | np.ndarray, dim: int | None, what: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if array.ndim != 1:
        raise BadInput(f"oracle {what} must be a number or a list of numbers, not shape {array.shape}")
    if dim is not None and len(array) == 1:
        array = np.repeat(array, dim)
    if not np.isfinite(array).all():
        raise BadInput(f"oracle {what} {array.tolist()} must be finite")
    return array


class Oracle:
    """`function` with a declared input box `[low, high]` and a call `budget`.

    `low`/`high` are per-dimension bounds (a scalar is repeated `dim` times).
    `budget=None` means unlimited. `batch_size` splits large requests into
    chunks passed to `function` one at a time (None: one chunk).
    """

    def __init__(self, function: Callable[[np.ndarray], np.ndarray],
                 low: float | Sequence[float], high: float | Sequence[float], *,
                 dim: int | None = None, budget: int | None = None, name: str = "oracle",
                 batch_size: int | None = None) -> None:
        if not callable(function):
            raise BadInput(f"oracle function {function!r} is not callable")
        self.function = function
        low_array = _as_bounds(low, dim, "low")
        dim = dim or len(low_array)
        self.low = _as_bounds(low_array, dim, "low")
        self.high = _as_bounds(high, dim, "high")
        if len(self.low) != len(self.high) or len(self.low) != dim:
            raise BadInput(f"oracle box low {self.low.tolist()} and high {self.high.tolist()} "
                           f"must both have {dim} values")
        if not (self.low < self.high).all():
            raise BadInput(f"oracle box needs low < high in every dimension, got low "
                           f"{self.low.tolist()} and high {self.high.tolist()}")
        if budget is not None and (isinstance(budget, bool) or int(budget) != budget or budget < 0):
            raise BadInput(f"oracle budget {budget!r} must be a non-negative whole number of calls")
        if batch_size is not None and batch_size < 1:
            raise BadInput(f"oracle batch_size {batch_size} must be at least 1")
        self.budget = None if budget is None else int(budget)
        self.name = name
        self.batch_size = batch_size
        self.calls = 0
        self.seconds = 0.0

    @property
    def dim(self) -> int:
        return len(self.low)

    @property
    def remaining(self) -> float:
        """Calls left (infinite without a budget)."""
        return float("inf") if self.budget is None else self.budget - self.calls

    @property
    def seconds_per_call(self) -> float:
        return self.seconds / self.calls if self.calls else float("nan")

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) as float32 tensors, for clamping model inputs."""
        return (torch.tensor(self.low, dtype=torch.float32),
                torch.tensor(self.high, dtype=torch.float32))

    def check_points(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """The points as a float64 [n, dim] array; `BadInput` if outside the box."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().double().numpy()
        points = np.asarray(x, dtype=np.float64)
        if points.ndim == 1:
            points = points[None, :]
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise BadInput(f"oracle {self.name!r} takes points of {self.dim} values, "
                           f"got an array of shape {points.shape}")
        if not np.isfinite(points).all():
            raise BadInput(f"oracle {self.name!r} was given non-finite inputs")
        slack = BOX_SLACK * (self.high - self.low)
        outside = (points < self.low - slack) | (points > self.high + slack)
        if outside.any():
            row = int(np.nonzero(outside.any(1))[0][0])
            raise BadInput(f"oracle {self.name!r}: point {points[row].tolist()} lies outside "
                           f"its box [{self.low.tolist()}, {self.high.tolist()}]")
        return np.clip(points, self.low, self.high)

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Oracle values at `x` ([n, d] or [d]) as a float32 tensor [n, outputs]."""
        points = self.check_points(x)
        n = len(points)
        if n > self.remaining:
            raise OracleBudgetExceeded(
                f"oracle {self.name!r} budget of {self.budget} calls is exhausted: "
                f"{self.calls} used, {n} more asked for; raise the budget")
        chunk = self.batch_size or max(n, 1)
        start = time.perf_counter()
        parts = [np.asarray(self.function(points[i:i + chunk]), dtype=np.float64)
                 for i in range(0, n, chunk)]
        self.seconds += time.perf_counter() - start
        self.calls += n
        values = np.concatenate([p.reshape(len(p), -1) for p in parts]) if parts else np.empty((0, 1))
        if len(values) != n:
            raise BadInput(f"oracle {self.name!r} returned {len(values)} values for {n} points")
        if not np.isfinite(values).all():
            raise BadInput(f"oracle {self.name!r} returned non-finite values")
        return torch.tensor(values, dtype=torch.float32)

    def reset(self) -> None:
        """Zero the call and time counters (the budget stays)."""
        self.calls, self.seconds = 0, 0.0

    def limited(self, budget: int | None) -> Oracle:
        """A view of this oracle with its own counter and a tighter `budget`;
        its calls also count (and are checked) here."""
        return Oracle(self, self.low, self.high, budget=budget, name=self.name)

    def stats(self) -> dict[str, float]:
        return {"calls": self.calls, "seconds": round(self.seconds, 4),
                "seconds_per_call": self.seconds_per_call, "budget": self.budget}
