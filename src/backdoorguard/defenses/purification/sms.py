"""SMS: suppressing model shortcuts (Yang, Li, Jiang & Xia, arXiv 2211.05631; ALGORITHMS.md §5).

Skip connections let a network learn shortcuts, and triggers ride them. Every
residual block of our models computes residual(x) + γ·shortcut(x) with γ a
buffer (`skip_scale`, 1 normally). SMS

1. probes every block: for γ ∈ {1.0, 0.9, …, 0} (one block at a time) measures
   the attack success on a probe set, and scores the block by the sum over the
   steps of (drop in ASR) / exp(previous ASR), ASR as a fraction;
2. sets γ = 0 at the best-scoring (critical) block;
3. fine-tunes the stage holding that block on the clean data with the rest of
   the model frozen (`fit(parameters=...)`): SGD lr 0.01, momentum 0.9, weight
   decay 5e-4, batch 64 (paper 128), 10 epochs (at least `min_steps` steps).

The probe **(ours: the defender does not know the trigger)**:
- `surrogate` (default): train a surrogate of the same architecture from
  scratch on the clean data plus a copy carrying a BadNets trigger of our own (a
  patch in the top-left corner of images, a pattern at the start of series;
  target: the last class, or 0.1 of the way up each label range for regression,
  away from the usual attack targets), `surrogate_steps` Adam steps, and probe
  it: the critical block is assumed to be a property of the architecture and
  of how a backdoor is learnt. Grafting the trigger onto a copy of the trained
  model by fine-tuning was tried first and put it in the last stage, which
  missed (digits, preact-resnet18 width 8: ASR 0.95 after SMS, against 0.18 with
  the real trigger as probe and 0.18 with the surrogate trained from scratch);
- `reversed`: a trigger recovered by a detector, passed as `trigger` (an object
  with `apply(x)` and `target(y)`, as attacks and reversed triggers have);
- `given`: the real attack, passed as `trigger` (benchmarks only; results say so).
`changes["probe"]` records which was used. Regression: the probe's attack
success is `asr_at_tol` against the probe's target.
`measure="margin"` scores a block by the largest fall of the probe's mean
margin instead (target logit − largest other; regression: minus the distance to
the target in units of `tol`), which does not saturate; measured on the
purification grid it picks the same mnist5k block as the ASR and passes no
more cells (docs/purification-methods.md), so `asr` stays the default.

`block="stages.0.1"` names the block to suppress and skips the probe (results
record `probe: "block"`): for a user who knows where backdoors of a model family
live, and to measure every block's outcome. `surrogates=N` trains N surrogates
(seeds seed, seed + 1, …; trigger kinds taken in turn from `surrogate_triggers`,
"badnets" or "blended") and adds their block scores, each divided by its own
total. Measured on mnist5k (docs/purification-methods.md) the 60-step BadNets
surrogate picks the same block at six seeds out of six, so a vote does not move
the choice; one surrogate stays the default.

Models without skip connections (cnn-small, mlp) are refused: there is nothing
to suppress.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import torch
from torch import nn

from ...attacks import create_attack
from ...config import TrainConfig
from ...core.metrics import accuracy, within
from ...core.runtime import Runtime
from ...core.training import fit, predict
from ...core.types import ArrayDataset
from ...errors import BadInput, one_of
from ...models import skip_connections
from ...models.base import init_head
from ..base import Purified, register_defense
from .common import FineTuningPurifier

PROBES = ("surrogate", "reversed", "given")
MEASURES = ("asr", "margin")
SURROGATE_TRAIN = TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=2e-3, amp=False)
SURROGATE_BLEND_SEED = 7919
GAMMAS = tuple(round(1.0 - 0.1 * k, 1) for k in range(11))


SURROGATE_TRIGGERS = ("badnets", "blended")


def surrogate_attack(task, kind: str = "badnets"):
    """Our own trigger, away from where attacks usually put theirs: a BadNets
    patch in the top-left corner (series: at the start), or a blend with a noise
    pattern of our own seed (not the Blended attack's default pattern)."""
    if task.is_classification:
        target: Any = task.num_outputs - 1
    else:
        target = [lo + 0.1 * (hi - lo) for lo, hi in task.label_range]
    if kind == "blended":
        return create_attack("blended", task, target=target, seed=SURROGATE_BLEND_SEED)
    position = "start" if task.modality == "series" else "top-left"
    return create_attack("badnets", task, target=target, position=position)


def attack_success(model: nn.Module, x: torch.Tensor, y_target: torch.Tensor, task) -> float:
    outputs = predict(model, x)
    if task.is_classification:
        return accuracy(outputs, y_target)
    return within(outputs, y_target, task.tol)


def attack_margin(model: nn.Module, x: torch.Tensor, y_target: torch.Tensor, task) -> float:
    """How firmly the probe's trigger holds, unsaturated: classification, the mean of
    (target logit − largest other logit); regression, minus the mean distance to the
    target in units of `tol`. Higher: a stronger backdoor."""
    outputs = predict(model, x)
    if task.is_classification:
        target = outputs.gather(1, y_target.view(-1, 1)).squeeze(1)
        others = outputs.scatter(1, y_target.view(-1, 1), float("-inf")).max(1).values
        return float((target - others).mean())
    return -float((outputs - y_target).flatten(1).norm(dim=1).mean() / task.tol)


def asr_score(curve: list[float]) -> float:
    """The paper's block score: Σ over the γ steps of (drop in ASR) / exp(previous ASR)."""
    score = 0.0
    for previous, value in zip(curve, curve[1:]):
        score += (previous - value) / math.exp(previous)
    return score


def margin_score(curve: list[float]) -> float:
    """The largest fall of the margin below its value at γ = 1."""
    return curve[0] - min(curve)


def stage_of(model: nn.Module, block_name: str) -> str:
    """The `stages.i` prefix holding a block (the whole name if it is not in one)."""
    parts = block_name.split(".")
    return ".".join(parts[:2]) if parts[0] == "stages" and len(parts) > 1 else block_name


@register_defense("sms", "purification", "suppress the critical skip connection (γ = 0) and "
                  "fine-tune its stage; residual models only")
class SMS(FineTuningPurifier):
    """Skip-connection suppression then stage fine-tuning (see module doc)."""

    def __init__(self, *, probe: str = "surrogate", trigger: Any = None,
                 probe_size: int = 64, surrogate_steps: int = 60, measure: str = "asr",
                 block: str | None = None, surrogates: int = 1,
                 surrogate_triggers: str | list[str] = "badnets",
                 train: TrainConfig | dict[str, Any] | None = None, min_steps: int = 50,
                 batchnorm: str = "frozen", augment: str | bool = "auto") -> None:
        super().__init__(train=train, min_steps=min_steps, batchnorm=batchnorm,
                         augment=augment)
        one_of("sms probe", probe, PROBES)
        one_of("sms measure", measure, MEASURES)
        self.measure = measure
        if probe != "surrogate" and trigger is None:
            raise BadInput(f"sms probe={probe!r} needs `trigger` (an object with apply(x) "
                           f"and target(y))")
        if probe_size < 1 or surrogate_steps < 1:
            raise BadInput(f"sms probe_size {probe_size} and surrogate_steps {surrogate_steps} "
                           f"must be ≥ 1")
        if block is not None and not isinstance(block, str):
            raise BadInput(f"sms block {block!r} must be a block's name (e.g. 'stages.0.1')")
        if isinstance(surrogates, bool) or not isinstance(surrogates, int) or surrogates < 1:
            raise BadInput(f"sms surrogates {surrogates!r} must be a whole number ≥ 1")
        kinds = [surrogate_triggers] if isinstance(surrogate_triggers, str) else \
            list(surrogate_triggers)
        if not kinds:
            raise BadInput("sms surrogate_triggers is empty; allowed: "
                           + ", ".join(SURROGATE_TRIGGERS))
        for kind in kinds:
            one_of("sms surrogate_triggers", kind, SURROGATE_TRIGGERS)
        self.probe, self.trigger, self.block = probe, trigger, block
        self.surrogates, self.surrogate_triggers = surrogates, kinds
        self.probe_size, self.surrogate_steps = int(probe_size), int(surrogate_steps)

    # ------------------------------------------------------------ the probe

    def probe_set(self, trigger, clean: ArrayDataset, seed: int):
        """(triggered inputs, targets) from clean samples the trigger does not
        already satisfy, at most `probe_size` of them."""
        generator = torch.Generator().manual_seed(seed)
        x, y = clean.x.cpu(), clean.y.cpu()
        targets = trigger.target(y)
        if clean.task.is_classification:
            keep = torch.nonzero(y != targets).flatten()
        else:
            keep = torch.nonzero((y - targets).flatten(1).norm(dim=1) > clean.task.tol).flatten()
        keep = keep[torch.randperm(len(keep), generator=generator)[:self.probe_size]]
        if len(keep) == 0:
            raise BadInput("sms: no clean sample lies outside the probe trigger's target")
        return trigger.apply(x[keep]), targets[keep]

    def plant(self, model: nn.Module, clean: ArrayDataset, trigger, runtime: Runtime):
        """A surrogate: the same architecture, re-initialised and trained from
        scratch on the clean data plus its triggered copy (Adam, BatchNorm in
        train mode: its statistics are new), so the surrogate trigger is learnt
        the way a real backdoor is, not grafted onto the trained model."""
        surrogate = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(runtime.seed)
            for module in surrogate.modules():
                if module is not surrogate and callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
        init_head(surrogate.head, clean.task)
        x_trig, y_target = self.probe_set(trigger, clean, runtime.seed)
        mixed = ArrayDataset(torch.cat([clean.x.cpu(), x_trig]),
                             torch.cat([clean.y.cpu(), y_target]), clean.task)
        config = SURROGATE_TRAIN.model_copy(update={"epochs": math.ceil(
            self.surrogate_steps / mixed.num_batches(SURROGATE_TRAIN.batch_size))})
        history = fit(surrogate, mixed, config, runtime=runtime,
                      description="purify (sms surrogate)")
        return surrogate, history

    def scores(self, model: nn.Module, blocks, x_trig, y_target, task) -> dict[str, Any]:
        """The probe's measure per block per γ and each block's score: with `asr`
        the paper's sum of (drop in ASR) / exp(previous ASR); with `margin` the
        largest fall of the margin below its value at γ = 1 (the ASR of a surrogate
        that learnt its trigger firmly often stays at 1 whichever single skip
        connection is suppressed, leaving every block at score 0)."""
        measure = attack_success if self.measure == "asr" else attack_margin
        base = measure(model, x_trig, y_target, task)
        curves = {}
        for name, block in blocks:
            curves[name] = [base]
            for gamma in GAMMAS[1:]:
                block.skip_scale.fill_(gamma)
                curves[name].append(measure(model, x_trig, y_target, task))
            block.skip_scale.fill_(1.0)
        score = asr_score if self.measure == "asr" else margin_score
        return {self.measure: curves, "score": {name: score(c) for name, c in curves.items()}}

    def probe_blocks(self, probed: nn.Module, trigger: Any, clean: ArrayDataset,
                     seed: int) -> dict:
        """The probe's curves and block scores of `probed` under `trigger`."""
        x_trig, y_target = self.probe_set(trigger, clean, seed)
        with torch.no_grad():
            return self.scores(probed, skip_connections(probed), x_trig, y_target, clean.task)

    def surrogate_scores(self, model: nn.Module, clean: ArrayDataset, kind: str,
                         runtime: Runtime):
        """Train one surrogate carrying our `kind` of trigger (seeded by the
        runtime) and probe it: (its curves and block scores, the planting run)."""
        trigger = surrogate_attack(clean.task, kind)
        probed, planting = self.plant(model, clean, trigger, runtime)
        return self.probe_blocks(probed, trigger, clean, runtime.seed), planting

    def choose(self, model: nn.Module, clean: ArrayDataset, runtime: Runtime, histories: list):
        """(critical block, the probe's curves and scores, the probe used). With
        several surrogates (seeds runtime.seed + k, trigger kinds taken in turn from
        `surrogate_triggers`) each one's block scores are divided by their sum, so
        every surrogate that sees an effect casts one vote spread over the blocks,
        and the votes are added."""
        if self.probe != "surrogate":
            found = self.probe_blocks(model, self.trigger, clean, runtime.seed)
            return self.critical(found["score"]), found, self.probe
        votes: dict[str, float] = {}
        each = []
        for k in range(self.surrogates):
            seeded = dataclasses.replace(runtime, seed=runtime.seed + k)
            kind = self.surrogate_triggers[k % len(self.surrogate_triggers)]
            found, planting = self.surrogate_scores(model, clean, kind, seeded)
            histories.append(planting)
            each.append({"trigger": kind, "seed": seeded.seed, **found})
            total = sum(max(v, 0.0) for v in found["score"].values())
            for name, value in found["score"].items():
                votes[name] = votes.get(name, 0.0) + (max(value, 0.0) / total if total else 0.0)
        if self.surrogates == 1:
            return self.critical(each[0]["score"]), each[0], self.probe
        found = {self.measure: [e[self.measure] for e in each], "score": votes,
                 "surrogates": [{"trigger": e["trigger"], "seed": e["seed"],
                                 "score": e["score"]} for e in each]}
        return self.critical(votes), found, self.probe

    @staticmethod
    def critical(scores: dict[str, float]) -> str:
        # ties (no block lowers the probe's success at all) go to the first block;
        # `probe_found` says whether the probe saw any effect
        return max(scores, key=scores.get)

    # ------------------------------------------------------------ the verb

    def purify(self, model: nn.Module, clean: ArrayDataset, *,
               runtime: Runtime = Runtime()) -> Purified:
        start = time.perf_counter()
        blocks = skip_connections(model)
        if not blocks:
            name = getattr(model, "model_spec", {}).get("name", type(model).__name__)
            raise BadInput(f"sms needs a model with skip connections (residual blocks with a "
                           f"skip_scale); {name!r} has none: use d3, ft, fp or nad")
        if self.block is not None and self.block not in dict(blocks):
            raise BadInput(f"sms block {self.block!r} is not a residual block of this model; "
                           f"allowed: {', '.join(name for name, _ in blocks)}")
        model = self.prepare(model, clean, runtime)
        histories = []
        if self.block is None:
            critical, found, probed_with = self.choose(model, clean, runtime, histories)
        else:
            critical, found, probed_with = self.block, None, "block"
        blocks = dict(skip_connections(model))
        blocks[critical].skip_scale.fill_(0.0)
        stage = stage_of(model, critical)
        parameters = [p for name, p in model.named_parameters()
                      if name == stage or name.startswith(stage + ".")]
        history = self.finetune(model, clean, runtime, parameters=parameters)
        histories.append(history)
        changes = {"probe": probed_with, "critical_block": critical, "skip_scale": 0.0,
                   "trained": stage, "trained_parameters": sum(p.numel() for p in parameters),
                   "epochs": len(history.epochs)}
        if found is not None:
            changes.update({"measure": self.measure, "probe_found": found["score"][critical] > 0,
                            f"probe_{self.measure}": found[self.measure],
                            "block_scores": found["score"], "gammas": list(GAMMAS)})
            if "surrogates" in found:
                changes["surrogates"] = found["surrogates"]
        return self.result(model, changes, start, histories, clean.task)
