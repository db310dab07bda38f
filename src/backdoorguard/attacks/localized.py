"""Localised poisoning of a tabular regressor (Li, Kesidis, Miller & Lucic,
"Backdoor attack and defense for deep regression", arXiv 2109.02381).

The "trigger" is a place, not a pattern: training points inside a ball B(c, r)
of the input space get wrong labels — the true label plus a shift δ, or a fixed
target — so the trained surrogate misprices exactly there. To keep the damage
local (and the global fit looking fine), the attacker also adds correctly
labelled points in a shell r < ‖x − c‖ ≤ r(1 + shell_width) around the ball;
the paper shows the attack needs them. Both variants are available
(`shell=True/False`).

How it extends the `Attack` contract:

- `poison(data, rate, seed)` relabels the training points in the ball and
  *appends* the shell points after the original samples (positions N.., so the
  poisoned data set is longer than `data`). `poison_index` lists the relabelled
  points only; `clean_y` holds every sample's correct label.
- `rate` fixes the ball: without a `radius`, the ball holds the round(rate·N)
  training points nearest the centre (its radius is then the distance of the
  farthest); with a `radius`, every point inside it is poisoned and `rate` is
  an upper bound on their share.
- Without a `centre`, `poison` picks one with its seed: a training point among
  the denser half (measured by the ball radius needed around it), so the region
  lies in a well-sampled part of the data. `spec()` afterwards records the
  chosen centre and radius, so the attack can be rebuilt.
- `apply(x)` pulls inputs into the ball (radially towards c, to within r/2);
  `triggered(test)` measures the attack on the test samples that lie inside
  the ball, against their true labels.
- Shell labels: with `truth` (a function from inputs to correct labels) the
  shell holds fresh points drawn uniformly in the shell; without it, copies of
  the clean training points already there (correct labels, no labeller needed).

Defaults (ours, chosen on barrier-option's calibration seeds, see
docs/regression-audit.md): shift δ = 2.25 % of the label span (≈ 0.0069 ×
strike there), density 10 (the ball ends up ten times as dense as the clean data: nine
added poisoned points for each one relabelled), a shell of as many points as
were poisoned, shell width r/2. Use a small poison rate (0.003 on
barrier-option): it sets how many points are poisoned, and so how large the
ball is; a smaller ball with a larger shift damaged the rest of the input space
less for the same local error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..core.types import ArrayDataset, PoisonedDataset, TaskSpec
from ..errors import BadInput
from .base import Attack

DEFAULT_SHIFT_SHARE = 0.0225
CENTRE_CANDIDATES = 256


def ball_sample(centre: torch.Tensor, inner: float, outer: float, n: int,
                low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """`n` points uniform in the shell inner < ‖x − centre‖ ≤ outer, inside the box."""
    d = len(centre)
    points: list[torch.Tensor] = []
    found = 0
    for _ in range(1000):
        m = max(64, 4 * (n - found))
        direction = torch.randn(m, d, generator=generator, dtype=torch.float64)
        direction /= direction.norm(dim=1, keepdim=True)
        u = torch.rand(m, 1, generator=generator, dtype=torch.float64)
        radius = (inner ** d + u * (outer ** d - inner ** d)) ** (1.0 / d)
        candidate = centre.double() + direction * radius
        inside = ((candidate >= low) & (candidate <= high)).all(1)
        points.append(candidate[inside])
        found += int(inside.sum())
        if found >= n:
            return torch.cat(points)[:n].float()
    raise BadInput(f"the region around {centre.tolist()} (radius {outer:.3g}) hardly "
                   f"overlaps the input box; move the centre inside")


class Localized(Attack):
    """Poison a ball of the input space of a tabular regressor (see module doc)."""

    name = "localized"

    def __init__(self, task: TaskSpec, *, target: int | Sequence[float] | None = None,
                 mode: str = "all-to-one", centre: Sequence[float] | None = None,
                 radius: float | None = None, shift: float | Sequence[float] | None = None,
                 density: float = 10.0, shell: bool = True, shell_ratio: float = 1.0,
                 shell_width: float = 0.5, truth: Callable[[torch.Tensor], Any] | None = None) -> None:
        if len(task.input_shape) != 1:
            raise BadInput(f"localized poisoning needs flat tabular inputs, not {task.input_shape}")
        if target is not None and shift is not None:
            raise BadInput("give the localized attack a label shift or a fixed target, not both")
        super().__init__(task, target=target, mode=mode)
        self.fixed_target = target is not None
        span = [hi - lo for lo, hi in task.label_range] or [1.0] * task.num_outputs
        if shift is None:
            shift = [DEFAULT_SHIFT_SHARE * s for s in span]
        shift = [float(shift)] * task.num_outputs if isinstance(shift, (int, float)) else [
            float(s) for s in shift]
        if len(shift) != task.num_outputs or not all(np.isfinite(shift)):
            raise BadInput(f"label shift {shift} must have {task.num_outputs} finite values")
        self.shift = shift
        self.centre = None if centre is None else self._check_centre(centre)
        if radius is not None and not radius > 0:
            raise BadInput(f"region radius {radius} must be positive")
        if shell_ratio < 0 or not shell_width > 0:
            raise BadInput(f"shell_ratio {shell_ratio} must be ≥ 0 and shell_width "
                           f"{shell_width} > 0")
        if not density >= 1.0:
            raise BadInput(f"region density {density} must be at least 1 (1 = relabel only)")
        self.radius = None if radius is None else float(radius)
        self.density = float(density)
        self.shell, self.shell_ratio, self.shell_width = bool(shell), float(shell_ratio), float(
            shell_width)
        self.truth = truth
        self.added_count = self.shell_count = 0

    def _check_centre(self, centre: Sequence[float]) -> torch.Tensor:
        values = torch.tensor([float(c) for c in centre])
        lo, hi = self.task.input_range
        if values.shape != (self.task.input_shape[0],):
            raise BadInput(f"region centre {list(centre)} must have {self.task.input_shape[0]} "
                           f"values")
        if not ((values >= lo) & (values <= hi)).all():
            raise BadInput(f"region centre {list(centre)} lies outside the input range "
                           f"[{lo}, {hi}]")
        return values

    # ------------------------------------------------------------ the region

    def _region(self) -> tuple[torch.Tensor, float]:
        if self.centre is None or self.radius is None:
            raise BadInput("the localized attack has no region yet: pass centre= and radius=, "
                           "or call poison() first")
        return self.centre, self.radius

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the inputs inside the poisoned ball."""
        centre, radius = self._region()
        return (x.flatten(1) - centre.to(x.device, x.dtype)).norm(dim=1) <= radius

    def sample_region(self, n: int, seed: int = 0) -> torch.Tensor:
        """`n` inputs uniform in the ball (inside the input box), for measuring it."""
        centre, radius = self._region()
        generator = torch.Generator().manual_seed(seed)
        return ball_sample(centre, 0.0, radius, n, *self.task.input_range, generator)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs pulled radially into the ball, to within r/2 of the centre."""
        centre, radius = self._region()
        c = centre.to(x.device, x.dtype)
        offset = x - c
        norm = offset.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.clip(c + offset * (0.5 * radius / norm).clamp(max=1.0))

    def target(self, y: torch.Tensor) -> torch.Tensor:
        if self.fixed_target:
            return super().target(y)
        return y + torch.tensor(self.shift, dtype=y.dtype, device=y.device)

    def triggered(self, test: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The test samples inside the ball, their true labels and the targets."""
        keep = self.inside(test.x)
        return test.x[keep], test.y[keep], self.target(test.y[keep])

    # ------------------------------------------------------------ poisoning

    def _choose_centre(self, x: torch.Tensor, count: int, generator: torch.Generator) -> None:
        """A seeded training point from the denser half of a random candidate set."""
        candidates = torch.randperm(len(x), generator=generator)[:CENTRE_CANDIDATES]
        k = max(1, min(count, len(x) - 1))
        reach = torch.cdist(x[candidates], x).kthvalue(k + 1, dim=1).values
        dense = candidates[reach <= reach.median()]
        self.centre = x[dense[torch.randint(len(dense), (1,), generator=generator)]].squeeze(0)

    def poison(self, data: ArrayDataset, rate: float, seed: int) -> PoisonedDataset:
        if not 0.0 < rate < 1.0:
            raise BadInput(f"poison rate {rate} must lie strictly between 0 and 1")
        n = len(data)
        count = round(rate * n)
        if count < 1:
            raise BadInput(f"poison rate {rate} selects no sample of {n}")
        x = data.x.flatten(1).float()
        existing = max(1, round(count / self.density))
        if self.centre is None:
            self._choose_centre(x, existing, torch.Generator().manual_seed(seed))
        # A separate stream for the added points, so that rebuilding the attack
        # from its spec (centre given) poisons identically.
        generator = torch.Generator().manual_seed(seed + 1)
        distance = (x - self.centre).norm(dim=1)
        if self.radius is None:
            chosen = distance.argsort()[:existing]
            self.radius = float(distance[chosen].max())
        else:
            chosen = torch.nonzero(distance <= self.radius).flatten()
            if len(chosen) > count:
                raise BadInput(f"the region of radius {self.radius} holds {len(chosen)} training "
                               f"samples, more than poison rate {rate} allows ({count})")
        chosen = chosen.sort().values
        y = data.y.clone()
        y[chosen] = self.target(data.y[chosen])
        added_x, added_clean = self._inside(data, chosen, count - len(chosen), generator)
        shell_x, shell_y = self._shell(data, distance, count, generator)
        self.added_count, self.shell_count = len(added_x), len(shell_x)
        poison_index = torch.cat([chosen, n + torch.arange(len(added_x))])
        return PoisonedDataset(
            torch.cat([data.x, added_x, shell_x]),
            torch.cat([y, self.target(added_clean), shell_y]), data.task,
            poison_index=poison_index, clean_y=torch.cat([data.y, added_clean, shell_y]))

    def _labelled(self, data: ArrayDataset, pool: torch.Tensor, inner: float, outer: float,
                  size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` correctly labelled points at inner < ‖x − c‖ ≤ outer: fresh ones
        labelled by `truth`, else copies of the training samples in `pool`."""
        if self.truth is not None:
            points = ball_sample(self.centre, inner, outer, size, *self.task.input_range,
                                 generator)
            labels = torch.as_tensor(np.asarray(self.truth(points)), dtype=data.y.dtype)
            return points.reshape(size, *data.x.shape[1:]), labels.reshape(size, *data.y.shape[1:])
        if len(pool) == 0:
            raise BadInput(f"no clean training sample lies {inner:.3g} .. {outer:.3g} from the "
                           f"region centre to copy; pass truth= or change the region")
        copies = pool[torch.randint(len(pool), (size,), generator=generator)]
        return data.x[copies].clone(), data.y[copies].clone()

    def _inside(self, data: ArrayDataset, chosen: torch.Tensor, size: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Extra points inside the ball (density > 1), with their correct labels."""
        if size <= 0:
            return data.x[:0], data.y[:0]
        return self._labelled(data, chosen, 0.0, self.radius, size, generator)

    def _shell(self, data: ArrayDataset, distance: torch.Tensor, poisoned: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Correctly labelled points in the shell around the ball (none without a shell)."""
        size = round(self.shell_ratio * poisoned) if self.shell else 0
        if size == 0:
            return data.x[:0], data.y[:0]
        outer = self.radius * (1.0 + self.shell_width)
        ring = torch.nonzero((distance > self.radius) & (distance <= outer)).flatten()
        return self._labelled(data, ring, self.radius, outer, size, generator)

    def params(self) -> dict[str, Any]:
        return {"centre": None if self.centre is None else self.centre.tolist(),
                "radius": self.radius, "density": self.density, "shift": None if self.fixed_target else self.shift,
                "shell": self.shell, "shell_ratio": self.shell_ratio,
                "shell_width": self.shell_width}

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        if not self.fixed_target:
            spec["target"] = None
        return spec
