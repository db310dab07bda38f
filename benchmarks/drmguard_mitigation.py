"""DRMGuard mitigation (or any other purifier, `--method`) on the detection zoo's
cached backdoored models: clean MAE and true_error / target_error on triggered
test inputs, before and after.

    PYTHONPATH=src:benchmarks python benchmarks/drmguard_mitigation.py [--dataset synthgaze:2500]
        [--epochs 12] [--models blended0 ...] [--fast] [--method d3] [--param lr=1e-4 ...]
        [--detector displacement=1 ...]

needs the models cached by benchmarks/detection_zoo.py (same settings; without
--models, every backdoored model of a zoo of 4 per attack); writes
docs/results/drmguard_mitigation.json (8-epoch runs under the data set's name,
others under "NAME@EPOCHS", other methods under "METHOD:" before it, then
"|KEY=VALUE" per --param and "|detector.KEY=VALUE" per --detector) and prints
a table with the bars: DRMGuard mitigation's (true_error down >= 70 %, clean MAE
up <= 15 %) and purification's (asr@tol <= 0.10, clean MAE up <= 15 %).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from backdoorguard.cli.common import key_values
from backdoorguard.config import TrainRun
from backdoorguard.core.checkpoint import load_model
from backdoorguard.core.metrics import evaluate
from backdoorguard.core.runtime import Runtime
from backdoorguard.defenses.base import create_defense
from backdoorguard.errors import BadInput
from backdoorguard.pipeline import clean_subset, resolve

from detection_zoo import FAST, attack_of, folder_of, zoo

RESULTS = Path("docs/results/drmguard_mitigation.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthgaze:2500")
    parser.add_argument("--models", nargs="+", default=None,
                        help="zoo model names (default: every backdoored one)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fast", action="store_true", help="the zoo's --fast DRMGuard scan")
    parser.add_argument("--method", default="drmguard", help="purification method")
    parser.add_argument("--param", action="append", default=[],
                        help="KEY=VALUE for the purifier (DRMGuard: epochs, lr, batch_size, loss, "
                             "batchnorm, clean_target, reversed_target, anchor, "
                             "feature_anchor, rounds, triggers: e.g. triggers=generator,mask)")
    parser.add_argument("--detector", action="append", default=[],
                        help="KEY=VALUE for DRMGuard's detector (e.g. displacement=1)")
    args = parser.parse_args()
    params = key_values(args.param, "--param") or {}
    detector_params = key_values(args.detector, "--detector") or {}
    runtime = Runtime(seed=0, device="auto", threads=args.threads, progress=False).apply()
    data = resolve(TrainRun(dataset=args.dataset)).data
    clean = clean_subset(data, 0.05, seed=0)
    key = args.dataset if args.epochs == 8 else f"{args.dataset}@{args.epochs}"
    key += "".join(f"|{k}={v}" for k, v in sorted(params.items()))
    key += "".join(f"|detector.{k}={v}" for k, v in sorted(detector_params.items()))
    detector, options = None, params
    if args.method == "drmguard":
        detector = {**(FAST["drmguard"] if args.fast else {}), **detector_params}
        options = {"detector": detector, **params}
    else:
        key = f"{args.method}:{key}"
    try:  # a bad --param or --detector: one line and exit 2 before any model runs
        create_defense(args.method, "purification", **options)
    except BadInput as error:
        parser.error(str(error))
    for model in zoo(args.dataset, 2, 4, 4, args.epochs):
        if model["role"] != "backdoored" or (args.models and model["name"] not in args.models):
            continue
        folder = folder_of(model)
        if not (folder / "metrics.json").exists():  # not trained (yet)
            continue
        net, _ = load_model(folder)
        attack = attack_of(model, data.task)
        before = evaluate(net, data.test, attack).to_dict()
        start = time.perf_counter()
        purified = create_defense(args.method, "purification", **options).purify(
            net, clean, runtime=runtime)
        seconds = time.perf_counter() - start
        after = evaluate(purified.model, data.test, attack).to_dict()
        entry = {"before": before, "after": after, "seconds": seconds,
                 "passes": purified.cost.passes, "changes": purified.changes,
                 "detector": detector, **change(before, after)}
        # read just before writing: another process may be running another setting
        results = stored()
        results.setdefault(key, {})[model["name"]] = entry
        print(model["name"], {k: entry[k] for k in ("true_error_reduction", "clean_mae_increase",
                                                    "seconds")}, flush=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(table(stored().get(key, {})))


def change(before: dict, after: dict) -> dict:
    """The mitigation bars' two numbers: true_error's reduction on triggered inputs
    and the clean MAE's increase, as fractions."""
    return {"true_error_reduction": 1 - after["true_error"] / before["true_error"],
            "clean_mae_increase": after["clean_mae"] / before["clean_mae"] - 1}


def meets_mitigation_bars(entry: dict) -> bool:
    """Issue 9's bars: true_error down >= 70 % with clean MAE up <= 15 %."""
    return entry["true_error_reduction"] >= 0.70 and entry["clean_mae_increase"] <= 0.15


def stored() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def table(entries: dict) -> str:
    """Markdown rows per model, then how many meet each bar."""
    lines = ["| model | clean MAE before → after | true_error before → after (reduction) "
             "| target_error | asr@5° | seconds | mitigation bars | purification bars |",
             "| --- " * 8 + "|"]
    both = purified = 0
    for name, e in entries.items():
        b, a = e["before"], e["after"]
        ok = meets_mitigation_bars(e)
        removed = a["asr_at_tol"] <= 0.10 and e["clean_mae_increase"] <= 0.15
        both += ok
        purified += removed
        lines.append(
            f"| {name} | {b['clean_mae']:.2f} → {a['clean_mae']:.2f} "
            f"({e['clean_mae_increase']:+.0%}) | {b['true_error']:.1f} → {a['true_error']:.1f} "
            f"({-e['true_error_reduction']:+.0%}) | {b['target_error']:.1f} → "
            f"{a['target_error']:.1f} | {b['asr_at_tol']:.2f} → {a['asr_at_tol']:.2f} "
            f"| {e['seconds']:.0f} | {'both' if ok else 'miss'} | {'both' if removed else 'miss'} |")
    lines.append(f"\nMitigation bars (true_error −70 %, clean MAE ≤ +15 %) met on {both} of "
                 f"{len(entries)} models; purification bars (asr@tol ≤ 0.10, clean MAE ≤ +15 %) "
                 f"on {purified}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
