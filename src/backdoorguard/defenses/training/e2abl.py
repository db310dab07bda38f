"""E2ABL, end-to-end anti-backdoor learning (Jiang, Ma, Erfani, Li & Bailey,
arXiv 2401.03215; ALGORITHMS.md §3): a shallow second head traps the backdoor
while the main head learns from cleansed data, in one training run.

    defense = E2ABL(train=TrainConfig(epochs=30))
    trained = defense.fit(model, poisoned)     # -> Trained (model, suspects)

The backdoor shortcut is learnt early and shallow, so a weak head on shallow
features learns it long before it learns the clean task. During the run:

- The trap h2 reads the output of trunk stage `trap_stage` (0: the first stage
  of preact-resnet18, the first residual block of resnet1d, the first conv block
  of cnn-small), detached **(ours: stop-gradient, the trunk never sees h2's
  loss)**, pooled over space or time by a max and by an average, one linear head
  each **(ours: max pooling caught BadNets, average pooling Blended in our
  prototype, neither both; we train both)**. `trap_conv=True` puts a small conv
  block (conv 3, BN, ReLU) before the pooling; off by default: on digits it let
  the trap learn the clean task and its ranking fell apart (docs/e2abl.md).
  `trap_input_steps=True` adds one more linear head on the model's *input*: per
  channel the largest and mean absolute step between neighbours along the last
  axis and the steps' spread, standardised by the training set's **(ours: a
  global additive trigger on a smooth series — blended noise, a sinusoid — is
  nearly invisible to the pooled stage features, whose max/avg heads ranked
  GunPoint's poison last, but it raises every poisoned series' steps;
  docs/e2abl.md "Series with a global trigger")**; with `trap_pooling="none"` it
  is the trap's only head. The default, `"auto"`, is the smooth-series profile
  **(ours)**: on series whose training set (poisoned as given) has a median
  `roughness` below `SMOOTH_BELOW` (0.2; GunPoint 0.002, JapaneseVowels 0.08–0.09,
  BasicMotions 0.45–0.48, poisoned or not) the steps head is on and, unless
  `unlearn_share` is given, the unlearnt share is `poison_rate_guess` (10 %: on
  GunPoint's 50 series 2 % is one series, too few to remove a backdoor the trap
  found); everywhere else (jerky series such as BasicMotions' accelerometers,
  where the steps head learnt the activities; images; tabular) it is off and the
  share is 2 %. `trap_segments=S` (0, off, by default) adds a position-aware
  head: the stage's features average-pooled to S pieces per axis (S on series,
  S×S on images), flattened, one linear head. With `trap_segments_rank="high"`
  (the option's default) its *highest* losses are suspects **(ours: a head that
  keeps position learns the clean content well enough that a relabelled sample
  whose trigger it cannot represent, a warp, is label noise to it; on digits
  WaNet its loss ranked the poison near the top all run, AUROC of a low loss
  0.03–0.16; on GunPoint time-warp it swung, 0.02–0.59; docs/e2abl.md "Warp
  triggers")** as one more column
  of the lowest rank; `"extra"` adds its `share` / 2 highest as suspects on top
  of the other heads' (they take none of their places and are never among the
  unlearnt lowest-scored); `"low"` ranks it like the other heads. Not a
  default: on the grid it fixed digits WaNet and broke passing cells (mnist5k
  BadNets with either reading, docs/e2abl.md). h2
  has its own Adam optimiser and takes `trap_steps` (3; **ours**: more than 1
  raised its recall where it fell short on digits, at a cost of clean accuracy
  on mnist5k, docs/e2abl.md) steps per batch on the batch's features,
  minimising the flooded (LGA) loss of logit-adjusted cross-entropy **(ours:
  without class balancing a weak head learns the label prior and flags the
  over-represented target class)**.
- Ranking: each sample's balanced h2 loss (raw logits, no prior) as recorded
  during the epoch (`rank_pass=True`: an extra eval-mode pass instead); per head
  a percentile rank; a sample's score is its lowest rank over the heads,
  averaged with its previous score (a running mean: single epochs swing). The
  `share` of samples with the lowest score are the suspects. **(ours)** The
  share starts at `start_share` (1 %) after `warmup_epochs` (1) and ramps
  linearly over `ramp_epochs` (a third of the run) to 2 × `poison_rate_guess`
  (10 %): recall drives the attack success rate, and an overshoot costs little
  clean accuracy when suspects are relabelled or dropped.
- When the share reaches its cap the suspects are frozen and the trap stops
  training **(ours)**: unlearning changes the trunk's shallow features, after
  which the trap's ranking collapsed (recall 0.8 → 0.4 on digits).
- Cleansing with true-class recovery, every epoch: a suspect whose main-head
  prediction (recorded at its last step) is another class with confidence ≥
  `relabel_confidence` **(ours: 0.99)** is trained with that class; any other
  suspect is dropped from the main loss. With `recover_all` (default), once
  the suspects are frozen any sample the main head confidently assigns to
  another class joins them (a poison the trap missed).
- Unlearning, from the freeze on: the `unlearn_share` (2 %; smooth series 10 %,
  see above) of samples with the
  lowest scores add a capped gradient ascent on their given label to the main
  loss (cap 2 · ln K). 5 % cost 4 clean points on digits (more clean samples
  among them) for a similar ASR. With `unlearn_recovered` (default) every
  suspect the main head relabels joins them **(ours: the main head's
  confident disagreement confirms the trap's suspicion)**.
- Dropping the highest losses, from the freeze on **(ours)**: each epoch the
  `high_loss_share` (2 %) of samples still trained with their given label whose
  main-head loss was highest are left out of the next epoch. The poisons the
  trap missed are what keeps the backdoor alive (taking them out of the main
  loss by the attack's ground truth took the ASR on digits from 0.24–0.27 to
  0.00–0.01); once unlearning has begun they conflict with the cleansed data
  and their loss tends to rise to the top (Blended: 8–10 of 10 in the top 5 %).
- The class guard, from the freeze on **(ours)**: unlearning must not cost a
  class its clean accuracy. Per class, the main head's accuracy on the samples
  it trains with their given label outside the suspects ("held") is tracked; a
  class whose held accuracy falls more than `class_guard` (0.05) below its best
  since the freeze is spared: its suspects are released (trained with their
  given label again), none of its samples is unlearnt, relabelled or dropped
  for a high loss from then on, and the unlearnt share is refilled from the
  other classes. The class holding the most suspects at the freeze, the
  backdoor's presumed target (all-to-one), is spared only when its held
  accuracy is more than `target_guard` (0.15) below its best **and** that is at
  least `trap.TARGET_GUARD_SAMPLES` (10) held samples, in
  `trap.TARGET_GUARD_EPOCHS` (2) rounds in a row **(ours: unlearning the true
  target's poisons dips its clean accuracy, by 5–7 points on digits, by a third
  of a few dozen series on GunPoint, BasicMotions and JapaneseVowels, for one
  round; under a clean-label attack that poisons half the target, an easy clean
  class can hold more suspects than the target, and as the presumed target it
  collapsed, class 1 on mnist5k SIG from 0.94 to 0.14)**. On mnist5k the trap's lowest scores held clean 1s
  beside the poison (thin strokes are easy for a shallow head) and unlearning
  them destroyed class 1 (docs/e2abl.md).

Inference uses the main head only: the trap is not part of the returned model,
whose state dict is the plain model's. Classification, images and series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...config import TrainConfig, train_settings
from ...core.runtime import Runtime
from ...core.training import fit
from ...core.types import ArrayDataset
from ...errors import BadInput
from ..base import Trained, TrainingDefense, register_defense
from .common import Phases, check_params
from .trap import Trap, TrapAndCleanse, input_steps, smoothness

POOLINGS = {"max": ("max",), "avg": ("avg",), "both": ("max", "avg"), "none": ()}
# Median series roughness below which `trap_input_steps="auto"` turns the steps
# head on: halfway (geometrically) between the smoothest series set it broke,
# BasicMotions (0.45–0.48 clean or 10 % poisoned), and the roughest it helped,
# JapaneseVowels (0.08–0.09); benchmarks/e2abl_smoothness.py measures every bundled set.
SMOOTH_BELOW = 0.2
UNLEARN_SHARE = 0.02


@dataclass(frozen=True)
class Profile:
    """What E2ABL settled on for one training set: the steps head, the unlearnt
    share, and the statistic behind `trap_input_steps="auto"` (None when it was not
    computed: the option was given, or the inputs are not series)."""

    trap_input_steps: bool
    unlearn_share: float
    smoothness: float | None
    decided_by: str

    def to_dict(self) -> dict[str, Any]:
        return {"trap_input_steps": self.trap_input_steps, "unlearn_share": self.unlearn_share,
                "smoothness": self.smoothness, "smooth_below": SMOOTH_BELOW,
                "decided_by": self.decided_by}


@register_defense("e2abl", "training",
                  "end-to-end anti-backdoor learning: a shallow trap head flags the backdoor, the "
                  "main head learns from cleansed data (true-class recovery) and unlearns it",
                  tasks=("classification",), modalities=("image", "series"))
class E2ABL(TrainingDefense):
    """End-to-end anti-backdoor learning (see module doc)."""

    def __init__(self, *, train: TrainConfig | dict[str, Any] | None = None, trap_stage: int = 0,
                 trap_width: int | None = None, trap_conv: bool = False,
                 trap_pooling: str = "both", trap_input_steps: bool | str = "auto",
                 trap_steps: int = 3,
                 trap_lr: float = 1e-3, gamma: float | None = None,
                 poison_rate_guess: float = 0.1, start_share: float = 0.01,
                 warmup_epochs: int = 1, ramp_epochs: int | None = None, rank_pass: bool = False,
                 recover_all: bool = True,
                 relabel_confidence: float = 0.99, unlearn_share: float | None = None,
                 unlearn_weight: float = 1.0, ascent_cap: float | None = None,
                 unlearn_recovered: bool = True, high_loss_share: float = 0.02,
                 class_guard: float = 0.05, target_guard: float = 0.15,
                 trap_segments: int = 0, trap_segments_rank: str = "high") -> None:
        self.train = train_settings(train, TrainConfig(), "e2abl train")
        check_params("e2abl", {
            "trap_stage": (trap_stage >= 0, trap_stage, "an integer ≥ 0"),
            "trap_width": (trap_width is None or trap_width >= 1, trap_width,
                           "an integer ≥ 1 or none"),
            "trap_input_steps": (trap_input_steps is True or trap_input_steps is False
                                 or trap_input_steps == "auto", trap_input_steps,
                                 "true, false or auto"),
            "trap_pooling": (trap_pooling in POOLINGS
                             and (trap_pooling != "none" or trap_input_steps is True),
                             trap_pooling, "one of " + ", ".join(POOLINGS)
                             + " (none only with trap_input_steps=true)"),
            "trap_steps": (trap_steps >= 1, trap_steps, "an integer ≥ 1"),
            "trap_lr": (trap_lr > 0, trap_lr, "> 0"),
            "gamma": (gamma is None or gamma >= 0, gamma, "≥ 0 or none"),
            "poison_rate_guess": (0.0 < poison_rate_guess < 0.5, poison_rate_guess,
                                  "0 < guess < 0.5"),
            "start_share": (0.0 < start_share <= 2 * poison_rate_guess, start_share,
                            "0 < share ≤ 2 × poison_rate_guess"),
            "warmup_epochs": (warmup_epochs >= 1, warmup_epochs, "an integer ≥ 1"),
            "ramp_epochs": (ramp_epochs is None or ramp_epochs >= 1, ramp_epochs,
                            "an integer ≥ 1 or none"),
            "relabel_confidence": (0.0 < relabel_confidence <= 1.0, relabel_confidence,
                                   "0 < confidence ≤ 1"),
            "unlearn_share": (unlearn_share is None
                              or 0.0 <= unlearn_share <= 2 * poison_rate_guess, unlearn_share,
                              "0 ≤ share ≤ 2 × poison_rate_guess, or none (the profile's)"),
            "unlearn_weight": (unlearn_weight >= 0, unlearn_weight, "≥ 0"),
            "ascent_cap": (ascent_cap is None or ascent_cap > 0, ascent_cap, "> 0 or none"),
            "high_loss_share": (0.0 <= high_loss_share < 0.5, high_loss_share, "0 ≤ share < 0.5"),
            "class_guard": (0.0 <= class_guard <= 1.0, class_guard,
                            "0 ≤ drop ≤ 1 (1 turns the guard off)"),
            "target_guard": (0.0 <= target_guard <= 1.0, target_guard,
                             "0 ≤ drop ≤ 1 (1: the presumed target is never spared)"),
            "trap_segments": (trap_segments >= 0, trap_segments,
                              "an integer ≥ 0 (0: no position-aware head)"),
            "trap_segments_rank": (trap_segments_rank in ("low", "high", "extra"),
                                   trap_segments_rank, "low, high or extra")})
        self.trap_stage, self.trap_width, self.trap_conv = int(trap_stage), trap_width, bool(trap_conv)
        self.trap_pooling, self.trap_steps, self.trap_lr = trap_pooling, int(trap_steps), float(trap_lr)
        self.trap_input_steps = trap_input_steps
        self.gamma, self.poison_rate_guess = gamma, float(poison_rate_guess)
        self.start_share, self.warmup_epochs = float(start_share), int(warmup_epochs)
        self.ramp_epochs, self.relabel_confidence = ramp_epochs, float(relabel_confidence)
        self.rank_pass, self.recover_all = bool(rank_pass), bool(recover_all)
        self.unlearn_share = None if unlearn_share is None else float(unlearn_share)
        self.unlearn_weight = float(unlearn_weight)
        self.ascent_cap = ascent_cap
        self.unlearn_recovered, self.high_loss_share = bool(unlearn_recovered), float(high_loss_share)
        self.class_guard, self.target_guard = float(class_guard), float(target_guard)
        self.trap_segments, self.trap_segments_rank = int(trap_segments), trap_segments_rank

    def profile(self, data: ArrayDataset) -> Profile:
        """The steps head and the unlearnt share for this training set: as given, or
        with `trap_input_steps="auto"` the smooth-series profile when the data are
        series whose median roughness is below `SMOOTH_BELOW`."""
        if self.trap_input_steps != "auto":
            steps, value, why = bool(self.trap_input_steps), None, "given"
        elif data.task.modality != "series":
            steps, value, why = False, None, f"auto: {data.task.modality} inputs"
        else:
            value = smoothness(data.x)
            # NaN (nothing varies) is off; so is a 2-step series (its roughness is 2)
            steps = value < SMOOTH_BELOW
            why = (f"auto: median series roughness {value:.3f} "
                   f"{'<' if steps else '≥'} {SMOOTH_BELOW}")
        smooth_series = steps and self.trap_input_steps == "auto"
        share = (self.unlearn_share if self.unlearn_share is not None
                 else self.poison_rate_guess if smooth_series else UNLEARN_SHARE)
        return Profile(steps, share, value, why)

    def attachment(self, model: nn.Module) -> nn.Module:
        """The trunk stage the trap reads (the model's `stages`, timm-style)."""
        stages = getattr(model, "stages", None)
        if not isinstance(stages, nn.ModuleList) or not len(stages):
            raise BadInput("e2abl needs a model with `stages` (an nn.ModuleList of its trunk "
                           "stages) to attach its trap head to")
        if self.trap_stage >= len(stages):
            raise BadInput(f"e2abl: trap_stage {self.trap_stage} is out of range; the model has "
                           f"stages 0..{len(stages) - 1}")
        return stages[self.trap_stage]

    def build_trap(self, model: nn.Module, stage: nn.Module, data: ArrayDataset,
                   device: torch.device, seed: int, steps_head: bool | None = None) -> Trap:
        """A trap sized to the stage's output, initialised from `seed` (the global
        random state is left as it was); with the steps head when `steps_head`
        (default: the data set's profile)."""
        if steps_head is None:
            steps_head = self.profile(data).trap_input_steps
        seen: list[torch.Tensor] = []
        handle = stage.register_forward_hook(lambda m, i, out: seen.append(out))
        model.to(device).eval()
        with torch.no_grad():
            model(data.x[:1].to(device))
        handle.remove()
        shape = seen[0].shape
        if len(shape) not in (3, 4):
            raise BadInput(f"e2abl: stage {self.trap_stage} gives features of shape "
                           f"{tuple(shape[1:])}; the trap needs C×T or C×H×W maps")
        stats = None
        if steps_head:
            if data.x.shape[-1] < 3:
                raise BadInput(f"e2abl: trap_input_steps needs inputs at least 3 long on their "
                               f"last axis, not {data.x.shape[-1]}")
            with torch.no_grad():
                steps = torch.cat([input_steps(data.x[i:i + 512].float())
                                   for i in range(0, len(data), 512)])
            stats = (steps.mean(0), steps.std(0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            trap = Trap(shape[1], len(shape) - 2, data.task.num_outputs,
                        self.trap_width or shape[1], POOLINGS[self.trap_pooling], self.trap_conv,
                        stats, self.trap_segments)
        return trap.to(device)

    def fit(self, model: nn.Module, poisoned: ArrayDataset, *,
            runtime: Runtime = Runtime()) -> Trained:
        self.check_task(poisoned.task)
        device = runtime.torch_device
        stage = self.attachment(model)
        profile = self.profile(poisoned)
        trap = self.build_trap(model, stage, poisoned, device, runtime.seed,
                               profile.trap_input_steps)
        run = TrapAndCleanse(self, trap, poisoned, self.train.epochs, device,
                             profile.unlearn_share)
        handle = stage.register_forward_hook(run.capture)
        try:
            history = fit(model, poisoned, self.train, objective=run, hooks=[run],
                          runtime=runtime, description="e2abl")
        finally:
            handle.remove()
        phases = Phases(len(poisoned))
        phases.add("e2abl", history, len(poisoned))
        last = run.rounds[-1] if run.rounds else {"share": 0.0, "relabelled": 0, "dropped": 0}
        details = {**profile.to_dict(), "gamma": run.gamma, "trap_stage": self.trap_stage,
                   "trap_parameters": sum(p.numel() for p in trap.parameters()),
                   "share": last["share"], "relabelled": last["relabelled"],
                   "dropped": last["dropped"], "unlearnt": int(run.confirmed.sum()),
                   "presumed_target": run.target,
                   "spared_classes": torch.nonzero(run.spared).flatten().tolist(),
                   "rounds": run.rounds, "history": phases.epochs}
        return Trained("e2abl", model.eval(), run.suspects.tolist(),
                       phases.cost(trap_steps=float(history.steps * self.trap_steps)), details)
