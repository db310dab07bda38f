"""A lead for Neural Cleanse on classification zoos: calibrate each class.

On mnist5k one class (8) is the most anomalous on clean models too, so NC's
score (the largest MAD anomaly index over classes) does not separate the zoo.
This standardises each class's anomaly index by known-clean models, z_c =
(a_c − mean_c) / sd_c, and scores a model by max_c z_c. Each of `--draws`
draws takes `--k` of the zoo's known-clean models (calibration + clean) to
calibrate and scores the other clean models and every backdoored one; AUROC
of NC's own score and of the per-class score on the same models. Nothing is
scanned: it reads the per-class indices stored in docs/results/detection_zoo.json.

    PYTHONPATH=src:benchmarks python benchmarks/nc_per_class.py
        [--datasets mnist5k digits] [--k 6] [--draws 200] [--seed 0]
        [--out docs/results/nc_per_class.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from backdoorguard.core.metrics import auroc
from detection_zoo import RESULTS


def per_class_scores(calibration: list[dict], scored: list[dict]) -> list[float]:
    """max_c (a_c − mean_c) / sd_c of each scored row, the per-class mean and sample
    standard deviation taken over the calibration rows' anomaly indices."""
    indices = np.array([r["class_indices"] for r in calibration])
    mean, spread = indices.mean(0), indices.std(0, ddof=1)
    spread[spread == 0] = 1.0
    return [float(((np.array(r["class_indices"]) - mean) / spread).max()) for r in scored]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist5k", "digits"])
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/results/nc_per_class.json"))
    args = parser.parse_args()
    zoo = json.loads(RESULTS.read_text())
    results = {}
    for dataset in args.datasets:
        if "nc" not in zoo.get(dataset, {}).get("detectors", {}):
            parser.error(f"--datasets {dataset}: no Neural Cleanse zoo in {RESULTS}")
        rows = zoo[dataset]["detectors"]["nc"]["rows"]
        known = [r for r in rows if r["role"] in ("calib", "clean")]
        backdoored = [r for r in rows if r["role"] == "backdoored"]
        if not 2 <= args.k < len(known):
            parser.error(f"--k {args.k}: allowed 2 to {len(known) - 1} on {dataset}")
        rng = np.random.default_rng(args.seed)
        found = {"nc": [], "per_class": []}
        for _ in range(args.draws):
            chosen = set(rng.choice(len(known), args.k, replace=False).tolist())
            calibration = [r for i, r in enumerate(known) if i in chosen]
            scored = [r for i, r in enumerate(known) if i not in chosen] + backdoored
            truth = [r["role"] == "backdoored" for r in scored]
            found["nc"].append(auroc([r["score"] for r in scored], truth))
            found["per_class"].append(auroc(per_class_scores(calibration, scored), truth))
        results[dataset] = {name: {"auroc_median": float(np.median(v)),
                                   "auroc_p10": float(np.quantile(v, 0.1)),
                                   "auroc_p90": float(np.quantile(v, 0.9))}
                            for name, v in found.items()}
        for name, summary in results[dataset].items():
            print(f"{dataset} {name}: AUROC median {summary['auroc_median']:.2f} "
                  f"(10-90 %: {summary['auroc_p10']:.2f}-{summary['auroc_p90']:.2f})")
    args.out.write_text(json.dumps({"k": args.k, "draws": args.draws, "seed": args.seed,
                                    "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
