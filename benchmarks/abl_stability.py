"""How stable ABL's isolation is across runtime seeds: the defaults against
ranking on every isolation epoch (`rank_epochs` = isolation epochs), on digits
with the recipe (cnn-small, 30 epochs: 6 isolation epochs), BadNets, Blended and
WaNet at 10 %, target 0. Per run: isolation precision, ASR, clean accuracy.

    PYTHONPATH=src:benchmarks python benchmarks/abl_stability.py [--seeds 0-2] [--threads 1]

Writes docs/results/abl_stability.json (rows appended as they finish; a re-run
skips rows already there).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.checkpoint import write_json
from backdoorguard.core.metrics import isolation
from backdoorguard.core.runtime import Runtime
from backdoorguard.pipeline import train_run
from regression_audit import seed_list

RESULTS = Path("docs/results/abl_stability.json")
ATTACKS = ["badnets", "blended", "wanet"]
VARIANTS = {"defaults": {}, "rank-all": {"rank_epochs": 6}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = json.loads(RESULTS.read_text())["rows"] if RESULTS.exists() else []
    done = {(r["attack"], r["variant"], r["seed"]) for r in rows}
    for seed in seed_list(args.seeds):
        for attack in ATTACKS:
            for variant, params in VARIANTS.items():
                if (attack, variant, seed) in done:
                    continue
                run = TrainRun(dataset="digits", seed=seed, defense="abl", defense_args=params,
                               attack=AttackConfig(name=attack, poison_rate=0.1, target=0))
                result = train_run(run, Runtime(seed=seed, device="cpu", threads=args.threads,
                                                progress=False))
                found = isolation(result.trained.isolated, result.train_data)
                rows.append({"attack": attack, "variant": variant, "seed": seed,
                             "precision": found["precision"], "asr": result.metrics.asr,
                             "clean_acc": result.metrics.clean_acc})
                print(json.dumps(rows[-1]), flush=True)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                write_json(RESULTS, {"rows": rows})
    for attack in ATTACKS:
        for variant in VARIANTS:
            chosen = [r for r in rows if r["attack"] == attack and r["variant"] == variant]
            if chosen:
                print(attack, variant, "precision median",
                      statistics.median(r["precision"] for r in chosen),
                      [round(r["precision"], 2) for r in chosen],
                      "asr", [round(r["asr"], 2) for r in chosen])


if __name__ == "__main__":
    main()
