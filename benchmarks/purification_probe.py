"""Probe one purification cell with changed parameters, without touching the
benchmark's results: the cached backdoored model of `benchmarks/purification.py`,
5 % clean data, one method with `--param KEY=VALUE` overrides; prints the clean
accuracy and ASR (regression: clean MAE and asr_at_tol) before and after, the
clean set's size and the model's loss on it.

    python benchmarks/purification_probe.py 'GunPoint|*' --methods d3 sms [--param augment=off ...]
                                            [--models docs/results/purification.json]
                                            [--seed 0] [--clean-fraction 0.05] [--threads 1]

One line of JSON per run (appended to --log when given).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import time
from pathlib import Path

import torch

from backdoorguard.cli.common import key_values
from backdoorguard.core.checkpoint import load_model
from backdoorguard.core.metrics import evaluate
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import sample_losses
from backdoorguard.data import load_dataset
from backdoorguard.defenses.base import create_defense
from backdoorguard.defenses.purification.run import attack_of
from backdoorguard.pipeline import clean_subset


def probe(record: dict, method: str, params: dict, runtime: Runtime,
          fraction: float = 0.05) -> dict:
    folder = Path(record["folder"])
    model, card = load_model(folder)
    data = load_dataset(record["dataset"])
    attack = attack_of(card, data.task, folder)
    clean = clean_subset(data, fraction, seed=runtime.seed)
    before = evaluate(model, data.test, attack)
    purifier = create_defense(method, "purification", **params)
    start = time.perf_counter()
    purified = purifier.purify(model, clean, runtime=runtime)
    seconds = time.perf_counter() - start
    after = evaluate(purified.model, data.test, attack)
    return {"cell": f"{record['setting']}|{record['attack']}", "method": method,
            "params": params, "seed": runtime.seed, "clean_size": len(clean),
            "clean_loss_before": float(sample_losses(model, clean).mean()),
            "clean_loss_after": float(sample_losses(purified.model, clean).mean()),
            "before": [round(clean_metric(before), 3), round(before.attack_metric, 3)],
            "after": [round(clean_metric(after), 3), round(after.attack_metric, 3)],
            "seconds": round(seconds, 1),
            "changes": {k: v for k, v in purified.changes.items()
                        if k in ("augment", "critical_block", "probe_found", "block_scores", "pruned",
                                 "epochs")}}


def clean_metric(metrics) -> float:
    """Clean accuracy, or clean MAE for regression."""
    return metrics.clean_acc if metrics.kind == "classification" else metrics.clean_mae


def main() -> None:
    parser = argparse.ArgumentParser(description="Probe one purification cell")
    parser.add_argument("cells", nargs="+", help="globs over SETTING|ATTACK (the benchmark's)")
    parser.add_argument("--methods", nargs="+", default=["ft", "fp", "nad", "d3", "sms"])
    parser.add_argument("--param", action="append", default=None)
    parser.add_argument("--models", type=Path, default=Path("docs/results/purification.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean-fraction", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = json.loads(args.models.read_text())["models"]
    runtime = Runtime(seed=args.seed, device="cpu", threads=args.threads, progress=False)
    params = key_values(args.param, "--param") or {}
    for key, record in models.items():
        if not any(fnmatch.fnmatch(key, glob) for glob in args.cells):
            continue
        for method in args.methods:
            line = json.dumps(probe(record, method, params, runtime, args.clean_fraction))
            print(line, flush=True)
            if args.log is not None:
                with args.log.open("a") as log:
                    log.write(line + "\n")


if __name__ == "__main__":
    main()
