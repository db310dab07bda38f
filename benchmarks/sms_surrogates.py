"""Which block SMS's surrogate probe picks, surrogate by surrogate: for a cached
model of `benchmarks/purification.py`, train surrogates (seeds, trigger kinds,
steps) exactly as `sms` does and print each one's block scores and its pick,
without fine-tuning anything. The surrogate sees only the clean subset, so it is
the same for every attack of a setting.

    python benchmarks/sms_surrogates.py 'mnist5k|badnets' --seeds 0 1 2 3 4
                                        [--triggers badnets blended] [--steps 60]
                                        [--measure asr] [--probe-size 64] [--threads 1]

One line of JSON per surrogate (appended to --log when given).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from backdoorguard.core.checkpoint import load_model
from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset
from backdoorguard.defenses.purification.sms import SMS
from backdoorguard.pipeline import clean_subset
from purification_probe import emit, matching


def main() -> None:
    parser = argparse.ArgumentParser(description="SMS surrogate picks")
    parser.add_argument("cells", nargs="+", help="globs over SETTING|ATTACK (the benchmark's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--triggers", nargs="+", default=["badnets"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--probe-size", type=int, default=64)
    parser.add_argument("--measure", default="asr")
    parser.add_argument("--models", type=Path, default=Path("docs/results/purification.json"))
    parser.add_argument("--clean-seed", type=int, default=0,
                        help="seed of the clean subset (the benchmark's runtime seed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = json.loads(args.models.read_text())["models"]
    sms = SMS(surrogate_steps=args.steps, probe_size=args.probe_size, measure=args.measure)
    runtime = Runtime(seed=args.clean_seed, device="cpu", threads=args.threads, progress=False)
    for record in matching(models, args.cells):
        model, _ = load_model(Path(record["folder"]))
        data = load_dataset(record["dataset"])
        clean = clean_subset(data, 0.05, seed=args.clean_seed)
        for kind in args.triggers:
            for seed in args.seeds:
                seeded = dataclasses.replace(runtime, seed=seed)
                start = time.perf_counter()
                found, _ = sms.surrogate_scores(model, clean, kind, seeded)
                scores = {name: round(v, 4) for name, v in found["score"].items()}
                emit({"cell": f"{record['setting']}|{record['attack']}", "trigger": kind,
                      "seed": seed, "steps": args.steps, "probe_size": args.probe_size,
                      "measure": args.measure,
                      "base": round(found[args.measure][next(iter(scores))][0], 3),
                      "pick": SMS.critical(found["score"]), "scores": scores,
                      "seconds": round(time.perf_counter() - start, 1)}, args.log)

if __name__ == "__main__":
    main()
