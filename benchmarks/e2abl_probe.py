"""E2ABL per epoch: where does the backdoor survive?

Trains E2ABL (with its defaults, or `--param key=value` overrides) on a poisoned
training set and records after every epoch: the suspects' precision and recall
against the true poison, the poisons still in the main loss with their given
(target) label, the poisons being unlearnt, the main head's mean confidence in the
target on the poisons, and — with `--trace` — clean accuracy and ASR on the test
split. Without `--trace` only the final model is evaluated (the run is then the
same as `train --defense e2abl`). `--oracle` takes true poisons out of the main
loss (a diagnosis of where the backdoor survives, never a defense); `--cost` times
plain training on the same set after each run. Every epoch also records the AUROC
of each trap head's loss (and of the main head's) against the true poison, a low
loss counting as suspect: over the whole set, over within-class ranks, and inside
the target class; `auroc_trap_high` ranks the trap's best (lowest) rank from the
highest, `auroc_contrast` adds the main head's loss rank to it (shallow-hard,
deep-easy). `--side NAME ...` trains diagnostic linear traps on features of
the raw input beside the run (pooled input, pooled steps, log spectrum, the
flattened input) and records theirs. Works on any classification data set with a
recipe (`--dataset ucr:GunPoint`). One JSON line per run is appended to `--out`.

    python benchmarks/e2abl_probe.py --dataset digits --attack badnets --seeds 0 1 2 \
        [--param unlearn_share=0.05 ...] [--trace] [--oracle drop-missed] [--cost] [--threads 1]
    python benchmarks/e2abl_probe.py --dataset ucr:GunPoint --attack blended powerline \
        --side input-pool diff-pool spectrum flat
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import backdoorguard.defenses.training.e2abl as e2abl_module
from backdoorguard.cli.common import key_values
from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.metrics import auroc, evaluate, isolation, predict
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.types import Batch
from backdoorguard.core.training import Hook, TrainState, fit
from backdoorguard.defenses.training import E2ABL
from backdoorguard.defenses.training.trap import input_steps, percentile_ranks
from backdoorguard.models import create_model
from backdoorguard.pipeline import build_attack, resolve

from training_defense import attack_config as grid_attack

RATE, TARGET = 0.1, 0


class Probe(Hook):
    """Reads the E2ABL run's state after each epoch (runs after its own hook)."""

    def __init__(self, run, poison: torch.Tensor, test, attack, trace: bool,
                 oracle: str | None = None, side: SideTraps | None = None) -> None:
        self.run, self.poison, self.test, self.attack, self.trace = run, poison, test, attack, trace
        self.oracle, self.side = oracle, side
        self.epochs: list[dict] = []
        self.main_loss = torch.zeros(len(run.given))
        self.classes = int(run.given.max()) + 1

    def after_step(self, state: TrainState, batch: Batch, step) -> None:
        self.main_loss[batch.index.cpu()] = step.per_sample.detach().float().cpu()

    def on_epoch_end(self, state: TrainState) -> None:
        run, poison = self.run, self.poison
        # diagnostic oracles (they use the true poison; never a defense):
        # drop-missed: after the freeze, unflagged poisons leave the main loss too;
        # drop-all-after-freeze: after the freeze every poison leaves it, none is relabelled;
        # drop-all: no poison in the main loss from the first epoch's end on
        if self.oracle == "drop-all" or (self.oracle == "drop-all-after-freeze" and run.frozen):
            run.weight[poison] = 0.0
            run.labels[poison] = run.given[poison]
        elif self.oracle == "drop-missed" and run.frozen:
            missed = poison[run.weight[poison] > 0]
            missed = missed[run.labels[missed] == run.given[missed]]
            run.weight[missed] = 0.0
        suspects = set(run.suspects.tolist())
        truth = set(poison.tolist())
        hits = len(truth & suspects)
        in_main = (run.weight[poison] > 0) & (run.labels[poison] == run.given[poison])
        record = {"epoch": state.epoch + 1, "suspects": len(suspects),
                  "precision": round(hits / len(suspects), 3) if suspects else None,
                  "recall": round(hits / len(truth), 3),
                  "poison_in_main_loss": int(in_main.sum()),
                  "poison_relabelled": int((run.labels[poison] != run.given[poison]).sum()),
                  "poison_unlearnt": int(run.confirmed[poison].sum()),
                  "unlearnt": int(run.confirmed.sum()),
                  "poison_target_conf": round(float(
                      (run.prediction[poison] == TARGET).float().mul(run.confidence[poison]).mean()), 3),
                  "frozen": run.frozen}
        # where the missed poisons (still in the main loss with their given label) sit
        # in the main head's loss ranking over the samples in the main loss
        used = (run.weight > 0).cpu() & (run.labels == run.given).cpu()
        is_poison = torch.zeros(len(used), dtype=torch.bool)
        is_poison[poison] = True
        losses = self.main_loss[used]
        rank = losses.argsort().argsort().float() / max(len(losses) - 1, 1)
        missed_rank = rank[is_poison[used]]
        if len(missed_rank):
            record["missed_loss_rank_median"] = round(float(missed_rank.median()), 3)
            record["missed_in_top5pct_loss"] = int((missed_rank >= 0.95).sum())
        given = run.given.cpu()
        target = given == TARGET
        record["relabelled"] = int((run.labels != run.given).sum())
        # the ranking's instruments: AUROC of a low loss vs the true poison, per trap
        # head over the whole set and within the given class, and of the main loss
        trap_loss = run.trap_loss.cpu()
        if torch.isfinite(trap_loss).all():
            for h, pooling in enumerate(run.trap.pooling):
                record[f"auroc_{pooling}"] = low_auroc(trap_loss[:, h], is_poison)
                record[f"auroc_{pooling}_in_class"] = low_auroc(
                    within_class_ranks(trap_loss[:, h], given), is_poison)
                record[f"auroc_{pooling}_target"] = low_auroc(trap_loss[target, h], is_poison[target])
            if run.score is not None:
                record["auroc_score"] = low_auroc(run.score, is_poison)
            # shallow-hard, deep-easy (an idea tried and not kept, docs/e2abl.md "Warp
            # triggers"): the main loss's rank plus one minus the trap's best rank
            best = percentile_ranks(trap_loss).min(1).values
            main = percentile_ranks(self.main_loss.unsqueeze(1))[:, 0]
            record["auroc_contrast"] = low_auroc(main + 1.0 - best, is_poison)
            record["auroc_trap_high"] = low_auroc(1.0 - best, is_poison)
        record["auroc_main"] = low_auroc(self.main_loss, is_poison)
        if self.side is not None:
            for name, loss in self.side.loss.items():
                record[f"auroc_side_{name}"] = low_auroc(loss, is_poison)
                record[f"auroc_side_{name}_target"] = low_auroc(loss[target], is_poison[target])
        # which classes the clean samples among the suspects and the unlearnt carry
        # (their given label is their true one)
        clean_suspects = torch.tensor([i for i in sorted(suspects) if i not in truth],
                                      dtype=torch.long)
        clean_unlearnt = torch.nonzero(run.confirmed.cpu() & ~is_poison).flatten()
        record["clean_suspect_classes"] = class_counts(given[clean_suspects], self.classes)
        record["clean_unlearnt_classes"] = class_counts(given[clean_unlearnt], self.classes)
        record["spared_classes"] = torch.nonzero(run.spared.cpu()).flatten().tolist()
        if run.frozen:
            held, count = run.held_accuracy()
            record["held_acc"] = [round(float(v), 3) for v in held]
            record["held_count"] = [int(c) for c in count]
            record["guard_reading"] = run.reading
            if run.best is not None:
                record["held_best"] = [round(float(v), 3) for v in run.best]
        if self.trace:
            with torch.random.fork_rng(devices=[]):
                metrics = evaluate(state.model, self.test, self.attack)
                record["class_acc"] = class_accuracy(state.model, self.test)
            state.model.train()
            record.update(clean_acc=round(metrics.clean_acc, 4), asr=round(metrics.asr, 4))
        self.epochs.append(record)
        print(json.dumps(record), flush=True)


def within_class_ranks(loss: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's percentile rank of `loss` among the samples of its given class."""
    ranks = torch.empty_like(loss)
    for c in labels.unique():
        members = torch.nonzero(labels == c).flatten()
        ranks[members] = percentile_ranks(loss[members].unsqueeze(1)).squeeze(1)
    return ranks


def low_auroc(loss: torch.Tensor, is_poison: torch.Tensor) -> float:
    """AUROC of a low `loss` against the true poison (1: every poison lowest)."""
    if not torch.isfinite(loss).all():
        return float("nan")
    return round(auroc((-loss).numpy(), is_poison.numpy()), 3)


SIDE_FEATURES = {
    # what a trap on the raw input could read (diagnostic; not part of E2ABL)
    "input-pool": lambda x: torch.cat([x.amax(-1), x.mean(-1)], 1),
    "diff-pool": input_steps,  # what E2ABL's trap_input_steps head reads
    "spectrum": lambda x: torch.log1p(torch.fft.rfft(x - x.mean(-1, keepdim=True)).abs()).flatten(1),
    "flat": lambda x: x.flatten(1),
}


class SideTraps(Hook):
    """Linear traps on features of the raw input (`SIDE_FEATURES`), trained like
    E2ABL's trap (logit-adjusted cross-entropy, Adam 1e-3, `steps` per batch) on the
    given labels; records each sample's balanced loss per epoch. A diagnostic of
    where the poison is visible to a weak head, never a defense."""

    def __init__(self, data, names: list[str], steps: int, seed: int) -> None:
        self.names, self.steps = names, steps
        classes = int(data.y.max()) + 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            probe = data.x[:2]
            self.heads = nn.ModuleDict({n: nn.Sequential(
                nn.BatchNorm1d(SIDE_FEATURES[n](probe).shape[1], affine=False),
                nn.Linear(SIDE_FEATURES[n](probe).shape[1], classes)) for n in names})
        self.optimizer = torch.optim.Adam(self.heads.parameters(), lr=1e-3)
        prior = torch.bincount(data.y, minlength=classes).float().clamp(min=1) / len(data.y)
        self.log_prior = prior.log()
        self.given = data.y.clone()
        self.loss = {n: torch.full((len(data.y),), float("inf")) for n in names}

    def after_step(self, state: TrainState, batch: Batch, step) -> None:
        index = batch.index.cpu()
        y = self.given[index]
        x = batch.x.detach().cpu()
        for name, head in self.heads.items():
            features = SIDE_FEATURES[name](x)
            head.train()
            for inner in range(self.steps):
                logits = head(features)
                loss = F.cross_entropy(logits + self.log_prior, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if inner == 0:
                    self.loss[name][index] = F.cross_entropy(logits.detach(), y, reduction="none")


def class_counts(labels: torch.Tensor, classes: int) -> list[int]:
    return torch.bincount(labels, minlength=classes).tolist()


def class_accuracy(model, test) -> list[float]:
    """Clean test accuracy per class."""
    correct = predict(model, test.x).argmax(1) == test.y.cpu()
    return [round(float(correct[test.y.cpu() == c].float().mean()), 3)
            for c in range(int(test.y.max()) + 1)]


def probe_attack(dataset: str, attack_name: str, defaults: bool = False) -> AttackConfig:
    """The training-defense grid's setting for the cell (the attack zoo's bar
    settings), or with `defaults` (`--attack-defaults`) the attack's own defaults at
    10 %, as runs before 2026-12-07 used."""
    if defaults:
        return AttackConfig(name=attack_name, poison_rate=RATE, target=TARGET)
    return grid_attack(dataset, attack_name)


def setup(dataset: str, config: AttackConfig, seed: int, threads: int):
    """The recipe's data, a fresh seeded model, the attack and the poisoned set."""
    run_config = TrainRun(dataset=dataset, attack=config)
    resolved = resolve(run_config)
    runtime = Runtime(seed=seed, device="cpu", threads=threads, progress=False)
    attack = build_attack(run_config.attack, resolved.data.task)
    runtime.apply()
    model = create_model(resolved.model_name, resolved.data.task, **resolved.model_args)
    poisoned = attack.poison(resolved.data.train, config.poison_rate, seed=seed)
    return resolved, runtime, attack, model, poisoned


def plain_seconds(dataset: str, config: AttackConfig, seed: int, threads: int) -> float:
    """Training seconds of plain training on the same poisoned set, model and seed."""
    resolved, runtime, _, model, poisoned = setup(dataset, config, seed, threads)
    return fit(model, poisoned, resolved.train, runtime=runtime).seconds


def probe_run(dataset: str, attack_name: str, config: AttackConfig, seed: int, params: dict,
              trace: bool, threads: int, oracle: str | None = None,
              side: list[str] | None = None) -> dict:
    resolved, runtime, attack, model, poisoned = setup(dataset, config, seed, threads)
    poison = torch.as_tensor(poisoned.poison_index, dtype=torch.long)
    probes: list[Probe] = []
    plain_fit = e2abl_module.fit

    def fit_with_probe(model, data, config, *, objective, hooks, **kwargs):
        traps = SideTraps(data, side, objective.d.trap_steps, seed) if side else None
        probes.append(Probe(objective, poison, resolved.data.test, attack, trace, oracle, traps))
        extra = [traps] if traps else []
        return plain_fit(model, data, config, objective=objective,
                         hooks=[*hooks, *extra, probes[-1]], **kwargs)

    e2abl_module.fit = fit_with_probe
    try:
        start = time.perf_counter()
        trained = E2ABL(train=resolved.train, **params).fit(model, poisoned, runtime=runtime)
        seconds = time.perf_counter() - start
    finally:
        e2abl_module.fit = plain_fit
    metrics = evaluate(trained.model, resolved.data.test, attack)
    final = isolation(trained.isolated, poisoned)
    return {"dataset": dataset, "attack": attack_name, "seed": seed, "params": params,
            "oracle": oracle,
            "clean_acc": round(metrics.clean_acc, 4), "asr": round(metrics.asr, 4),
            "precision": round(final.get("precision", 0.0), 3),
            "recall": round(final.get("recall", 0.0), 3), "seconds": round(seconds, 1),
            "train_seconds": round(trained.cost.seconds, 2),
            "unlearnt": trained.details["unlearnt"],
            "presumed_target": trained.details["presumed_target"],
            "spared_classes": trained.details["spared_classes"],
            "class_acc": class_accuracy(trained.model, resolved.data.test),
            "attack_spec": attack.spec(), "poison_rate": len(poison) / len(poisoned),
            "epochs": probes[0].epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description="E2ABL per-epoch probe")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--attack", nargs="+", default=["badnets"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--param", nargs="*", default=[], help="E2ABL parameter key=value")
    parser.add_argument("--trace", action="store_true", help="clean acc and ASR after every epoch")
    parser.add_argument("--oracle", choices=["drop-missed", "drop-all-after-freeze", "drop-all"],
                        help="diagnostic: take true poisons out of the main loss")
    parser.add_argument("--cost", action="store_true",
                        help="also time plain training right after each run (same set and seed)")
    parser.add_argument("--side", nargs="*", default=[], choices=sorted(SIDE_FEATURES),
                        help="diagnostic: linear traps on these features of the raw input, "
                             "their loss AUROC vs the poison per epoch")
    parser.add_argument("--attack-defaults", action="store_true",
                        help="the attack's own defaults at 10 %% instead of the grid's setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/e2abl_probe.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = key_values(args.param, "--param") or {}
    for attack in args.attack:
        config = probe_attack(args.dataset, attack, args.attack_defaults)
        for seed in args.seeds:
            row = probe_run(args.dataset, attack, config, seed, params, args.trace, args.threads,
                            args.oracle, args.side)
            if args.cost:
                row["plain_train_seconds"] = round(plain_seconds(args.dataset, config, seed,
                                                                 args.threads), 2)
                row["cost_vs_plain"] = round(row["train_seconds"] / row["plain_train_seconds"], 2)
            summary = {k: v for k, v in row.items() if k != "epochs"}
            print("RESULT", json.dumps(summary), flush=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
