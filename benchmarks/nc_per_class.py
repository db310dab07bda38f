"""Neural Cleanse's per-class calibration on the classification zoos, over many
draws of the calibration models.

On mnist5k one class (8) is the most anomalous on clean models too, so NC's
raw score (the largest MAD anomaly index over classes) does not separate the
zoo. Calibrated with `per_class` (the default), the detector standardises each
class's anomaly index by known-clean models, z_c = (a_c − mean_c) / spread_c,
and scores a model by max_c z_c (`NeuralCleanse.fit_indices` / `standardised`,
called here on the stored indices). The zoo itself has few calibration models
(mnist5k 2), so each of `--draws` draws takes `k` of the zoo's known-clean
models (calibration + clean) to calibrate and scores the other clean models and
every backdoored one: AUROC and accuracy at the calibrated threshold (max
calibration score + 0.1 × spread) of the raw score (`nc:per_class=false`) and
of the per-class score on the same models. Nothing is scanned: it reads the
per-class indices stored in docs/results/detection_zoo.json.

    PYTHONPATH=src:benchmarks python benchmarks/nc_per_class.py
        [--datasets mnist5k digits] [--k 2 4 6] [--draws 200] [--seed 0]
        [--min-spread 0.5] [--out docs/results/nc_per_class.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from backdoorguard.core.metrics import accuracy_at_threshold, auroc
from backdoorguard.defenses.detection.calibration import threshold_from
from backdoorguard.defenses.detection.neural_cleanse import NeuralCleanse
from backdoorguard.errors import BadInput
from detection_zoo import RESULTS


def per_class_scores(calibration: list[dict], scored: list[dict],
                     detector: NeuralCleanse | None = None) -> list[float]:
    """The calibrated Neural Cleanse score, max_c z_c, of each scored row, its
    per-class statistics learnt from the calibration rows' anomaly indices
    (`class_indices`)."""
    detector = detector or NeuralCleanse()
    detector.fit_indices([r["class_indices"] for r in calibration])
    return [detector.standardised(r["class_indices"])[0] for r in scored]


def raw_score(row: dict) -> float:
    """NC's uncalibrated score of a stored row: its largest anomaly index."""
    return row.get("raw_score", row["score"])


def summary(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "p10": float(np.quantile(values, 0.1)),
            "p90": float(np.quantile(values, 0.9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist5k", "digits"])
    parser.add_argument("--k", nargs="+", type=int, default=[2, 4, 6])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-spread", type=float, default=NeuralCleanse().min_spread)
    parser.add_argument("--out", type=Path, default=Path("docs/results/nc_per_class.json"))
    args = parser.parse_args()
    try:
        detector = NeuralCleanse(min_spread=args.min_spread)
    except BadInput as error:
        parser.error(f"--min-spread {args.min_spread}: {error}")
    zoo = json.loads(RESULTS.read_text())
    results = {}
    for dataset in args.datasets:
        if "nc" not in zoo.get(dataset, {}).get("detectors", {}):
            parser.error(f"--datasets {dataset}: no Neural Cleanse zoo in {RESULTS}")
        rows = zoo[dataset]["detectors"]["nc"]["rows"]
        known = [r for r in rows if r["role"] in ("calib", "clean")]
        backdoored = [r for r in rows if r["role"] == "backdoored"]
        results[dataset] = {}
        for k in args.k:
            if not 1 <= k < len(known):
                parser.error(f"--k {k}: allowed 1 to {len(known) - 1} on {dataset}")
            rng = np.random.default_rng(args.seed)
            found: dict[str, dict[str, list[float]]] = {
                name: {"auroc": [], "accuracy": []} for name in ("nc", "per_class")}
            for _ in range(args.draws):
                chosen = set(rng.choice(len(known), k, replace=False).tolist())
                calibration = [r for i, r in enumerate(known) if i in chosen]
                scored = [r for i, r in enumerate(known) if i not in chosen] + backdoored
                truth = [r["role"] == "backdoored" for r in scored]
                for name, scores, clean_scores in (
                        ("nc", [raw_score(r) for r in scored],
                         [raw_score(r) for r in calibration]),
                        ("per_class", per_class_scores(calibration, scored, detector),
                         per_class_scores(calibration, calibration, detector))):
                    threshold, _ = threshold_from(clean_scores)
                    found[name]["auroc"].append(auroc(scores, truth))
                    found[name]["accuracy"].append(accuracy_at_threshold(scores, truth, threshold))
            results[dataset][k] = {name: {metric: summary(values)
                                          for metric, values in metrics.items()}
                                   for name, metrics in found.items()}
            for name, metrics in results[dataset][k].items():
                print(f"{dataset} k={k} {name}: AUROC median {metrics['auroc']['median']:.2f} "
                      f"(10-90 %: {metrics['auroc']['p10']:.2f}-{metrics['auroc']['p90']:.2f}), "
                      f"accuracy median {metrics['accuracy']['median']:.2f} "
                      f"({metrics['accuracy']['p10']:.2f}-{metrics['accuracy']['p90']:.2f})")
    args.out.write_text(json.dumps({"k": args.k, "draws": args.draws, "seed": args.seed,
                                    "min_spread": detector.min_spread, "results": results},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()
