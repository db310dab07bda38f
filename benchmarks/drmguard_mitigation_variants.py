"""DRMGuard mitigation variants on one scan per model: each model is scanned once
per detector setting, then every purifier variant fine-tunes from that same
reversed trigger (a variant with `rounds` > 1 scans again from its second round).
Separates what the fine-tuning changes from the scan's own noise, and costs one
scan per model instead of one per variant.

    PYTHONPATH=src:benchmarks python benchmarks/drmguard_mitigation_variants.py \
        --models badnets0 badnets1 blended1 wanet1 \
        --detectors default 'displaced:displacement=1,margin=1,restarts=4' \
        --variants 'paper' 'clean_target=model,anchor=100' ...

needs the models cached by benchmarks/detection_zoo.py (synthgaze:2500, 12
epochs); a variant is 'paper' (the paper-like setting, PAPER below: the
purifier's defaults before the displaced scan and the feature anchor became
them) or KEY=VALUE pairs joined by commas over it; a detector is NAME or
NAME:KEY=VALUE,... over the detector's own defaults ('default' alone: its
default scan). Rows (true_error reduction, clean MAE increase, asr@5° after, relative
weight drift, seconds of the fine-tuning) are appended to
docs/results/drmguard_mitigation_variants.json under "DETECTOR|VARIANT".
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

from detection_zoo import attack_of, folder_of, zoo
from drmguard_mitigation import change, meets_mitigation_bars

RESULTS = Path("docs/results/drmguard_mitigation_variants.json")
PAPER = {"epochs": 10, "lr": 5e-4, "batchnorm": "train", "clean_target": "label",
         "feature_anchor": 0.0}
PAPER_SCAN = {"displacement": 0.0, "restarts": 2}  # the detector's defaults


class FirstScanGiven:
    """A detector whose first `inspect` returns a scan made beforehand; later calls
    (the purifier's further rounds) scan for real."""

    def __init__(self, detector, detection):
        self.detector, self.detection, self.calls = detector, detection, 0

    def inspect(self, model, clean, *, runtime):
        self.calls += 1
        if self.calls == 1:
            return self.detection
        return self.detector.inspect(model, clean, runtime=runtime)


def purifier_for(detector: dict, params: dict):
    """The purifier of one variant, reversing only the trigger family its detector
    setting scans (the scan every variant starts from)."""
    scan = {k: v for k, v in detector.items() if k != "trigger"}
    return create_defense("drmguard", "purification", detector=scan,
                          triggers=detector.get("trigger", "generator"), **params)


def pairs(text: str, flag: str) -> dict:
    return key_values([p for p in text.split(",") if p], flag) or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--detectors", nargs="+", default=["default"])
    parser.add_argument("--variants", nargs="+", default=["paper"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    detectors = {}
    for text in args.detectors:
        name, _, spec = text.partition(":")
        detectors[name] = {**PAPER_SCAN, **pairs(spec, "--detectors")}
    variants = {text: {**PAPER, **({} if text == "paper" else pairs(text, "--variants"))}
                for text in args.variants}
    for text, params in variants.items():
        if "triggers" in params:  # every variant fine-tunes from its detector's one scan
            parser.error(f"--variants {text!r}: give the trigger family in --detectors "
                         f"(NAME:trigger=mask), not triggers")
    try:  # bad settings: one line and exit 2 before any model runs
        for detector in detectors.values():
            for params in variants.values():
                purifier_for(detector, params)
    except BadInput as error:
        parser.error(str(error))
    runtime = Runtime(seed=0, device="auto", threads=args.threads, progress=False).apply()
    data = resolve(TrainRun(dataset="synthgaze:2500")).data
    clean = clean_subset(data, 0.05, seed=0)
    models = {m["name"]: m for m in zoo("synthgaze:2500", 2, 4, 4, 12)
              if m["role"] == "backdoored"}
    unknown = [name for name in args.models if name not in models]
    if unknown:
        parser.error(f"--models {' '.join(unknown)}: not a backdoored zoo model; "
                     f"allowed: {', '.join(models)}")
    for name in args.models:
        model = models[name]
        net, _ = load_model(folder_of(model))
        attack = attack_of(model, data.task)
        before = evaluate(net, data.test, attack).to_dict()
        for detector_name, detector in detectors.items():
            scan = create_defense("drmguard", "detection", **detector).inspect(
                net, clean, runtime=runtime)
            for variant, params in variants.items():
                purifier = purifier_for(detector, params)
                purifier.detectors[0] = FirstScanGiven(purifier.detectors[0], scan)
                start = time.perf_counter()
                runtime.apply()
                purified = purifier.purify(net, clean, runtime=runtime)
                after = evaluate(purified.model, data.test, attack).to_dict()
                row = {**change(before, after), "asr_after": after["asr_at_tol"],
                       "weight_drift": purified.changes["weight_drift"],
                       "round_scores": purified.changes.get("round_scores"),
                       "seconds": time.perf_counter() - start}
                results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
                results.setdefault(f"{detector_name}|{variant}", {})[name] = row
                RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
                print(name, detector_name, variant,
                      {k: round(v, 3) for k, v in row.items() if isinstance(v, float)},
                      flush=True)
    print(summary(json.loads(RESULTS.read_text())))


def summary(results: dict) -> str:
    """One line per detector|variant: per model the change of true_error and of
    clean MAE, then how many models meet both bars."""
    lines = []
    for key, rows in sorted(results.items()):
        cells = ", ".join(f"{name} {-r['true_error_reduction']:+.0%}/{r['clean_mae_increase']:+.0%}"
                          for name, r in sorted(rows.items()))
        both = sum(meets_mitigation_bars(r) for r in rows.values())
        lines.append(f"{key}: {cells} (both bars {both}/{len(rows)})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
