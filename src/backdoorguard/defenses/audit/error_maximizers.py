"""Local error maximisers: audit a regression surrogate against its oracle
(Li, Kesidis, Miller & Lucic, "Backdoor attack and defense for deep
regression", arXiv 2109.02381; ALGORITHMS.md §2).

A fast regressor Y replaces an expensive oracle Z. Search for the places where
the squared error e(x) = ‖Y(x) − Z(x)‖² is locally largest, then call a
maximiser suspicious when its error is large **and** many training points lie
near it: large error where data are sparse is ordinary extrapolation, large
error where data are dense is a planted backdoor (the model was *taught* to be
wrong there).

    auditor = ErrorMaximizers(budget=2000)
    audit = auditor.audit(model, train, oracle)      # -> Audit (regions, flagged samples)

Steps, all inside the oracle's input box and in its normalised coordinates
(each dimension scaled to [0, 1], so steps and radii are unit-free):

1. Screening **(ours)**: the oracle labels a set of seeds — a share
   `random_share` uniform in the box, the rest training points drawn at random
   (so the seeds follow the data's density) — which gives each seed's error.
2. Ascent: from the `ascents` seeds with the largest error that lie where data
   are dense, kept `merge_radius` apart, normalised gradient steps on e(x): ∇Y
   by autograd, ∇Z by forward differences of step `fd_step`. A step that does
   not raise the error is refused and its step size halved; every
   `decay_every` steps the step size is multiplied by `decay`. **(ours)** The
   search stays where data are dense: it starts only from dense seeds, and a
   step into sparse data is refused (before any oracle call) — a maximiser
   there could never be flagged, and without this rule ascents from a planted
   region drifted out of it, towards the larger extrapolation errors of the
   thin edges. `dense_seeds_only=False` (active learning) searches everywhere.
3. Merge maximisers closer than `merge_radius` (keeping the larger error).
4. Suspicion: error ≥ `error_factor` × the typical error (median over the
   training-point seeds) and training points within `density_radius` ≥
   `density_factor` × the median such count around training points.
4b. **(ours)** A suspicious region's centre is where the training data near
   its maximiser are densest (mean shift, `refine=True`); the maximiser itself
   stays in the report. Regions whose centres then lie within `merge_radius`
   merge, keeping a suspicious one first, then the larger error.

Oracle calls, counted honestly: every point the oracle labels is one call. A
forward-difference gradient in d dimensions costs d calls and each trial step
one more, so an ascent step costs d + 1 calls (1 after a refused step, whose
gradient is reused). The default plan spends `budget − ascents·steps·(d+1)`
calls on screening. Nothing is free: the budget is a hard limit (`Oracle`).

Defaults (ours, measured in docs/regression-audit.md): budget 2,000, 25 %
random seeds, 8 ascents of 10 steps, step 0.05, decay 0.5 every 4 steps,
finite-difference step 0.01, merge radius 0.15, density radius 0.15, error
factor 6, density factor 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...core.oracle import Oracle
from ...core.runtime import Runtime
from ...core.training import predict
from ...core.types import ArrayDataset
from ...errors import BadInput
from ..base import Audit, Auditor, Cost, register_defense

# A cap on the mean-shift iterations (a flat-kernel mean shift settles in a few);
# a move under 1e-4 (normalised units, far below any radius the audit uses)
# counts as arrived.
REFINE_STEPS = 20


@dataclass
class Queries:
    """Every point the oracle labelled during an audit (model input units)."""

    x: torch.Tensor
    z: torch.Tensor
    error: torch.Tensor

    def add(self, x: torch.Tensor, z: torch.Tensor, error: torch.Tensor) -> None:
        self.x = torch.cat([self.x, x])
        self.z = torch.cat([self.z, z])
        self.error = torch.cat([self.error, error])


class Box:
    """The oracle's input box: maps model inputs to normalised [0, 1] coordinates."""

    def __init__(self, oracle: Oracle) -> None:
        self.low, self.high = oracle.box()
        self.width = self.high - self.low

    def unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.low) / self.width

    def raw(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + u.clamp(0.0, 1.0) * self.width


def count_within(points: torch.Tensor, data: torch.Tensor, radius: float,
                 chunk: int = 1024) -> torch.Tensor:
    """Number of rows of `data` within `radius` of each row of `points`."""
    counts = [(torch.cdist(points[i:i + chunk], data) <= radius).sum(1)
              for i in range(0, len(points), chunk)]
    return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)


def model_value_and_grad(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Y(x) [n, k] and its Jacobian [n, k, d] by autograd (eval mode, on the CPU)."""
    device = next(model.parameters()).device
    model.eval()
    with torch.enable_grad():
        inputs = x.detach().to(device).requires_grad_(True)
        outputs = model(inputs)
        rows = [torch.autograd.grad(outputs[:, j].sum(), inputs, retain_graph=True)[0]
                for j in range(outputs.shape[1])]
    return outputs.detach().float().cpu(), torch.stack(rows, 1).float().cpu()


def greedy_merge(points: torch.Tensor, scores: torch.Tensor, radius: float) -> list[int]:
    """Indices kept when points closer than `radius` merge into the higher-scoring one."""
    kept: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        if all(float((points[i] - points[j]).norm()) >= radius for j in kept):
            kept.append(i)
    return kept


@register_defense("error-maximizers", "audit",
                  "local error maximisers against an oracle: large error where training data "
                  "are dense is suspicious", tasks=("regression",), modalities=("tabular",))
class ErrorMaximizers(Auditor):
    """Audit a tabular regressor against an oracle (see module doc)."""

    def __init__(self, *, budget: int = 2000, random_share: float = 0.25, ascents: int = 8,
                 steps: int = 10, step_size: float = 0.05, decay: float = 0.5,
                 decay_every: int = 4, fd_step: float = 0.01, merge_radius: float = 0.15,
                 density_radius: float = 0.15, error_factor: float = 6.0,
                 density_factor: float = 1.0, dense_seeds_only: bool = True,
                 refine: bool = True) -> None:
        checks = {"budget": budget >= 1, "random_share": 0.0 <= random_share <= 1.0,
                  "ascents": ascents >= 0, "steps": steps >= 0, "step_size": step_size > 0,
                  "decay": 0.0 < decay <= 1.0, "decay_every": decay_every >= 1,
                  "fd_step": 0.0 < fd_step < 0.5, "merge_radius": merge_radius > 0,
                  "density_radius": density_radius > 0, "error_factor": error_factor > 0,
                  "density_factor": density_factor >= 0}
        for name, ok in checks.items():
            if not ok:
                raise BadInput(f"error-maximizers: {name} {locals()[name]!r} is out of range")
        self.budget, self.random_share = int(budget), float(random_share)
        self.ascents, self.steps = int(ascents), int(steps)
        self.step_size, self.decay, self.decay_every = float(step_size), float(decay), int(decay_every)
        self.fd_step, self.merge_radius = float(fd_step), float(merge_radius)
        self.density_radius, self.error_factor = float(density_radius), float(error_factor)
        self.density_factor, self.dense_seeds_only = float(density_factor), bool(dense_seeds_only)
        self.refine = bool(refine)
        self.queries_: Queries | None = None

    # ------------------------------------------------------------ planning

    def plan(self, dim: int, budget: int) -> tuple[int, int]:
        """(screening seeds, ascents) that fit `budget` calls in `dim` dimensions."""
        per_ascent = self.steps * (dim + 1)
        ascents = min(self.ascents, budget // 2 // max(per_ascent, 1)) if per_ascent else self.ascents
        seeds = budget - ascents * per_ascent
        if seeds < 1:
            raise BadInput(f"an oracle budget of {budget} calls leaves no screening seeds")
        return seeds, ascents

    def _check(self, model: nn.Module, train: ArrayDataset, oracle: Any) -> None:
        self.check_task(train.task)
        if oracle is None:
            raise BadInput("the error-maximizers audit needs an oracle (a solver that labels "
                           "any input); for barrier-option use data.options.pde_oracle()")
        if not isinstance(oracle, Oracle):
            raise BadInput(f"oracle must be a backdoorguard Oracle (a callable with a box and "
                           f"a budget), not {type(oracle).__name__}")
        if oracle.dim != train.task.input_shape[0]:
            raise BadInput(f"the oracle takes {oracle.dim} inputs but the data have "
                           f"{train.task.input_shape[0]}")
        if oracle.remaining < 1:
            raise BadInput(f"oracle {oracle.name!r} has no calls left")

    # ------------------------------------------------------------ the verb

    def audit(self, model: nn.Module, train: ArrayDataset, oracle: Oracle | None = None, *,
              runtime: Runtime = Runtime()) -> Audit:
        self._check(model, train, oracle)
        start = time.perf_counter()
        budget = int(min(self.budget, oracle.remaining))
        calls = oracle.limited(budget)
        box = Box(oracle)
        generator = torch.Generator().manual_seed(runtime.seed)
        model = model.to(runtime.torch_device).eval()
        data_u = box.unit(train.x.flatten(1).float().cpu())
        reference = self._reference_density(data_u, generator)
        n_seeds, n_ascents = self.plan(oracle.dim, budget)

        seeds_u, from_training = self._seeds(data_u, n_seeds, generator)
        errors, z = self._errors(model, calls, box.raw(seeds_u))
        self.queries_ = Queries(box.raw(seeds_u), z, errors)
        typical = float(errors[from_training].median() if from_training.any() else errors.median())
        seed_density = count_within(seeds_u, data_u, self.density_radius).float() / reference
        starts = self._starts(seeds_u, errors, seed_density, n_ascents)
        dense = (lambda u: count_within(u, data_u, self.density_radius).float() / reference
                 >= self.density_factor) if self.dense_seeds_only else None
        paths = self._ascend(model, calls, box, seeds_u[starts], errors[starts], z[starts],
                             dense)
        regions = self._regions(model, paths, data_u, reference, typical, box)
        flagged, suspicion = self._flagged(regions, data_u)
        counters = {"oracle_calls": calls.calls, "screening_calls": n_seeds,
                    "ascent_calls": calls.calls - n_seeds, "oracle_seconds": round(calls.seconds, 4)}
        details = {"typical_error": typical, "reference_density": reference,
                   "seeds": n_seeds, "ascents": len(starts), "budget": budget,
                   "thresholds": {"error": self.error_factor * typical,
                                  "density": self.density_factor * reference},
                   "params": self.params()}
        return Audit(self.name, flagged, suspicion, regions,
                     Cost(time.perf_counter() - start, 0.0, counters), details)

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "budget", "random_share", "ascents", "steps", "step_size", "decay", "decay_every",
            "fd_step", "merge_radius", "density_radius", "error_factor", "density_factor",
            "dense_seeds_only", "refine")}

    # ------------------------------------------------------------ pieces

    def _reference_density(self, data_u: torch.Tensor, generator: torch.Generator) -> float:
        """Median count of training points within `density_radius` of a training point."""
        probe = data_u[torch.randperm(len(data_u), generator=generator)[:512]]
        return max(float(count_within(probe, data_u, self.density_radius).float().median()), 1.0)

    def _seeds(self, data_u: torch.Tensor, n: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n_random = round(self.random_share * n)
        n_train = min(n - n_random, len(data_u))
        n_random = n - n_train
        uniform = torch.rand(n_random, data_u.shape[1], generator=generator)
        picked = data_u[torch.randperm(len(data_u), generator=generator)[:n_train]].clamp(0, 1)
        from_training = torch.cat([torch.zeros(n_random, dtype=torch.bool),
                                   torch.ones(n_train, dtype=torch.bool)])
        return torch.cat([uniform, picked]), from_training

    @staticmethod
    def _errors(model: nn.Module, oracle: Oracle, x: torch.Tensor) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
        z = oracle(x)
        y = predict(model, x)
        return (y - z).norm(dim=1), z

    def _starts(self, seeds_u: torch.Tensor, errors: torch.Tensor, density: torch.Tensor,
                n: int) -> torch.Tensor:
        """Highest-error seeds (dense ones only, unless told otherwise), spread apart."""
        eligible = density >= self.density_factor if self.dense_seeds_only else torch.ones_like(
            errors, dtype=torch.bool)
        candidates = torch.nonzero(eligible).flatten()
        order = candidates[errors[candidates].argsort(descending=True)]
        chosen: list[int] = []
        for i in order.tolist():
            if len(chosen) == n:
                break
            if all(float((seeds_u[i] - seeds_u[j]).norm()) >= self.merge_radius for j in chosen):
                chosen.append(i)
        return torch.tensor(chosen, dtype=torch.long)

    def _ascend(self, model: nn.Module, oracle: Oracle, box: Box, start_u: torch.Tensor,
                start_error: torch.Tensor, start_z: torch.Tensor,
                dense=None) -> dict[str, torch.Tensor]:
        """Lock-step gradient ascent from every start; returns the best point of each.
        With `dense` (a test of where data are dense), a step that would leave the
        dense part of the data is refused like one that lowers the error: the
        search then looks for maximisers only where it could flag one."""
        a, d = start_u.shape
        u, error, z = start_u.clone(), start_error.clone(), start_z.clone()
        eta = torch.full((a,), self.step_size)
        grad = torch.zeros(a, d)
        stale = torch.ones(a, dtype=torch.bool)
        for step in range(self.steps if a else 0):
            if stale.any():
                grad[stale] = self._gradient(model, oracle, box, u[stale], z[stale])
                stale[:] = False
            direction = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            trial = (u + eta[:, None] * direction).clamp(0.0, 1.0)
            allowed = dense(trial) if dense is not None else torch.ones(a, dtype=torch.bool)
            index = torch.nonzero(allowed).flatten()      # a step into sparse data costs no call
            better = torch.zeros(a, dtype=torch.bool)
            if len(index):
                trial_error, trial_z = self._errors(model, oracle, box.raw(trial[index]))
                self.queries_.add(box.raw(trial[index]), trial_z, trial_error)
                won = trial_error > error[index]
                moved = index[won]
                better[moved] = True
                u[moved], error[moved], z[moved] = trial[moved], trial_error[won], trial_z[won]
            stale[better] = True
            eta[~better] *= 0.5
            if (step + 1) % self.decay_every == 0:
                eta *= self.decay
        return {"u": u, "error": error, "z": z, "start": start_u}

    def _gradient(self, model: nn.Module, oracle: Oracle, box: Box, u: torch.Tensor,
                  z: torch.Tensor) -> torch.Tensor:
        """∇_u e(u) = 2 (Y − Z)·(∇Y − ∇Z) in normalised coordinates; ∇Z by forward
        differences (backward at the upper edge of the box), d oracle calls per point."""
        n, d = u.shape
        h = torch.full((n, d), self.fd_step)
        h[u + h > 1.0] *= -1.0
        probes = u[:, None, :] + torch.diag_embed(h)
        probe_x = box.raw(probes.reshape(n * d, d))
        z_probe = oracle(probe_x).reshape(n, d, -1)
        self.queries_.add(probe_x, z_probe.reshape(n * d, -1),
                          (predict(model, probe_x) - z_probe.reshape(n * d, -1)).norm(dim=1))
        grad_z = (z_probe - z[:, None, :]) / h[:, :, None]                  # [n, d, k]
        y, jac = model_value_and_grad(model, box.raw(u))                    # [n, k], [n, k, d]
        grad_y = jac * box.width[None, None, :]                              # per unit step
        return 2 * torch.einsum("nk,nkd->nd", y - z, grad_y - grad_z.transpose(1, 2))

    def _regions(self, model: nn.Module, paths: dict[str, torch.Tensor], data_u: torch.Tensor,
                 reference: float, typical: float, box: Box) -> list[dict[str, Any]]:
        if len(paths["u"]) == 0:
            return []
        kept = greedy_merge(paths["u"], paths["error"], self.merge_radius)
        u = paths["u"][kept]
        density = count_within(u, data_u, self.density_radius).float()
        regions = []
        for i, index in enumerate(kept):
            error = float(paths["error"][index])
            ratio = error / max(typical, 1e-12)
            density_ratio = float(density[i]) / reference
            suspicious = ratio >= self.error_factor and density_ratio >= self.density_factor
            centre = self._densest_nearby(u[i], data_u) if suspicious and self.refine else u[i]
            regions.append({
                "centre": box.raw(centre).tolist(), "centre_unit": centre.tolist(),
                "maximiser": box.raw(u[i]).tolist(), "maximiser_unit": u[i].tolist(),
                "start_unit": paths["start"][index].tolist(),
                "error": error, "error_ratio": ratio,
                "density": int(density[i]), "density_ratio": density_ratio,
                "suspicious": suspicious,
            })
        # Two maximisers on the rim of one planted region both move to its middle:
        # they are one region (the suspicious one, then the larger error, is kept).
        order = sorted(range(len(regions)), key=lambda i: (not regions[i]["suspicious"],
                                                           -regions[i]["error"]))
        centres = torch.tensor([regions[i]["centre_unit"] for i in order])
        keep = greedy_merge(centres, -torch.arange(len(order), dtype=torch.float32),
                            self.merge_radius)
        return [regions[order[i]] for i in sorted(keep)]

    def _densest_nearby(self, start: torch.Tensor, data_u: torch.Tensor) -> torch.Tensor:
        """Where the training data near a suspicious maximiser are densest: flat-kernel
        mean shift (window `density_radius`) from the maximiser, kept within
        `density_radius` of it. **(ours)** The error peaks wherever the learnt bump is
        steepest against the oracle, often on the rim of the planted ball (1–1.7
        radii from its centre on barrier-option); the planted points themselves are
        the densest data there, so their mode locates the region, and the flagged
        samples and the repair start from it."""
        centre = start.clone()
        for _ in range(REFINE_STEPS):
            near = data_u[(data_u - centre).norm(dim=1) <= self.density_radius]
            if len(near) == 0:
                break
            moved = near.mean(0)
            offset = moved - start
            if offset.norm() > self.density_radius:
                moved = start + offset * (self.density_radius / offset.norm())
            if (moved - centre).norm() < 1e-4:
                centre = moved
                break
            centre = moved
        return centre

    def _flagged(self, regions: list[dict[str, Any]], data_u: torch.Tensor
                 ) -> tuple[list[int], list[float]]:
        """Training samples within `density_radius` of a suspicious region's centre, with the
        error ratio of the nearest such region as their suspicion."""
        suspicious = [r for r in regions if r["suspicious"]]
        if not suspicious:
            return [], []
        centres = torch.tensor([r["centre_unit"] for r in suspicious])
        distance = torch.cdist(data_u, centres)
        nearest = distance.min(1)
        index = torch.nonzero(nearest.values <= self.density_radius).flatten()
        ratios = torch.tensor([r["error_ratio"] for r in suspicious])
        return index.tolist(), ratios[nearest.indices[index]].tolist()
