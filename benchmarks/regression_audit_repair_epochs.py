"""Ablation of the repair's fine-tuning length on the cached models of
benchmarks/regression_audit.py (run that first): relabel repair of each seed's
poisoned model (with shell) fine-tuned for another number of epochs than the default
(40; 20 was the default until this ablation showed it too short, docs/regression-audit.md).

    PYTHONPATH=src python benchmarks/regression_audit_repair_epochs.py [--seeds 0-9] \
        [--epochs 20] [--cache /tmp/bg-regression-audit]

Writes docs/results/regression_audit_repair_epochs.json after every seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from backdoorguard.core.checkpoint import write_json
from backdoorguard.data import load_dataset
from backdoorguard.data.options import pde_oracle
from backdoorguard.defenses.audit import ErrorMaximizers
from backdoorguard.defenses.audit.repair import Repair
from regression_audit import (ATTACK, AUDIT_BUDGET, RESULTS, planted, region_errors,
                              runtime_for, seed_list, trained)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bg-regression-audit"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("barrier-option")
    out = RESULTS / "regression_audit_repair_epochs.json"
    rows = []
    for seed in seed_list(args.seeds):
        runtime = runtime_for(seed, 1)
        attack = planted(data.task, seed, True)
        train = attack.poison(data.train, ATTACK["rate"], seed)
        models = {"clean": trained("clean", data.train, seed, args.cache, 1),
                  "shell": trained("shell", train, seed, args.cache, 1)}
        audit = ErrorMaximizers(budget=AUDIT_BUDGET).audit(models["shell"], train, pde_oracle(),
                                                           runtime=runtime)
        repaired = Repair(mode="relabel", train={"epochs": args.epochs}).repair(
            models["shell"], train, audit, pde_oracle(), runtime=runtime)
        errors = region_errors({"repaired": repaired.model, "clean": models["clean"]}, attack,
                               data.test, seed)
        rows.append({"seed": seed, "epochs": args.epochs,
                     "region_ratio": errors["repaired"]["region"] / errors["clean"]["region"],
                     "global_ratio": errors["repaired"]["global"] / errors["clean"]["global"]})
        print(rows[-1], flush=True)
        write_json(out, {"rows": rows})


if __name__ == "__main__":
    main()
