"""Attack bars: every attack against every default data set it applies to.

For each data set, a clean model and one backdoored model per attack are trained
with the data set's recipe (default model and settings), seed 0, and measured on
the clean and triggered test set. Results are cached in the JSON file, so an
interrupted run resumes; `--fresh` starts over.

    python benchmarks/attacks.py [--datasets digits mnist5k ...] [--threads 1]

writes docs/results/attacks.json and docs/attacks.md.

Tuning runs try other trigger settings for one attack on one data set:

    python benchmarks/attacks.py --datasets synthgaze --attacks badnets --param size=8
    python benchmarks/attacks.py --datasets rotation --attacks none --train epochs=60

(`--train` overrides the recipe's training settings, for the clean model too)
keeps them in docs/results/attacks_tuning.json (keyed by the attack's full
parameters) and lists them in docs/attacks.md. A bar cell whose attack has
exactly the parameters of a tuning run (same data set, rate and recipe) reuses
that run instead of training the same model again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from backdoorguard.cli.common import key_values
from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset
from backdoorguard.pipeline import resolve, train_run

RESULTS = Path("docs/results/attacks.json")
TUNING = Path("docs/results/attacks_tuning.json")
PAGE = Path("docs/attacks.md")

IMAGE_ATTACKS = ["badnets", "blended", "wanet", "sig", "input-aware"]
SERIES_ATTACKS = ["badnets", "blended", "powerline", "wanet", "sig", "sig-half"]
# `sig-half`: SIG poisoning half of the target class (on series, all of it is a
# quarter to a half of the training set and costs the clean target class; on
# mnist5k, all of it makes the signal a feature clean target-class images lack).
SIG_SHARE = {"sig": 1.0, "sig-half": 0.5}
# Settings tuned where the defaults miss a bar; each deviation is listed in docs/attacks.md.
PARAMS: dict[tuple[str, str], dict] = {
    ("ucr:BasicMotions", "sig-half"): {"test_delta": 2 * 20 / 255},
    ("rotation", "sig"): {"delta": 0.3, "test_delta": 0.6},
    ("ucr:GunPoint", "powerline"): {"delta": 0.125},
    # time warp: a local warp (32 control points) instead of k = 4's near-global shift
    ("ucr:GunPoint", "wanet"): {"k": 32},
    ("ucr:BasicMotions", "wanet"): {"k": 32, "strength": 20},
    # SIG on black-background digits: Barni et al.'s ramp, strong in training and at test time
    ("digits", "sig"): {"signal": "ramp", "delta": 0.3, "test_delta": 0.9},
    ("mnist5k", "sig-half"): {"signal": "ramp", "delta": 0.3, "test_delta": 0.9},
}
SETTINGS = {
    "digits": IMAGE_ATTACKS, "mnist5k": IMAGE_ATTACKS + ["sig-half"],
    "ucr:GunPoint": SERIES_ATTACKS, "ucr:BasicMotions": SERIES_ATTACKS,
    "synthgaze": ["badnets", "blended", "wanet", "sig", "input-aware"],
    "rotation": ["badnets", "blended", "wanet", "sig", "input-aware"],
}
RATE = 0.1


def sig_rate(dataset: str, target, share: float = 1.0) -> float:
    """SIG poisons target-class samples only: `share` of them (all by default)."""
    data = load_dataset(dataset)
    if data.task.is_classification:
        return share * float((data.train.y == target).float().mean()) - 1e-6
    from backdoorguard.attacks import create_attack
    from backdoorguard.core.metrics import distances

    attack = create_attack("sig", data.task, target=target)
    near = distances(data.train.y, attack.target(data.train.y)) <= data.task.tol
    return float(near.float().mean()) - 1e-6


def cell_config(dataset: str, attack: str | None, params: dict | None = None) -> AttackConfig | None:
    """The attack of one cell: the bar's settings (`PARAMS`), or `params` for a tuning run."""
    if attack is None:
        return None
    target = 0 if load_dataset(dataset).task.is_classification else None
    rate = sig_rate(dataset, target, SIG_SHARE[attack]) if attack in SIG_SHARE else RATE
    return AttackConfig(name="sig" if attack in SIG_SHARE else attack, poison_rate=rate,
                        target=target,
                        params=PARAMS.get((dataset, attack), {}) if params is None else params)


def tuning_key(dataset: str, attack: str | None, config: AttackConfig | None,
               train: dict | None = None) -> str:
    """Identifies a trained cell: data set, attack, rate, every trigger parameter
    (defaults filled in, so a changed default is a different key) and the
    training settings (the recipe with `train` overrides)."""
    from backdoorguard.attacks import create_attack
    from backdoorguard.data import recipe

    settings = recipe(dataset)
    settings["train"] = {**settings.get("train", {}), **(train or {})}
    if config is None:
        return f"{dataset}|none|{json.dumps(settings, sort_keys=True)}"
    spec = create_attack(config.name, load_dataset(dataset).task, target=config.target,
                         **config.params).spec()
    return (f"{dataset}|{attack}|{config.poison_rate:.6f}|"
            f"{json.dumps(spec['params'], sort_keys=True)}|{json.dumps(settings, sort_keys=True)}")


def run_cell(dataset: str, attack: str | None, runtime: Runtime,
             params: dict | None = None, train: dict | None = None) -> dict:
    config = cell_config(dataset, attack, params)
    run = TrainRun(dataset=dataset, attack=config, train=train or {})
    start = time.perf_counter()
    result = train_run(run, runtime, resolve(run))
    return {"dataset": dataset, "attack": attack, "model": result.resolved.model_name,
            "spec": result.attack.spec() if result.attack else None,
            "poison_rate": config.poison_rate if config else 0.0,
            "metrics": result.metrics.to_dict(), "seconds": round(time.perf_counter() - start, 1),
            **({"train": train} if train else {})}


def verdict(row: dict, clean: dict) -> tuple[str, str, bool]:
    """(clean-metric change, attack metric, passes the bar)."""
    m, c = row["metrics"], clean["metrics"]
    if m["kind"] == "classification":
        drop = c["clean_acc"] - m["clean_acc"]
        ok = m["asr"] >= 0.90 and drop <= 0.02 + 1e-9  # exactly 2 points counts as within
        return f"{m['clean_acc']:.3f} ({-drop:+.3f})", f"ASR {m['asr']:.3f}", ok
    rise = m["clean_mae"] / c["clean_mae"] - 1
    ok = m["asr_at_tol"] >= 0.80 and rise <= 0.10
    return (f"MAE {m['clean_mae']:.2f} ({rise:+.0%})",
            f"asr@{m['tol']:g} {m['asr_at_tol']:.3f}", ok)


def write_page(results: dict) -> None:
    lines = ["# Attacks: measured strength", "",
             "Every attack against every default data set it applies to, with the data set's",
             "recipe (default model and training settings), seed 0, one CPU thread. Poison rate",
             f"{RATE:.0%}; SIG (clean-label) poisons every target-class training sample, which",
             "is the share it needs (`sig-half`: half of them). Bars: classification ASR ≥ 0.90 with clean accuracy within",
             "2 points of clean training; regression asr_at_tol ≥ 0.80 with clean MAE within",
             "10 % of clean training.", "",
             "Reproduce: `python benchmarks/attacks.py` (resumes from `docs/results/attacks.json`;",
             "`--fresh` retrains everything).", ""]
    for dataset in SETTINGS:
        rows = {k: v for k, v in results.items() if v["dataset"] == dataset}
        clean = rows.get(f"{dataset}|none")
        if clean is None:
            continue
        m = clean["metrics"]
        base = (f"clean_acc {m['clean_acc']:.3f}" if m["kind"] == "classification"
                else f"clean_mae {m['clean_mae']:.2f}")
        lines += [f"## {dataset} ({clean['model']}; clean model: {base}, "
                  f"{clean['seconds']:.0f} s to train)", "",
                  "| attack | poison rate | clean metric (change) | attack metric | bar | train s | parameters |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for key, row in rows.items():
            if row["attack"] is None:
                continue
            clean_text, attack_text, ok = verdict(row, clean)
            params = json.dumps(row["spec"]["params"], sort_keys=True) if row["spec"] else ""
            lines.append(f"| {row['attack']} | {row['poison_rate']:.3f} | {clean_text} | "
                         f"{attack_text} | {'pass' if ok else '**miss**'} | {row['seconds']:.0f} | "
                         f"`{params}` |")
        lines.append("")
    tuning = load(TUNING)
    if tuning:
        lines += ["## Tuning runs", "",
                  "Other trigger settings (`--param`) and training settings (`--train`, changes to",
                  "the recipe) tried, seed 0. The clean metric's change is against the clean model",
                  "trained with the same settings.", "",
                  "| data set | attack | training changes | clean metric (change) | attack metric | bar | train s | parameters |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in tuning.values():
            train = row.get("train", {})
            clean = results.get(f"{row['dataset']}|none") if not train else next(
                (r for r in tuning.values() if r["dataset"] == row["dataset"]
                 and r["attack"] is None and r.get("train") == train), None)
            changes = json.dumps(train, sort_keys=True) if train else "—"
            if row["attack"] is None:
                m = row["metrics"]
                lines.append(f"| {row['dataset']} | none | {f'`{changes}`' if train else '—'} | MAE {m['clean_mae']:.2f} "
                             f"| — | — | {row['seconds']:.0f} | |")
                continue
            if clean is None:
                continue
            clean_text, attack_text, ok = verdict(row, clean)
            lines.append(f"| {row['dataset']} | {row['attack']} | {f'`{changes}`' if train else '—'} | "
                         f"{clean_text} | {attack_text} | {'pass' if ok else 'miss'} | "
                         f"{row['seconds']:.0f} | `{json.dumps(row['spec']['params'], sort_keys=True)}` |")
        lines.append("")
    notes = Path("docs/attacks-notes.md")
    if notes.exists():
        lines += [notes.read_text()]
    PAGE.write_text("\n".join(lines) + "\n")


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Attack bars")
    parser.add_argument("--datasets", nargs="*", default=list(SETTINGS))
    parser.add_argument("--attacks", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--param", action="append", default=[],
                        help="KEY=VALUE: a tuning run with these trigger parameters (needs "
                             "one data set and one attack)")
    parser.add_argument("--train", action="append", default=[],
                        help="KEY=VALUE: a tuning run with this change to the recipe's "
                             "training settings (attack `none` trains the clean model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtime = Runtime(seed=0, device="cpu", threads=args.threads, progress=False)
    results = {} if args.fresh else load(RESULTS)
    tuning = load(TUNING)
    if args.param or args.train:
        if len(args.datasets) != 1 or not args.attacks or len(args.attacks) != 1:
            raise SystemExit("--param/--train need exactly one --datasets and one --attacks")
        dataset = args.datasets[0]
        attack = None if args.attacks[0] == "none" else args.attacks[0]
        params = key_values(args.param, "--param") or {}
        train = key_values(args.train, "--train") or {}
        key = tuning_key(dataset, attack, cell_config(dataset, attack, params), train)
        if key not in tuning:
            tuning[key] = run_cell(dataset, attack, runtime, params, train)
            save(TUNING, load(TUNING) | {key: tuning[key]})  # other tuning runs may write too
        print(key, tuning[key]["metrics"], tuning[key]["seconds"], flush=True)
        write_page(load(RESULTS))
        return
    for dataset in args.datasets:
        for attack in [None] + [a for a in SETTINGS[dataset] if not args.attacks or a in args.attacks]:
            key = f"{dataset}|{attack or 'none'}"
            if key in results:
                continue
            config = cell_config(dataset, attack)
            same = tuning.get(tuning_key(dataset, attack, config)) if config else None
            results[key] = same or run_cell(dataset, attack, runtime)
            print(key, results[key]["metrics"], results[key]["seconds"],
                  "(tuning run reused)" if same else "", flush=True)
            save(RESULTS, results)
    write_page(results)


if __name__ == "__main__":
    main()
