"""Purification bars: every purifier against every backdoored model of the issue's grid.

For each setting (data set × model × attack) one backdoored model is trained
with the data set's recipe, seed 0, and cached in `.cache/purification/`. Every
purification defense registered (ft, fp, nad, d3, sms, and any other) then
purifies it with 5 % clean data (`pipeline.clean_subset`) through `purify_step`,
with its defaults: no per-cell tuning. Results go to a JSON file, one entry per
model and per cell, written after each finishes, so an interrupted run resumes.

    python benchmarks/purification.py [--only GLOB ...] [--methods ft d3 ...]
                                      [--threads 1] [--models-only] [--page-only]
                                      [--seed 0] [--results FILE] [--no-page]
                                      [--param KEY=VALUE ... --variant NAME]

writes docs/results/purification.json and docs/purification.md. A held-out
check at another seed trains its own models (`.cache/purification/seed1/`) and
writes its own results: `--seed 1 --results docs/results/purification_seed1.json
--no-page`. `--param` runs the methods with changed parameters; its cells are
stored as method `METHOD NAME` (`--variant NAME`, required with `--param`),
shown as rows of their own and never counted as the method.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import time
from pathlib import Path

import torch

from backdoorguard.cli.common import key_values
from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset
from backdoorguard.errors import BadInput
from backdoorguard.pipeline import resolve, train_run, write_train_result

RESULTS = Path("docs/results/purification.json")
PAGE = Path("docs/purification.md")
CACHE = Path(".cache/purification")
METHODS = ["ft", "fp", "nad", "d3", "sms"]
RATE = 0.1
CLEAN_FRACTION = 0.05
RESNET16 = ("preact-resnet18", {"width": 16})

# (name, data set, (model, args), attacks, attack parameters); cheap settings first.
SETTINGS = [
    ("GunPoint", "ucr:GunPoint", ("resnet1d", {}), ["badnets", "blended", "powerline"], {}),
    ("BasicMotions", "ucr:BasicMotions", ("resnet1d", {}), ["badnets", "blended", "powerline"],
     {}),
    # ALGORITHMS.md's small setting: a small CNN, a 3×3 white patch bottom-right, target 1
    ("mnist5k-small", "mnist5k", ("cnn-small", {}), ["badnets"],
     {"badnets": {"pattern": "white", "size": 3}}),
    ("mnist5k", "mnist5k", RESNET16, ["badnets", "blended", "wanet", "sig", "input-aware"], {}),
    ("synthgaze", "synthgaze", RESNET16, ["badnets", "wanet"], {}),
]
TARGETS = {"mnist5k-small": 1}


def sig_rate(dataset: str, target: int) -> float:
    """Clean-label SIG poisons every target-class training sample."""
    return float((load_dataset(dataset).train.y == target).float().mean()) - 1e-6


def model_key(setting: str, attack: str) -> str:
    return f"{setting}|{attack}"


def train_model(setting: tuple, attack: str, runtime: Runtime, cache: Path = CACHE) -> dict:
    """Train and cache one backdoored model; its record (metrics, training time)."""
    name, dataset, (model, args), _, params = setting
    classification = load_dataset(dataset).task.is_classification
    target = TARGETS.get(name, 0) if classification else None
    rate = sig_rate(dataset, target) if attack == "sig" and classification else RATE
    config = AttackConfig(name=attack, poison_rate=rate, target=target,
                          params=params.get(attack, {}))
    run = TrainRun(dataset=dataset, model=model, model_args=args, attack=config)
    result = train_run(run, runtime, resolve(run))
    folder = cache / name / attack
    write_train_result(result, folder, overwrite=True)
    return {"setting": name, "dataset": dataset, "model": model, "model_args": args,
            "attack": attack, "spec": result.attack.spec(), "poison_rate": rate,
            "metrics": result.metrics.to_dict(), "train_seconds": round(result.history.seconds, 2),
            "folder": str(folder)}


def run_cell(record: dict, method: str, runtime: Runtime, params: dict | None = None,
             variant: str | None = None) -> dict:
    """Purify the cached model with `method` and its defaults (or `params`)."""
    from backdoorguard.core.checkpoint import load_model
    from backdoorguard.defenses.purification.run import attack_of, purify_step

    folder = Path(record["folder"])
    model, card = load_model(folder)
    data = load_dataset(record["dataset"])
    attack = attack_of(card, data.task, folder)
    out = Path(record["folder"]).parent.parent / "purified" / record["setting"] / \
        record["attack"] / (method if variant is None else f"{method}-{variant}")
    start = time.perf_counter()
    summary = purify_step(model, data, attack, out, method=method, runtime=runtime,
                          clean_fraction=CLEAN_FRACTION, params=params)
    summary["wall_seconds"] = round(time.perf_counter() - start, 2)
    return summary


def stored() -> dict:
    """What the results file holds now (other runs may write it meanwhile)."""
    if not RESULTS.exists():
        return {"models": {}, "cells": {}}
    return json.loads(RESULTS.read_text())


def save(part: str, key: str, entry: dict) -> dict:
    """Add one entry to the file as it is now, atomically; returns the new contents."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = stored()
    results[part][key] = entry
    partial = RESULTS.with_suffix(".partial")
    partial.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    partial.replace(RESULTS)
    return results


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(description="Purification bars")
    parser.add_argument("--only", nargs="*", default=None,
                        help="cell filter: globs over SETTING|ATTACK (e.g. 'GunPoint|*')")
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--models-only", action="store_true")
    parser.add_argument("--page-only", action="store_true")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the models' training and of the purifiers")
    parser.add_argument("--no-page", action="store_true",
                        help="leave docs/purification.md alone (held-out runs)")
    parser.add_argument("--param", action="append", default=None,
                        help="KEY=VALUE for every method run (needs --variant)")
    parser.add_argument("--variant", default=None,
                        help="name of the --param cells: stored as method 'METHOD NAME'")
    args = parser.parse_args()
    params = key_values(args.param, "--param")
    if (params is None) != (args.variant is None):
        raise SystemExit("--param and --variant go together: variant cells need a name")
    RESULTS = args.results
    torch.set_num_threads(args.threads)
    runtime = Runtime(seed=args.seed, device="cpu", threads=args.threads, progress=False)
    cache = CACHE if args.seed == 0 else CACHE / f"seed{args.seed}"
    if not args.page_only:
        methods = [] if args.models_only else args.methods or purification_methods()
        for setting in SETTINGS:
            for attack in setting[3]:
                key = model_key(setting[0], attack)
                if args.only and not any(fnmatch.fnmatch(key, g) for g in args.only):
                    continue
                model = stored()["models"].get(key)  # another run may have trained it
                if model is None or not Path(model["folder"], "model.json").exists():
                    model = train_model(setting, attack, runtime, cache)
                    save("models", key, model)
                    print("trained", key, model["metrics"], model["train_seconds"], flush=True)
                for method in methods:
                    cell = f"{key}|{method}" + (f" {args.variant}" if args.variant else "")
                    if cell in stored()["cells"]:
                        continue
                    try:
                        entry = run_cell(model, method, runtime, params, args.variant)
                    except BadInput as error:  # a method that does not apply (sms on cnn-small)
                        entry = {"skipped": str(error)}
                    save("cells", cell, entry)
                    print(cell, entry.get("after", entry), flush=True)
    if not args.no_page:
        from backdoorguard.defenses.purification.report import write_page

        write_page(stored(), PAGE)


def purification_methods() -> list[str]:
    from backdoorguard.defenses.base import defense_names

    names = defense_names("purification")
    return [m for m in METHODS if m in names] + [m for m in names if m not in METHODS]


if __name__ == "__main__":
    main()
