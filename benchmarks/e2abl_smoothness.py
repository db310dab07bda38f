"""The statistic behind E2ABL's `trap_input_steps="auto"`: the median series
roughness (trap.smoothness) of every classification data set aeon bundles, on its
clean training split, its test split and its training split poisoned by each
series attack of the training-defense grid (10 %, target 0, seed 0), with the
clean training series' 40th and 60th percentiles (the range a 10 % poison can move
the median within). `--cells DATASET|ATTACK ...` also trains, for a data set
outside the grid, plain models on its clean and poisoned training sets and E2ABL
with its defaults and with `trap_input_steps=false` (training_defense.run_one,
seed 0), for a check the threshold was not chosen on.

    python benchmarks/e2abl_smoothness.py [--cells 'ucr:ArrowHead|blended'] [--threads 1]

Writes docs/results/e2abl_smoothness.json (cells are kept across runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from backdoorguard.config import AttackConfig
from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset
from backdoorguard.data.ucr import CLASSIFICATION
from backdoorguard.defenses.training.e2abl import SMOOTH_BELOW
from backdoorguard.defenses.training.trap import roughness, smoothness
from backdoorguard.pipeline import build_attack
from training_defense import RATE, SERIES_ATTACKS, TARGET, run_one

RESULTS = Path("docs/results/e2abl_smoothness.json")
HELD_OUT_METHODS = ["plain", "e2abl", "e2abl:trap_input_steps=false"]


def statistics_of(name: str) -> dict:
    data = load_dataset(name)
    clean = roughness(data.train.x)
    row = {"dataset": name, "train_size": len(data.train), "shape": list(data.task.input_shape),
           "train": smoothness(data.train.x), "test": smoothness(data.test.x),
           "train_p40": float(clean.nanquantile(0.4)), "train_p60": float(clean.nanquantile(0.6)),
           "poisoned": {}}
    for attack in SERIES_ATTACKS:
        config = AttackConfig(name=attack, poison_rate=RATE, target=TARGET)
        poisoned = build_attack(config, data.task).poison(data.train, RATE, seed=0)
        row["poisoned"][attack] = smoothness(poisoned.x)
    row["steps_head"] = row["train"] < SMOOTH_BELOW
    # does any poisoning flip the decision the clean training set gets?
    row["same_side"] = all((v < SMOOTH_BELOW) == row["steps_head"]
                           for v in row["poisoned"].values())
    return row


def table(rows: list[dict]) -> list[str]:
    lines = ["| data set | train size | clean train (p40–p60) | test | "
             + " | ".join(f"poisoned {a}" for a in SERIES_ATTACKS) + " | steps head |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in SERIES_ATTACKS) + " | --- |"]
    for row in sorted(rows, key=lambda r: r["train"]):
        side = ("on" if row["steps_head"] else "off") if row["same_side"] else "**split**"
        lines.append(f"| {row['dataset']} | {row['train_size']} | {row['train']:.3f} "
                     f"({row['train_p40']:.3f}–{row['train_p60']:.3f}) | {row['test']:.3f} | "
                     + " | ".join(f"{row['poisoned'][a]:.3f}" for a in SERIES_ATTACKS)
                     + f" | {side} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="E2ABL's smoothness statistic per data set")
    parser.add_argument("--cells", nargs="*", default=[], help="dataset|attack held-out cells")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    rows = [statistics_of(f"ucr:{name}") for name in CLASSIFICATION]
    cells = saved.get("cells", {})
    runtime = Runtime(seed=0, device="cpu", threads=args.threads, progress=False)
    for cell in args.cells:
        dataset, _, attack = cell.partition("|")
        for key, attack_name, method in [(f"{dataset}|clean|plain", None, "plain")] + [
                (f"{dataset}|{attack}|{m}", attack, m) for m in HELD_OUT_METHODS]:
            if key not in cells:
                cells[key] = run_one(dataset, attack_name, method, runtime)
                print(key, cells[key]["metrics"], cells[key].get("recall"), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"smooth_below": SMOOTH_BELOW, "data_sets": rows,
                                   "cells": cells}, indent=1, sort_keys=True) + "\n")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
