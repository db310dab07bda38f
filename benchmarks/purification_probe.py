"""Probe one purification cell with changed parameters, without touching the
benchmark's results: the cached backdoored model of `benchmarks/purification.py`,
5 % clean data, one method with `--param KEY=VALUE` overrides; prints the clean
accuracy and ASR (regression: clean MAE and asr_at_tol) before and after, the
clean set's size and the model's loss on it.

    python benchmarks/purification_probe.py 'GunPoint|*' --methods d3 sms [--param augment=off ...]
                                            [--models docs/results/purification.json]
                                            [--seed 0] [--clean-fraction 0.05] [--threads 1]
                                            [--given]

`--given` hands the model's real attack to the method as `trigger` with
`probe=given` (SMS probing the received model with the true trigger: an upper
bound on what any probe of that model can find, not a defense).

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
          fraction: float = 0.05, given: bool = False) -> dict:
    folder = Path(record["folder"])
    model, card = load_model(folder)
    data = load_dataset(record["dataset"])
    attack = attack_of(card, data.task, folder)
    clean = clean_subset(data, fraction, seed=runtime.seed)
    before = evaluate(model, data.test, attack)
    extra = {"probe": "given", "trigger": attack} if given else {}
    purifier = create_defense(method, "purification", **params, **extra)
    start = time.perf_counter()
    purified = purifier.purify(model, clean, runtime=runtime)
    seconds = time.perf_counter() - start
    after = evaluate(purified.model, data.test, attack)
    return {"cell": f"{record['setting']}|{record['attack']}", "method": method,
            "params": params, "given": given, "seed": runtime.seed, "clean_size": len(clean),
            "clean_loss_before": float(sample_losses(model, clean).mean()),
            "clean_loss_after": float(sample_losses(purified.model, clean).mean()),
            "before": [round(clean_metric(before), 3), round(before.attack_metric, 3)],
            "after": [round(clean_metric(after), 3), round(after.attack_metric, 3)],
            "seconds": round(seconds, 1),
            "changes": {k: v for k, v in purified.changes.items()
                        if k in ("augment", "critical_block", "probe", "probe_found", "block_scores", "pruned",
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
    parser.add_argument("--given", action="store_true",
                        help="probe with the model's real attack (probe=given)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = json.loads(args.models.read_text())["models"]
    runtime = Runtime(seed=args.seed, device="cpu", threads=args.threads, progress=False)
    params = key_values(args.param, "--param") or {}
    for record in matching(models, args.cells):
        for method in args.methods:
            emit(probe(record, method, params, runtime, args.clean_fraction, args.given),
                 args.log)


def matching(models: dict, globs: list[str]) -> list[dict]:
    """The benchmark's model records whose SETTING|ATTACK key matches a glob."""
    return [record for key, record in models.items()
            if any(fnmatch.fnmatch(key, glob) for glob in globs)]


def emit(entry: dict, log: Path | None) -> None:
    """Print one result as a line of JSON, and append it to `log` when given."""
    line = json.dumps(entry)
    print(line, flush=True)
    if log is not None:
        with log.open("a") as out:
            out.write(line + "\n")


if __name__ == "__main__":
    main()
