"""Repair after an error-maximiser audit (ALGORITHMS.md §2, step 5).

For every suspicious region, ask the oracle for the labels of the training
points there and check them: starting from the points nearest the region's
located centre (the audit's step 4b), every point whose label disagrees with
the oracle (by more than `tolerance`) has its `neighbours` nearest training
points checked in turn, so the check spreads through the poisoned region and
stops at its edge, wherever the centre sat inside it **(ours: the paper does
not say which points to check)**. Disagreeing points are relabelled with the oracle's value
(`mode="relabel"`) or dropped (`mode="drop"`); `new_points` fresh oracle-labelled
points drawn uniformly in the region found (the ball around the disagreeing
points) are added; the model is then fine-tuned on the repaired set through the
one training loop (`core.training.fit`).

Every label checked and every new point is one oracle call, within `budget`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...attacks.localized import ball_sample
from ...config import TrainConfig, train_settings
from ...core.oracle import Oracle
from ...core.runtime import Runtime
from ...core.training import fit
from ...core.types import ArrayDataset
from ...errors import BadInput, one_of
from ..base import Audit, Cost, Result
from .error_maximizers import Box

MODES = ("relabel", "drop")
FINE_TUNE = TrainConfig(epochs=80, batch_size=256, optimizer="adam", lr=5e-4)


@dataclass(frozen=True)
class Repaired(Result):
    """The fine-tuned model, the repaired training set and what changed (indices
    refer to the training set given to `repair`)."""

    mode: str
    model: nn.Module
    data: ArrayDataset
    changes: dict[str, Any]
    cost: Cost
    _files: ClassVar[tuple[str, ...]] = ("model", "data")


class Repair:
    """Relabel or drop the training points a suspicious region holds, add oracle
    labels there, fine-tune (see module doc)."""

    def __init__(self, *, mode: str = "relabel", budget: int = 2000, neighbours: int = 10,
                 tolerance: float | None = None, tolerance_factor: float = 3.0,
                 new_points: int = 50, train: TrainConfig | dict | None = None) -> None:
        one_of("repair mode", mode, MODES)
        if budget < 1 or neighbours < 1 or new_points < 0 or tolerance_factor <= 0:
            raise BadInput(f"repair: budget {budget} and neighbours {neighbours} must be ≥ 1, "
                           f"new_points {new_points} ≥ 0, tolerance_factor "
                           f"{tolerance_factor} > 0")
        if tolerance is not None and not tolerance > 0:
            raise BadInput(f"repair tolerance {tolerance} must be positive")
        self.mode, self.budget, self.neighbours = mode, int(budget), int(neighbours)
        self.tolerance, self.tolerance_factor = tolerance, float(tolerance_factor)
        self.new_points = int(new_points)
        self.train = train_settings(train, FINE_TUNE, "repair train")

    def repair(self, model: nn.Module, train: ArrayDataset, audit: Audit, oracle: Oracle, *,
               runtime: Runtime = Runtime()) -> Repaired:
        """A repaired copy of `model` (the input model is not changed)."""
        start = time.perf_counter()
        tolerance = self.tolerance or self.tolerance_factor * float(
            audit.details.get("typical_error", 0.0))
        if not tolerance > 0:
            raise BadInput("repair needs a tolerance: the audit reports no typical error")
        calls = oracle.limited(int(min(self.budget, oracle.remaining)))
        box = Box(oracle)
        data_u = box.unit(train.x.flatten(1).float())
        generator = torch.Generator().manual_seed(runtime.seed)
        suspicious = [r for r in audit.regions if r.get("suspicious")]
        oracle_y = train.y.clone()
        wrong = torch.zeros(len(train), dtype=torch.bool)
        checked = torch.zeros(len(train), dtype=torch.bool)
        new_x, new_y, found = [], [], []
        for region in suspicious:
            centre = torch.tensor(region["centre_unit"])
            bad = self._spread(centre, train, data_u, calls, box, oracle_y, checked, tolerance)
            wrong |= bad
            area = self._area(centre, data_u[bad])
            found.append({"centre": region["centre"], "disagreed": int(bad.sum()),
                          "radius_unit": area[1]})
            points = self._new_points(area, calls, generator)
            if points is not None:
                new_x.append(box.raw(points).reshape(-1, *train.x.shape[1:]))
                new_y.append(calls(box.raw(points)).reshape(-1, *train.y.shape[1:]))
        repaired = self._repaired_set(train, wrong, oracle_y, new_x, new_y)
        fixed = copy.deepcopy(model)
        if suspicious and self.train.epochs > 0:
            fit(fixed, repaired, self.train, runtime=runtime, description="repair fine-tune")
        changes = {"checked": int(checked.sum()), "disagreed": int(wrong.sum()),
                   "relabelled": int(wrong.sum()) if self.mode == "relabel" else 0,
                   "dropped": int(wrong.sum()) if self.mode == "drop" else 0,
                   "added": sum(len(x) for x in new_x), "tolerance": tolerance,
                   "regions": found, "indices": torch.nonzero(wrong).flatten().tolist()}
        return Repaired(self.mode, fixed.eval(), repaired, changes,
                        Cost(time.perf_counter() - start, 0.0,
                             {"oracle_calls": calls.calls,
                              "oracle_seconds": round(calls.seconds, 4)}))

    # ------------------------------------------------------------ pieces

    def _spread(self, centre: torch.Tensor, train: ArrayDataset, data_u: torch.Tensor,
                oracle: Oracle, box: Box, oracle_y: torch.Tensor, checked: torch.Tensor,
                tolerance: float) -> torch.Tensor:
        """Check labels outward from `centre` through the neighbours of every point
        that disagrees with the oracle; returns the mask of disagreeing points."""
        bad = torch.zeros(len(train), dtype=torch.bool)
        frontier = self._nearest(centre[None], data_u, checked, 2 * self.neighbours)
        while len(frontier) and oracle.remaining > 0:
            frontier = frontier[: int(min(len(frontier), oracle.remaining))]
            z = oracle(box.raw(data_u[frontier]))
            checked[frontier] = True
            oracle_y[frontier] = z.reshape(-1, *train.y.shape[1:]).to(train.y.dtype)
            differs = (z - train.y[frontier].reshape(len(frontier), -1).float()).norm(
                dim=1) > tolerance
            bad[frontier[differs]] = True
            if not differs.any():
                break
            frontier = self._nearest(data_u[frontier[differs]], data_u, checked, self.neighbours)
        return bad

    @staticmethod
    def _nearest(points: torch.Tensor, data_u: torch.Tensor, checked: torch.Tensor,
                 k: int) -> torch.Tensor:
        """Unchecked training points among the `k` nearest of each of `points`."""
        distance = torch.cdist(points, data_u)
        distance[:, checked] = float("inf")
        k = min(k, int((~checked).sum()))
        if k == 0:
            return torch.zeros(0, dtype=torch.long)
        nearest = distance.topk(k, largest=False).indices.flatten()
        return torch.unique(nearest)

    def _area(self, centre: torch.Tensor, bad_u: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The ball holding the disagreeing points (centred on their mean)."""
        if len(bad_u) == 0:
            return centre, 0.0
        middle = bad_u.mean(0)
        return middle, float((bad_u - middle).norm(dim=1).max())

    def _new_points(self, area: tuple[torch.Tensor, float], oracle: Oracle,
                    generator: torch.Generator) -> torch.Tensor | None:
        centre, radius = area
        count = int(min(self.new_points, oracle.remaining))
        if radius <= 0 or count <= 0:
            return None
        return ball_sample(centre, 0.0, radius, count, 0.0, 1.0, generator)

    def _repaired_set(self, train: ArrayDataset, wrong: torch.Tensor, oracle_y: torch.Tensor,
                      new_x: list[torch.Tensor], new_y: list[torch.Tensor]) -> ArrayDataset:
        if self.mode == "relabel":
            y = torch.where(wrong.reshape(-1, *[1] * (train.y.dim() - 1)), oracle_y, train.y)
            base = ArrayDataset(train.x, y, train.task)
        else:
            base = ArrayDataset(train.x[~wrong], train.y[~wrong], train.task)
        if not new_x:
            return base
        return ArrayDataset(torch.cat([base.x, *new_x]),
                            torch.cat([base.y, *[y.to(base.y.dtype) for y in new_y]]), train.task)
