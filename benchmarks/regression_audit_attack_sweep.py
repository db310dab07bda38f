"""Sweep of the localised attack's settings on calibration seeds (not the
benchmark's seeds 0-9): for each setting, the poisoned (with shell) model's
in-region error ÷ the clean model's, its global test RMSE rise, and where the
global MSE rise comes from (test points 0-1, 1-2, 2-3, >= 3 radii from the
planted centre). Issue 7's attack bar asks for >= 10 x in the region with
<= +10 % global RMSE.

    PYTHONPATH=src:benchmarks python benchmarks/regression_audit_attack_sweep.py \
        [--seeds 100-102] [--settings NAME,...] [--cache /tmp/bg-attack-sweep] [--rule]

A setting is the benchmark's ATTACK with some keys overridden (SETTINGS below).
Trained models are cached per seed and setting; rows go to
docs/results/regression_audit_attack_sweep.json after every model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from backdoorguard.attacks import create_attack
from backdoorguard.core.checkpoint import write_json
from backdoorguard.data import load_dataset
from regression_audit import (ATTACK, RESULTS, mse_rise_by_radii, region_errors, seed_list,
                              trained, truth)

SETTINGS: dict[str, dict] = {
    "default": {},
    "shell2": {"shell_ratio": 2.0},
    "shell2_shift6": {"shell_ratio": 2.0, "shift": 0.006},
    "shell3_shift8": {"shell_ratio": 3.0, "shift": 0.008},
    "shell2_wide": {"shell_ratio": 2.0, "shell_width": 1.0},
    "shell2_wide_shift6": {"shell_ratio": 2.0, "shell_width": 1.0, "shift": 0.006},
    "shell_thin": {"shell_width": 0.25},
    "shell4_wide_shift10": {"shell_ratio": 4.0, "shell_width": 1.0, "shift": 0.010},
    "null": {"shift": 0.0},
    "dense20": {"density": 20.0},
    "rate005": {"rate": 0.005},
    "rate02_dense20_shift3": {"rate": 0.02, "density": 20.0, "shift": 0.003},
    "thin_ratio2": {"shell_width": 0.25, "shell_ratio": 2.0},
    "thin_shift45": {"shell_width": 0.25, "shift": 0.0045},
    "rate005_shift45": {"rate": 0.005, "shift": 0.0045},
    "rate005_shift5": {"rate": 0.005, "shift": 0.005},
    "rate005_shift6": {"rate": 0.005, "shift": 0.006},
    "rate003_shift5": {"rate": 0.003, "shift": 0.005},
    "rate003_shift6": {"rate": 0.003, "shift": 0.006},
    "rate005_dense5_shift5": {"rate": 0.005, "density": 5.0, "shift": 0.005},
    "rate003_shift7": {"rate": 0.003, "shift": 0.007},
    "rate004_shift55": {"rate": 0.004, "shift": 0.0055},
    "rate002_shift6": {"rate": 0.002, "shift": 0.006},
    # 2 % of barrier-option's label span (0.3083 x strike)
    "rate003_share2": {"rate": 0.003, "shift": 0.02 * 0.30832328660126895},
    "rate003_share225": {"rate": 0.003, "shift": 0.0225 * 0.30832328660126895},
    "rate003_share25": {"rate": 0.003, "shift": 0.025 * 0.30832328660126895},
}

# The rule for the default shift, fixed before seeds 108-119 were run: over the
# calibration seeds 100-119, the candidate with the highest mean in-region ratio
# among those whose mean global RMSE rise is at most 8 % (the bar's 10 % less the
# 1.6 points by which the benchmark seeds exceeded the calibration seeds at the
# previous choice); ties go to the smaller shift. The benchmark seeds 0-9 are then
# run once with the choice and reported as they come out.
RULE_SEEDS = "100-119"
RULE_CANDIDATES = ("rate003_share2", "rate003_share225", "rate003_share25")
RULE_MAX_RISE = 0.08


def apply_rule(rows: list[dict]) -> dict:
    """The rule above over `rows`: per candidate its seeds, mean ratio and mean
    rise, and the chosen one (None when no candidate is complete and allowed)."""
    seeds = set(seed_list(RULE_SEEDS))
    table = {}
    for name in RULE_CANDIDATES:
        mine = [r for r in rows if r["setting"] == name and r["seed"] in seeds]
        n = len(mine)
        table[name] = {
            "seeds": n,
            "mean_ratio": sum(r["region_ratio"] for r in mine) / n if n else None,
            "mean_rise": sum(r["global_rise"] for r in mine) / n if n else None,
            "seeds_both_bars": sum(r["region_ratio"] >= 10 and r["global_rise"] <= 0.10
                                   for r in mine)}
    allowed = [name for name in RULE_CANDIDATES if table[name]["seeds"] == len(seeds)
               and table[name]["mean_rise"] <= RULE_MAX_RISE]
    chosen = max(allowed, key=lambda name: table[name]["mean_ratio"], default=None)
    return {"candidates": table, "chosen": chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="100-102")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bg-attack-sweep"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rule", action="store_true",
                        help="print the default-shift rule's table over the recorded rows and exit")
    args = parser.parse_args()
    out = RESULTS / "regression_audit_attack_sweep.json"
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    if args.rule:
        print(json.dumps(apply_rule(rows), indent=1))
        return
    torch.set_num_threads(args.threads)
    data = load_dataset("barrier-option")
    done = {(r["seed"], r["setting"]) for r in rows}
    for seed in seed_list(args.seeds):
        clean = trained("clean", data.train, seed, args.cache, args.threads)
        for name in args.settings.split(","):
            if (seed, name) in done:
                continue
            settings = {**ATTACK, **SETTINGS[name]}
            attack = create_attack("localized", data.task, truth=truth, shell=True,
                                   **{k: v for k, v in settings.items() if k != "rate"})
            poisoned = attack.poison(data.train, settings["rate"], seed)
            model = trained(name, poisoned, seed, args.cache, args.threads)
            errors = region_errors({"clean": clean, "poisoned": model}, attack, data.test, seed)
            rows.append({
                "seed": seed, "setting": name, "params": settings,
                "region_ratio": errors["poisoned"]["region"] / errors["clean"]["region"],
                "global_rise": errors["poisoned"]["global"] / errors["clean"]["global"] - 1,
                "mse_rise_by_radii": mse_rise_by_radii(clean, model, data.test, attack.centre,
                                                       attack.radius)})
            print(json.dumps({k: rows[-1][k] for k in ("seed", "setting", "region_ratio",
                                                         "global_rise", "mse_rise_by_radii")}),
                  flush=True)
            write_json(out, {"rows": rows})


if __name__ == "__main__":
    main()
