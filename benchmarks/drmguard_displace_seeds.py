"""DRMGuard's default against variants (or ensembles, members joined by '+') over
several scan seeds on the synthgaze zoo.

Reads the zoo's cached scans (run `detection_zoo.py ... --seed S --detectors drmguard
VARIANT` first for every seed; nothing is scanned here) and reports, per detector,
the zoo summary for each seed (each seed also draws its own defender's clean set)
and for the score averaged over the seeds per model, plus every model's scores.

    PYTHONPATH=src:benchmarks python benchmarks/drmguard_displace_seeds.py --seeds 0 1 2
        [--detectors drmguard 'drmguard:displacement=1,margin=1']
        [--out docs/results/drmguard_displace.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backdoorguard.config import TrainRun
from backdoorguard.core.runtime import Runtime
from backdoorguard.defenses.detection.calibration import threshold_from
from backdoorguard.pipeline import clean_subset, resolve
from detection_zoo import (combine_rows, detector_spec, folder_of, scanned, summarise, trained,
                           zoo)

DATASET = "synthgaze:2500"
KEYS = ["auroc", "auroc_learnt", "accuracy", "tpr_at_5fpr", "threshold", "per_attack",
        "seconds_median"]


def summary(rows: list[dict]) -> dict:
    threshold, _ = threshold_from([r["score"] for r in rows if r["role"] == "calib"])
    out = summarise(rows, threshold)
    return {key: out[key] for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--detectors", nargs="+",
                        default=["drmguard", "drmguard:displacement=1,margin=1"])
    parser.add_argument("--out", type=Path, default=Path("docs/results/drmguard_displace.json"))
    args = parser.parse_args()
    models = [m for m in zoo(DATASET, 4, 10, 4, 12) if (folder_of(m) / "metrics.json").exists()]
    results = {}
    for text in args.detectors:
        name, method, params = detector_spec(text)
        per_seed, scores = {}, {}
        for seed in args.seeds:
            runtime = Runtime(seed=seed, device="cpu", threads=1, progress=False)
            clean = clean_subset(resolve(TrainRun(dataset=DATASET)).data, 0.05, seed=seed)
            rows = []
            for model in models:
                net, record = trained(model, runtime)
                scan = scanned(folder_of(model).name, name, method, params, net, clean, runtime,
                               cached_only=True)
                if scan is None:
                    parser.error(f"--seeds {seed}: {name} has no cached scan of "
                                 f"{model['name']}; run detection_zoo.py --seed {seed} first")
                rows.append({"name": model["name"], "role": model["role"],
                             "attack": model["attack"], "metrics": record["metrics"], **scan})
            rows = combine_rows(rows, name)  # an ensemble: standardised by this seed's calibration
            for row in rows:
                scores.setdefault(row["name"], []).append(row["score"])
            per_seed[seed] = summary(rows)
            print(name, seed, per_seed[seed], flush=True)
        mean_rows = [{**row, "score": sum(scores[row["name"]]) / len(args.seeds)}
                     for row in rows]
        results[name] = {"params": params, "per_seed": per_seed, "mean_score": summary(mean_rows),
                         "scores": scores}
        print(name, "mean", results[name]["mean_score"], flush=True)
    args.out.write_text(json.dumps({"dataset": DATASET, "seeds": args.seeds,
                                    "detectors": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
