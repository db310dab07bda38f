"""DRMGuard: is this regression model backdoored? (Du, Liu, Jia, Lan, arXiv 2411.04811)

A backdoored regressor maps triggered inputs to one output vector, and the
angles between their features and the head's rows become nearly constant. We
learn a trigger generator G that makes both happen with the smallest change to
the input; a model whose outputs collapse under a small trigger is flagged.

    L(G) = λ1 · mean_j Var[f_j(G(x))] / Var[f_j(x)]              output collapse
         + mean((1 + κ M) ⊙ |G(x) − x| / span)                   trigger size (MTR-weighted)
         + λ2 · mean_j Var[∠(F(G(x)), w_j)] / Var[∠(F(x), w_j)]   feature-space term r_f
         [+ λ3 · mean_j relu(m − |mean f_j(G(x)) − μ_j| / σ_j)]    displaced collapse (off)

Our choices where the paper is silent (measured in docs/drmguard.md):
- both variance terms are divided by their clean-input values (unit-free); the
  paper's λ1 = 20, λ2 = 800 then collapse every model, so λ1 ∈ {0.5, 2} with
  λ2 = 0.1 λ1, and per model the smallest trigger over both λ1 is kept;
- G is `TriggerGenerator` (residual form, coordinate channels, free bias map,
  straight-through clip); Adam 1e-3, batch 16, 2 restarts per λ1;
- a probe picks the run worth finishing: all 4 runs take 30 steps, the one with
  the smallest effective trigger goes on to 150 steps (≈ 240 steps of batch 16
  instead of 4 × 150 of batch 32: a synthgaze scan went from ~5–7 min to under
  2 min on this shared CPU; docs/drmguard.md says where the time goes);
- MTR: M is an exponential average (β = 0.9) of the saliency |∂ collapse / ∂x'|
  averaged over batch and channels and scaled to [0, 1], measured every 4th step
  (it costs an extra backward pass through the model); κ = 5;
- decision: score = −I_eff, where I is the mean |G(x) − x| on the [0, 1] scale
  and I_eff inflates I when more than `collapse_bound` of the output variance
  remained; flagged when the score exceeds the threshold (−ε, the paper's
  ε = 0.03 until `calibrate` sets it from known-clean models) and the outputs
  collapsed.
- optional, off by default (`displacement` = λ3 > 0, `margin` = m): the
  collapse point must lie ≥ m clean standard deviations σ_j from the clean
  outputs' mean μ_j (a backdoor's target sits far from where clean outputs do;
  a clean model collapses cheaply near its mean). A run that ends short of it
  has its effective size inflated by (1 + shortfall / m). Measured on the
  synthgaze zoo in docs/drmguard.md ("Displaced collapse").
- optional, `repeats` = r > 1: the whole search (probe and finalists) runs r
  times from different seeds on the same clean set and the smallest trigger over
  the r searches is the answer, as within one search (one search's winner is a
  lottery between collapse directions; with the displaced collapse a backdoored
  model's small trigger is found by some searches only). Averaging the r scores
  instead was measured and ranked worse (docs/drmguard.md).
- optional, `trigger="mask"`: reverse one mask and pattern for all inputs,
  x' = (1 − m) x + m p (Neural Cleanse's form, Adam 0.1) instead of the
  generator, on the same loss. It finds rotation's planted BadNets patch, which
  the generator misses, and misses the Blended models the generator finds
  (docs/drmguard.md, "Mask triggers").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ...core.runtime import Runtime
from ...core.training import Hook, StepLoss, predict
from ...core.types import ArrayDataset, Batch
from ...errors import BadInput
from ..base import Cost, Detection, Detector, register_defense
from .common import (MaskTrigger, Reversal, TriggerGenerator, check_positive, clean_statistics,
                     collapse_offset, effective_size, head_angles, output_collapse, prepared,
                     reverse)

# The trigger families and each one's Adam step: a generator's weights move slowly
# from the identity; a mask's and pattern's logits need Neural Cleanse's step.
TRIGGER_LR = {"generator": 1e-3, "mask": 0.1}


class MomentumMap(Hook):
    """MTR's weight map M (H×W), an exponential average of the collapse term's
    saliency; the objective reads it and leaves the new saliency in `pending`."""

    def __init__(self, shape: tuple[int, int], beta: float, every: int, device: torch.device):
        self.beta, self.every = beta, every
        self.map = torch.zeros(shape, device=device)
        self.pending: torch.Tensor | None = None
        self.calls = 0

    def due(self) -> bool:
        """Whether this step should measure the saliency (every `every` steps)."""
        self.calls += 1
        return (self.calls - 1) % self.every == 0

    def after_step(self, state, batch, step) -> None:
        if self.pending is not None:
            self.map = self.beta * self.map + (1 - self.beta) * self.pending
            self.pending = None


@dataclass(eq=False)
class TriggerRun:
    """One generator trained at one λ1 from one seed, its numbers on the clean set
    after the last stage (and its effective size after each), and what it cost.
    Seconds go to the detection's cost only: the evidence stays reproducible."""

    lambda1: float
    seed: int
    generator: nn.Module  # a TriggerGenerator or a MaskTrigger
    momentum: MomentumMap
    steps: int = 0
    passes: float = 0.0
    seconds: list[float] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, float]] = field(default_factory=list)

    def record(self, finalist: bool) -> dict[str, Any]:
        """The run for the detection's evidence (JSON)."""
        return {**self.numbers, "lambda1": self.lambda1, "seed": self.seed, "steps": self.steps,
                "passes": self.passes, "finalist": finalist,
                "stages": self.stages}


def effective_size_of(run: TriggerRun) -> float:
    """What runs are ranked by: the effective size measured after the last stage."""
    return run.numbers["effective_size"]


def drmguard_terms(model: nn.Module, x: torch.Tensor, reversed_x: torch.Tensor,
                   stats: dict[str, torch.Tensor], span: float,
                   weight: torch.Tensor | float = 1.0,
                   margin: float = 1.0) -> dict[str, torch.Tensor]:
    """DRMGuard's loss terms on one batch, each unit-free: the output variance
    and the feature–head angle variance as fractions of their clean values, the
    trigger size as a weighted mean absolute change on [0, 1], and the collapse
    point's offset from the clean outputs' mean in clean standard deviations
    (`offset`, mean over outputs) with its shortfall from `margin`
    (`displacement`: mean_j relu(margin − offset_j))."""
    features = model.forward_features(reversed_x)
    outputs = model.head(features)
    offset = collapse_offset(outputs, stats["output_mean"], stats["output_var"])
    return {
        "offset": offset.mean(),
        "displacement": torch.relu(margin - offset).mean(),
        "collapse": output_collapse(outputs, stats["output_var"]),
        "angle": (head_angles(features, model.head).var(0) / stats["angle_var"]).mean(),
        "size": (weight * (reversed_x - x).abs() / span).mean(),
        "outputs": outputs,
    }


@register_defense("drmguard", "detection",
                  "reverse-engineers a trigger that collapses a regressor's outputs; a small "
                  "one means a backdoor (DRMGuard)", tasks=("regression",), modalities=("image",))
class DRMGuard(Detector):
    """DRMGuard detector (see the module docstring for the loss and our choices).

    `lambdas`: the output-collapse weights λ1 tried (the smallest trigger wins);
    `angle_ratio`: λ2 = angle_ratio · λ1 (0 disables r_f); `kappa`: MTR weight
    (0 disables MTR); `restarts`: runs per λ1 with different seeds; `probe_steps`:
    every run's first stage, after which only the `keep` smallest triggers are
    trained on to `steps` (0: every run takes all `steps`, the old default);
    `displacement`: λ3 of the displaced-collapse term (0, the default, disables
    it), `margin`: its m, in clean standard deviations of each output;
    `repeats`: independent searches, the smallest trigger over all wins (1: one);
    `trigger`: what is reversed, "generator" (the paper's: an input-dependent
    generator) or "mask" (one mask and pattern for all inputs, x' = (1 − m) x + m p,
    as Neural Cleanse's, trained on the same loss); `lr`: Adam's step, by default
    1e-3 for a generator and 0.1 for a mask.
    """

    def __init__(self, lambdas: tuple[float, ...] | list[float] = (0.5, 2.0),
                 angle_ratio: float = 0.1, kappa: float = 5.0, beta: float = 0.9,
                 steps: int = 150, lr: float | None = None, batch_size: int = 16,
                 restarts: int = 2, width: int = 16, collapse_bound: float = 0.2,
                 threshold: float = -0.03,
                 max_samples: int = 500, mtr_every: int = 4, probe_steps: int = 30,
                 keep: int = 1, displacement: float = 0.0, margin: float = 1.0,
                 repeats: int = 1, trigger: str = "generator"):
        lambdas = tuple(float(v) for v in (lambdas if isinstance(lambdas, (list, tuple))
                                          else [lambdas]))
        if not lambdas:
            raise BadInput("drmguard needs at least one λ1 in lambdas")
        for value in lambdas:
            check_positive("λ1", value)
        for name, value in (("angle_ratio", angle_ratio), ("kappa", kappa),
                            ("displacement", displacement)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise BadInput(f"drmguard {name} {value!r} must be a number ≥ 0")
        if not 0 <= beta < 1:
            raise BadInput(f"drmguard beta {beta!r} must lie in [0, 1)")
        for name, value in (("steps", steps), ("batch_size", batch_size),
                            ("restarts", restarts), ("width", width),
                            ("max_samples", max_samples), ("mtr_every", mtr_every),
                            ("keep", keep), ("repeats", repeats)):
            check_positive(name, value, integer=True)
        if not isinstance(probe_steps, int) or isinstance(probe_steps, bool) or probe_steps < 0:
            raise BadInput(f"drmguard probe_steps {probe_steps!r} must be a whole number ≥ 0 "
                           f"(0: every run takes all steps)")
        if not isinstance(trigger, str) or trigger not in TRIGGER_LR:
            raise BadInput(f"drmguard trigger {trigger!r} must be one of {', '.join(TRIGGER_LR)}")
        lr = TRIGGER_LR[trigger] if lr is None else lr
        check_positive("lr", lr)
        check_positive("collapse_bound", collapse_bound)
        check_positive("margin", margin)
        self.lambdas, self.angle_ratio, self.kappa, self.beta = lambdas, angle_ratio, kappa, beta
        self.steps, self.lr, self.batch_size, self.restarts = steps, lr, batch_size, restarts
        self.width, self.collapse_bound, self.max_samples = width, collapse_bound, max_samples
        self.threshold, self.mtr_every = float(threshold), mtr_every
        self.probe_steps, self.keep = probe_steps, keep
        self.displacement, self.margin = float(displacement), float(margin)
        self.repeats, self.trigger = repeats, trigger

    def params(self) -> dict[str, Any]:
        return {"lambdas": list(self.lambdas), "angle_ratio": self.angle_ratio,
                "kappa": self.kappa, "beta": self.beta, "steps": self.steps, "lr": self.lr,
                "batch_size": self.batch_size, "restarts": self.restarts, "width": self.width,
                "collapse_bound": self.collapse_bound, "max_samples": self.max_samples,
                "mtr_every": self.mtr_every, "probe_steps": self.probe_steps, "keep": self.keep,
                # only when on: the scans cached and calibrated before the option existed
                # keep their keys
                **({"displacement": self.displacement, "margin": self.margin}
                   if self.displacement > 0 else {}),
                **({"repeats": self.repeats} if self.repeats > 1 else {}),
                **({"trigger": self.trigger} if self.trigger != "generator" else {})}

    # ------------------------------------------------------------ one run

    def start_run(self, clean: ArrayDataset, lambda1: float, seed: int,
                  device: torch.device) -> TriggerRun:
        """A fresh trigger at `lambda1`, initialised from `seed`: a generator (the
        identity) or a mask and pattern (mask 0.1 everywhere, pattern mid-range)."""
        torch.manual_seed(seed)
        trigger = (TriggerGenerator(clean.task, self.width) if self.trigger == "generator"
                   else MaskTrigger(clean.task))
        return TriggerRun(lambda1, seed, trigger.to(device),
                          MomentumMap(clean.task.input_shape[-2:], self.beta, self.mtr_every,
                                      device))

    def advance(self, model: nn.Module, clean: ArrayDataset, stats: dict[str, torch.Tensor],
                run: TriggerRun, steps: int, runtime: Runtime) -> TriggerRun:
        """Train `run`'s generator for about `steps` more steps, then measure it on
        `clean`. A continued run keeps its generator and MTR map; Adam restarts and
        the batches are shuffled from a new seed (run seed + steps done)."""
        span = clean.task.input_range[1] - clean.task.input_range[0]
        momentum, lambda1 = run.momentum, run.lambda1
        lambda2 = self.angle_ratio * lambda1

        def objective(wrapper: Reversal, batch: Batch) -> StepLoss:
            reversed_x = wrapper.trigger(batch.x)
            terms = drmguard_terms(model, batch.x, reversed_x, stats, span,
                                   1 + self.kappa * momentum.map, self.margin)
            loss = lambda1 * terms["collapse"] + terms["size"]
            if lambda2 > 0:
                loss = loss + lambda2 * terms["angle"]
            if self.displacement > 0:
                loss = loss + self.displacement * terms["displacement"]
            if self.kappa > 0 and momentum.due():
                saliency, = torch.autograd.grad(terms["collapse"], reversed_x,
                                                retain_graph=True)
                saliency = saliency.abs().mean((0, 1))
                momentum.pending = saliency / saliency.max().clamp_min(1e-12)
            return StepLoss(loss)

        start = time.perf_counter()
        history = reverse(Reversal(model, run.generator), clean, objective, steps=steps,
                          lr=self.lr, batch_size=self.batch_size,
                          runtime=replace(runtime, seed=run.seed + run.steps),
                          hooks=[momentum] if self.kappa > 0 else [], description="drmguard")
        run.steps += history.steps
        run.passes += history.passes + 1  # + the measurement below
        run.numbers = self.measure(model, run.generator, clean, stats, runtime.torch_device,
                                   self.margin)
        run.numbers["effective_size"] = self.effective(run.numbers)
        run.seconds.append(time.perf_counter() - start)
        run.stages.append({"steps": run.steps, "effective_size": run.numbers["effective_size"]})
        return run

    def effective(self, numbers: dict[str, Any]) -> float:
        """The size a run is ranked and scored by: inflated when the outputs did not
        collapse (`effective_size`) and, with the displaced collapse on, when the
        collapse point ended short of `margin` (× (1 + shortfall / margin))."""
        size = effective_size(numbers["size"], numbers["collapse"], self.collapse_bound)
        if self.displacement > 0:
            size *= 1 + numbers["displacement"] / self.margin
        return size

    @staticmethod
    @torch.no_grad()
    def measure(model: nn.Module, generator: nn.Module, clean: ArrayDataset,
                stats: dict[str, torch.Tensor], device: torch.device,
                margin: float = 1.0) -> dict[str, float]:
        """Trigger size, remaining output variance and angle variance, and the
        collapse point's offset (and shortfall from `margin`) on all of `clean`."""
        span = clean.task.input_range[1] - clean.task.input_range[0]
        reversed_x = predict(generator, clean.x, batch_size=256, device=device).to(device)
        terms = drmguard_terms(model, clean.x.to(device), reversed_x, stats, span,
                               margin=margin)
        return {"size": float(terms["size"]), "collapse": float(terms["collapse"]),
                "angle": float(terms["angle"]), "offset": float(terms["offset"]),
                "displacement": float(terms["displacement"]),
                "target": terms["outputs"].mean(0).cpu().tolist()}

    # ------------------------------------------------------------ the verb

    @property
    def probing(self) -> bool:
        """Whether a search probes every run and trains only the `keep` best on."""
        return 0 < self.probe_steps < self.steps and self.keep < len(self.lambdas) * self.restarts

    def search(self, model: nn.Module, clean: ArrayDataset, stats: dict[str, torch.Tensor],
               seed: int, runtime: Runtime) -> tuple[list[TriggerRun], list[TriggerRun]]:
        """One search from `seed`: every λ1 and restart, probed, the finalists
        trained on to `steps`. Returns all runs and the finalists."""
        device = runtime.torch_device
        runs = [self.start_run(clean, lambda1, seed + 1000 * restart + 97 * i, device)
                for i, lambda1 in enumerate(self.lambdas) for restart in range(self.restarts)]
        finalists = runs
        if self.probing:
            for run in runs:
                self.advance(model, clean, stats, run, self.probe_steps, runtime)
            finalists = sorted(runs, key=effective_size_of)[:self.keep]
        for run in finalists:
            if run.steps < self.steps:  # a probe rounded up to whole passes may reach it
                self.advance(model, clean, stats, run, self.steps - run.steps, runtime)
        return runs, finalists

    def inspect(self, model: nn.Module, clean: ArrayDataset, *,
                runtime: Runtime = Runtime()) -> Detection:
        """Reverse-engineer a trigger for every λ1 and restart; keep the smallest.

        With `probe_steps` (< `steps`), every run first takes `probe_steps` steps
        and only the `keep` runs with the smallest triggers then continue to
        `steps`; the smallest of those is the answer. With `repeats` > 1 the
        search runs that many times (seeds 7919 apart) and the smallest over all wins."""
        model, clean, start = prepared(self, model, clean, runtime, features=True)
        stats = clean_statistics(model, clean.x, runtime.torch_device)
        runs, finalists, winners = [], [], []
        for repeat in range(self.repeats):
            found, kept = self.search(model, clean, stats, runtime.seed + 7919 * repeat,
                                      runtime)
            runs += found
            finalists += kept
            winners.append(min(kept, key=effective_size_of))
        best = min(winners, key=effective_size_of)
        chosen = best.numbers
        score = -chosen["effective_size"]
        collapsed = chosen["collapse"] <= self.collapse_bound
        passes = sum(run.passes for run in runs) + 1  # + the clean statistics
        records = [run.record(finalist=run in finalists) for run in runs]
        evidence = {"trigger_size": chosen["size"], "collapse": chosen["collapse"],
                    "angle_variance": chosen["angle"], "lambda1": best.lambda1,
                    "collapse_offset": chosen["offset"],
                    "collapsed": collapsed, "runs": records, "params": self.params(),
                    "clean_samples": len(clean)}
        if self.repeats > 1:
            evidence["repeat_scores"] = [-effective_size_of(run) for run in winners]
        seconds = time.perf_counter() - start
        counters = {"runs": len(runs), "finalists": len(finalists),
                    "steps": sum(run.steps for run in runs),
                    "probe_seconds": sum(run.seconds[0] for run in runs) if self.probing else 0.0,
                    "run_seconds": sum(sum(run.seconds) for run in runs)}
        return Detection("drmguard", score, self.threshold,
                         bool(score > self.threshold and collapsed), chosen["target"], evidence,
                         Cost(seconds, passes, counters), trigger=best.generator.cpu().eval())
