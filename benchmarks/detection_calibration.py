"""How much a detector's accuracy at the calibrated threshold depends on which
known-clean models calibrate it.

The detection zoo calibrates on its 4 calibration models only. This re-draws
the calibration set from all the zoo's known-clean models (calibration + clean)
many times: each draw takes `k` of them to set the threshold (and, for an
ensemble, to standardise its members), and scores the other clean models and
every backdoored one. Nothing is scanned: it reads the scores stored in
docs/results/detection_zoo.json.

    PYTHONPATH=src:benchmarks python benchmarks/detection_calibration.py
        [--datasets synthgaze:2500 rotation] [--k 4 8] [--draws 200] [--seed 0]
        [--detectors NAME ...] [--out docs/results/detection_calibration.json]

Prints a markdown table per data set: accuracy at the calibrated threshold
(median, 10th–90th percentile, share of draws ≥ 0.90), FPR and TPR (medians).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from backdoorguard.defenses.detection.calibration import threshold_from
from detection_zoo import RESULTS, combine_rows


def draw_rows(rows: list[dict], calib: set[str], name: str | None = None) -> list[dict]:
    """The zoo's rows of detector `name` with `calib` as the calibration models
    (role "calib") and the other known-clean models as scored clean ones; an
    ensemble's rows (and Neural Cleanse's per-class statistics on a classifier)
    are re-standardised on them."""
    out = [{**row, "role": "calib" if row["name"] in calib else
            ("clean" if row["role"] in ("calib", "clean") else row["role"])} for row in rows]
    return combine_rows(out, name)


def rates(rows: list[dict]) -> dict[str, float]:
    """Accuracy, FPR and TPR of the scored rows at the threshold their calibration
    rows give."""
    threshold, _ = threshold_from([r["score"] for r in rows if r["role"] == "calib"])
    clean = [r["score"] > threshold for r in rows if r["role"] == "clean"]
    backdoored = [r["score"] > threshold for r in rows if r["role"] == "backdoored"]
    return {"accuracy": (clean.count(False) + backdoored.count(True))
            / (len(clean) + len(backdoored)),
            "fpr": float(np.mean(clean)), "tpr": float(np.mean(backdoored))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthgaze:2500", "rotation"])
    parser.add_argument("--k", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=None,
                        help="detectors as named in the zoo's results (default: all)")
    parser.add_argument("--out", type=Path, default=Path("docs/results/detection_calibration.json"))
    args = parser.parse_args()
    zoo = json.loads(RESULTS.read_text())
    results = {}
    for dataset in args.datasets:
        if dataset not in zoo:
            parser.error(f"--datasets {dataset}: not in {RESULTS}; allowed: {', '.join(zoo)}")
        detectors = zoo[dataset]["detectors"]
        names = args.detectors or list(detectors)
        unknown = [n for n in names if n not in detectors]
        if unknown:
            parser.error(f"--detectors {unknown[0]}: not scanned on {dataset}")
        known_clean = [r["name"] for r in detectors[names[0]]["rows"]
                       if r["role"] in ("calib", "clean")]
        for k in args.k:
            if not 1 <= k < len(known_clean):
                parser.error(f"--k {k}: allowed 1 to {len(known_clean) - 1} on {dataset}")
        print(f"\n### {dataset} ({len(known_clean)} known-clean models, {args.draws} draws)\n")
        print("| detector | k | accuracy median (10–90 %) | draws with accuracy ≥ 0.90 | "
              "FPR median | TPR median |\n| --- | --- | --- | --- | --- | --- |")
        results[dataset] = {}
        for name in names:
            results[dataset][name] = {}
            for k in args.k:
                rng = np.random.default_rng(args.seed)
                found = [rates(draw_rows(detectors[name]["rows"],
                                         set(rng.choice(known_clean, k, replace=False)), name))
                         for _ in range(args.draws)]
                accuracy = np.array([f["accuracy"] for f in found])
                summary = {"accuracy_median": float(np.median(accuracy)),
                           "accuracy_p10": float(np.quantile(accuracy, 0.1)),
                           "accuracy_p90": float(np.quantile(accuracy, 0.9)),
                           "share_at_least_0.90": float(np.mean(accuracy >= 0.9)),
                           "fpr_median": float(np.median([f["fpr"] for f in found])),
                           "tpr_median": float(np.median([f["tpr"] for f in found]))}
                results[dataset][name][k] = summary
                print(f"| {name} | {k} | {summary['accuracy_median']:.2f} "
                      f"({summary['accuracy_p10']:.2f}–{summary['accuracy_p90']:.2f}) | "
                      f"{summary['share_at_least_0.90']:.0%} | {summary['fpr_median']:.2f} | "
                      f"{summary['tpr_median']:.2f} |")
    args.out.write_text(json.dumps({"draws": args.draws, "seed": args.seed, "k": args.k,
                                    "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
