"""One E2ABL run (the method and its choices: e2abl.py): the trap head h2 on a
trunk stage's detached features, the suspects' ranking, cleansing with true-class
recovery, unlearning and the class guard, as the main objective plus one hook of
`core.training.fit`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ...core.training import Hook, StepLoss, TrainState, task_loss
from ...core.types import ArrayDataset, Batch
from .common import capped_ascent, count, default_cap, flooded, lga_gamma

if TYPE_CHECKING:
    from .e2abl import E2ABL


# The presumed target is spared only when unlearning cost it at least this many held
# samples (beside `target_guard`'s share), for this many rounds in a row: the true
# target's dips while its poisons are unlearnt were up to 8 of 24 series (GunPoint)
# and, once, 10 of 36 (JapaneseVowels), each for one round; a collapse lasts
# (docs/e2abl.md, "A clean-label attack: the wrong presumed target").
TARGET_GUARD_SAMPLES = 10
TARGET_GUARD_EPOCHS = 2


def input_steps(x: torch.Tensor) -> torch.Tensor:
    """Per input channel, the largest and the mean absolute step between neighbours
    along the last axis (time; image columns) and the steps' standard deviation,
    over every position: [B, 3·C]. A global additive pattern (blended noise, a
    sinusoid) raises them on every poisoned input wherever it sits."""
    steps = x.diff(dim=-1).flatten(2)
    return torch.cat([steps.abs().amax(2), steps.abs().mean(2), steps.std(2)], 1)


def roughness(x: torch.Tensor) -> torch.Tensor:
    """Per series [B]: per channel the mean squared step between neighbours over
    twice the channel's variance (about 1 − its lag-1 autocorrelation: near 0 for
    a slow wave, 1 for white noise), averaged over the series' channels; constant
    channels are left out (a wholly constant series gives NaN)."""
    x = x.double().flatten(2)
    variance = x.var(-1, unbiased=False)
    rough = x.diff(dim=-1).pow(2).mean(-1) / (2 * variance.clamp(min=1e-12))
    return torch.where(variance > 1e-12, rough, torch.nan).nanmean(1)


def smoothness(x: torch.Tensor) -> float:
    """The median `roughness` over the series of a set (NaN when none varies).
    The median, not the mean: a 10 % poison with a noisy trigger raises its own
    series' roughness but moves the median only within the clean series' 40th–60th
    percentiles."""
    return float(torch.cat([roughness(x[i:i + 512]) for i in range(0, len(x), 512)])
                 .nanmedian())


class Trap(nn.Module):
    """h2: conv block on one stage's features, then one linear head per pooling;
    with `input_stats` (the training inputs' `input_steps` mean and std) one more
    linear head on the standardised `input_steps` of the model's input."""

    def __init__(self, channels: int, dims: int, classes: int, width: int,
                 pooling: tuple[str, ...], conv_block: bool = True,
                 input_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                 segments: int = 0) -> None:
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        if conv_block:
            self.block = nn.Sequential(conv(channels, width, 3, padding=1, bias=False),
                                       norm(width), nn.ReLU())
        else:
            self.block, width = nn.Identity(), channels
        self.dims, self.segments = dims, int(segments)
        if self.segments:
            # position-aware: the features average-pooled to `segments` pieces per axis
            pooling = (*pooling, "segments")
        self.pooling = pooling
        self.heads = nn.ModuleList(
            nn.Linear(width * (self.segments ** dims if p == "segments" else 1), classes)
            for p in pooling)
        self.steps_head: nn.Linear | None = None
        if input_stats is not None:
            mean, std = input_stats
            self.register_buffer("steps_mean", mean.clone())
            self.register_buffer("steps_std", std.clamp(min=1e-6).clone())
            self.steps_head = nn.Linear(len(mean), classes)
            self.pooling = (*pooling, "steps")

    def forward(self, features: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, heads, classes] (`x`, the model's input, feeds the steps head)."""
        block = self.block(features)
        h = block.flatten(2)
        pooled = {"max": h.amax(2), "avg": h.mean(2)}
        if self.segments:
            pool = F.adaptive_avg_pool1d if self.dims == 1 else F.adaptive_avg_pool2d
            pooled["segments"] = pool(block, self.segments).flatten(1)
        logits = [head(pooled[p]) for head, p in zip(self.heads, self.pooling)]
        if self.steps_head is not None:
            logits.append(self.steps_head((input_steps(x) - self.steps_mean) / self.steps_std))
        return torch.stack(logits, 1)


def percentile_ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank of each value along dim 0, scaled to [0, 1) (ties in index order)."""
    order = values.argsort(dim=0, stable=True)
    ranks = torch.empty_like(order)
    positions = torch.arange(len(values)).unsqueeze(1).expand_as(order)
    ranks.scatter_(0, order, positions)
    return ranks.float() / max(len(values), 1)


class TrapAndCleanse(Hook):
    """One E2ABL run: the main objective (cleansed labels, dropped suspects,
    unlearning) and, as a hook, the trap's training, ranking and cleansing."""

    def __init__(self, defense: E2ABL, trap: Trap, data: ArrayDataset, epochs: int,
                 device: torch.device, unlearn_share: float | None = None) -> None:
        self.d, self.trap, self.epochs = defense, trap, epochs
        # the defense's share for this data set (its profile) unless given
        self.unlearn_share = (defense.profile(data).unlearn_share if unlearn_share is None
                              else unlearn_share)
        classes = data.task.num_outputs
        self.loss = task_loss(data.task)
        self.gamma = lga_gamma(classes, defense.gamma)
        self.cap = default_cap(classes, defense.ascent_cap)
        self.optimizer = torch.optim.Adam(trap.parameters(), lr=defense.trap_lr)
        n = len(data)
        prior = torch.bincount(data.y.cpu(), minlength=classes).float().clamp(min=1) / n
        self.log_prior = prior.log().to(device)
        self.given = data.y.to(device)
        self.labels = self.given.clone()
        self.weight = torch.ones(n, device=device)
        self.confirmed = torch.zeros(n, dtype=torch.bool, device=device)
        self.trap_loss = torch.full((n, len(trap.pooling)), float("inf"), device=device)
        self.confidence = torch.zeros(n, device=device)
        self.prediction = self.given.clone()
        self.main_loss = torch.zeros(n, device=device)
        self.suspects = torch.empty(0, dtype=torch.long)
        self.classes = classes
        self.best: torch.Tensor | None = None     # per class, the best held accuracy since the freeze
        self.target: int | None = None            # the class holding the most suspects at the freeze
        self.target_low = 0                       # epochs in a row the target has been low
        self.reading: dict[str, Any] = {}         # the guard's last per-class reading
        self.spared = torch.zeros(classes, dtype=torch.bool, device=device)
        self.score: torch.Tensor | None = None
        self.noise_score: torch.Tensor | None = None  # the segments head's, ranked from the highest
        self.frozen = False
        self.cap_share = 2.0 * defense.poison_rate_guess
        self.ramp = defense.ramp_epochs if defense.ramp_epochs is not None else max(1, epochs // 3)
        self.features: torch.Tensor | None = None
        self.rounds: list[dict[str, Any]] = []

    def capture(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.features = output

    # ------------------------------------------------------------ main head

    def __call__(self, model: nn.Module, batch: Batch) -> StepLoss:
        outputs = model(batch.x)
        index = batch.index.to(outputs.device)
        per_sample = self.loss(outputs, self.labels[index])
        loss = (self.weight[index] * per_sample).mean()
        probabilities = outputs.detach().float().softmax(1)
        self.confidence[index], self.prediction[index] = probabilities.max(1)
        self.main_loss[index] = per_sample.detach().float()
        confirmed = self.confirmed[index]
        if confirmed.any():
            ascent = capped_ascent(self.loss(outputs[confirmed], self.given[index][confirmed]),
                                   self.cap)
            loss = loss + self.d.unlearn_weight * ascent.sum() / len(index)
        return StepLoss(loss, per_sample, outputs)

    # ------------------------------------------------------------ the trap

    def on_epoch_start(self, state: TrainState) -> None:
        self.trap.train()

    def after_step(self, state: TrainState, batch: Batch, step: StepLoss) -> None:
        if self.frozen:
            return
        features = self.features.detach()
        index = batch.index.to(features.device)
        y = self.given[index]
        for inner in range(self.d.trap_steps):
            logits = self.trap(features, batch.x)                  # [B, heads, K]
            flat, targets = logits.flatten(0, 1), y.repeat_interleave(logits.shape[1])
            adjusted = F.cross_entropy(flat + self.log_prior, targets, reduction="none")
            loss = flooded(adjusted, self.gamma)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if inner == 0:
                balanced = F.cross_entropy(flat.detach(), targets, reduction="none")
                self.trap_loss[index] = balanced.view(len(index), -1)

    # ------------------------------------------------------------ ranking, cleansing

    def share(self, epoch: int) -> float:
        """Suspect share after epoch `epoch` (0-based); 0 during warm-up."""
        done = epoch + 1 - self.d.warmup_epochs
        if done < 0:
            return 0.0
        return self.d.start_share + (self.cap_share - self.d.start_share) * min(
            1.0, done / self.ramp)

    def rank(self, epoch: int) -> None:
        """Update the suspects from this epoch's trap losses (a running mean of each
        sample's score smooths the epoch-to-epoch swings); freeze them, and start
        unlearning, once the share reaches its cap."""
        share = self.share(epoch)
        ranks = percentile_ranks(self.trap_loss.cpu())
        noise = None
        if self.d.trap_segments and self.d.trap_segments_rank != "low":
            # the position-aware head learns the content well enough that a relabelled
            # sample whose trigger it cannot represent (a warp) is label noise to it:
            # its *highest* losses are suspect. "high": one more column of the lowest
            # rank; "extra": a suspect source of its own, `share` / 2 more suspects on top
            # of the other heads' (it neither takes their places nor picks the unlearnt)
            column = self.trap.pooling.index("segments")
            flipped = 1.0 - ranks[:, column] - 1.0 / len(ranks)
            if self.d.trap_segments_rank == "high":
                ranks[:, column] = flipped
            else:
                ranks = ranks[:, [c for c in range(ranks.shape[1]) if c != column]]
                noise = flipped
        score = ranks.min(1).values
        self.score = score if self.score is None else 0.5 * (self.score + score)
        order = self.score.argsort(stable=True)
        n = len(order)
        suspects = order[:count(share, n)]
        if noise is not None:
            self.noise_score = noise if self.noise_score is None else 0.5 * (self.noise_score + noise)
            extra = self.noise_score.argsort(stable=True)[:count(share / 2, n)]
            suspects = torch.cat([suspects, extra]).unique()
        self.suspects = suspects.sort().values
        self.frozen = share >= self.cap_share
        if self.frozen:
            self.confirm_lowest()

    def confirm_lowest(self) -> None:
        """Unlearn the `unlearn_share` lowest-scored samples outside the spared classes."""
        if self.unlearn_share <= 0:
            return
        order = self.score.argsort(stable=True).to(self.given.device)
        order = order[~self.spared[self.given[order]]]
        self.confirmed[order[:count(self.unlearn_share, len(self.given))]] = True

    @torch.no_grad()
    def ranking_pass(self, state: TrainState) -> None:
        """Every sample's balanced trap loss in eval mode, with this epoch's trunk
        and trap (instead of the losses recorded as the epoch went)."""
        state.model.eval()
        self.trap.eval()
        data = state.data
        for start in range(0, len(data), 512):
            index = torch.arange(start, min(start + 512, len(data)), device=data.x.device)
            state.model(data.x[index])
            logits = self.trap(self.features, data.x[index])
            targets = self.given[index].repeat_interleave(logits.shape[1])
            self.trap_loss[index] = F.cross_entropy(logits.flatten(0, 1), targets,
                                                    reduction="none").view(len(index), -1)
        state.model.train()

    def held_accuracy(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class, the share of the samples outside the suspects and the unlearnt
        that the main head (as recorded this epoch) puts in their given class, and
        how many such samples there are."""
        held = ~self.confirmed
        held[self.suspects.to(held.device)] = False
        correct = (self.prediction == self.given) & held
        total = torch.bincount(self.given[held], minlength=self.classes).float()
        hits = torch.bincount(self.given[correct], minlength=self.classes).float()
        return hits / total.clamp(min=1), total

    def guard(self) -> list[int]:
        """Spare every class whose held accuracy fell more than `class_guard` below
        its best since the freeze: unlearning is hurting the class's clean samples,
        so its suspects are clean ones the trap took for poison. A spared class's
        suspects are released (trained with their given label again) and none of its
        samples is unlearnt, relabelled or dropped for a high loss from then on. The
        presumed target is spared only when it fell more than `target_guard` and by
        TARGET_GUARD_SAMPLES held samples, TARGET_GUARD_EPOCHS rounds in a row.
        Returns the newly spared classes."""
        held, count = self.held_accuracy()
        if self.best is None:
            # the backdoor's target holds the poisons, so (all-to-one) the most suspects;
            # unlearning them may cost it some clean accuracy, which is the price of
            # removing the backdoor: it has the wider margin `target_guard`
            counts = torch.bincount(self.given[self.suspects.to(self.given.device)],
                                    minlength=self.classes)
            self.target = int(counts.argmax())
            self.best = held
            return []
        drop = self.best - held
        harmed = (drop > self.d.class_guard) & ~self.spared
        # the presumed target only for a larger drop, over at least TARGET_GUARD_SAMPLES
        # of its held samples: it may be the wrong class (an easy clean class can hold
        # more suspects than a clean-label attack's share of the target), and then its
        # accuracy collapses as its clean samples are unlearnt. The true target's held
        # accuracy dips while its poisons are unlearnt; on a class of a few dozen series
        # a dip of a few series is a third of it, so a share alone cannot tell the two.
        # A collapse lasts, a dip does not: the target is spared after TARGET_GUARD_EPOCHS
        # such rounds in a row.
        t = self.target
        low = bool(drop[t] > max(self.d.target_guard, self.d.class_guard)
                   and drop[t] * count[t] >= TARGET_GUARD_SAMPLES - 1e-6)
        self.target_low = self.target_low + 1 if low else 0
        harmed[t] &= self.target_low >= TARGET_GUARD_EPOCHS
        self.reading = {"held": held.tolist(), "count": count.tolist(),
                        "target_low": self.target_low}
        self.best = torch.maximum(self.best, held)
        if harmed.any():
            self.spared |= harmed
            self.suspects = self.suspects[~self.spared[self.given[self.suspects.to(
                self.given.device)]].cpu()]
            self.confirmed &= ~self.spared[self.given]
            self.confirm_lowest()          # the unlearnt share, from the other classes
        return torch.nonzero(harmed).flatten().tolist()

    def on_epoch_end(self, state: TrainState) -> None:
        if self.share(state.epoch) <= 0:
            return
        unlearning = self.frozen                      # unlearning ran during this epoch
        if not unlearning:
            if self.d.rank_pass:
                self.ranking_pass(state)
            self.rank(state.epoch)
        newly_spared = self.guard() if self.frozen else []
        if unlearning and self.d.recover_all:
            # once unlearning has begun, a sample the main head confidently assigns to
            # another class is taken for a poison the trap missed (not in a spared class:
            # there the disagreement is the unlearning's damage)
            disagree = ((self.confidence >= self.d.relabel_confidence)
                        & (self.prediction != self.given) & ~self.spared[self.given]).cpu()
            disagree[self.suspects] = False
            self.suspects = torch.cat([self.suspects, torch.nonzero(disagree).flatten()]).sort().values
        suspects = self.suspects.to(self.given.device)
        self.labels = self.given.clone()
        self.weight.fill_(1.0)
        recover = ((self.confidence[suspects] >= self.d.relabel_confidence)
                   & (self.prediction[suspects] != self.given[suspects]))
        self.labels[suspects[recover]] = self.prediction[suspects[recover]]
        self.weight[suspects[~recover]] = 0.0
        if self.frozen and self.d.unlearn_recovered:
            # the main head confirms these: it confidently puts them in another class
            self.confirmed[suspects[recover]] = True
        loss_dropped = 0
        if self.frozen and self.d.high_loss_share > 0:
            # a poison the trap missed keeps re-teaching the backdoor; once unlearning
            # has begun it conflicts with the cleansed data and its loss is among the
            # highest. Dropped for the next epoch, not flagged: a dropped poison is no
            # longer fitted, so the main head may come to disagree with it (recover_all).
            # (not in a spared class: a high loss there is the unlearning's damage)
            kept = torch.nonzero((self.weight > 0) & (self.labels == self.given)
                                 & ~self.spared[self.given]).flatten()
            worst = self.main_loss[kept].argsort(descending=True, stable=True)
            dropped = kept[worst[:count(self.d.high_loss_share, len(self.given))]]
            self.weight[dropped] = 0.0
            loss_dropped = len(dropped)
        self.rounds.append({"epoch": state.epoch + 1, "share": len(suspects) / len(self.given),
                            "relabelled": int(recover.sum()), "dropped": int((~recover).sum()),
                            "loss_dropped": loss_dropped, "frozen": self.frozen,
                            "spared": newly_spared})
