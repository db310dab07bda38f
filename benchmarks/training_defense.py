"""Training-time defenses: plain training, ABL and E2ABL on poisoned data.

Per cell (data set × attack, 10 % poisoning, target 0; SIG poisons the share of
the target class it needs) three models are trained one after the other in one
process with the data set's recipe and seed 0: plain training on the poisoned
set, ABL and E2ABL (their default parameters). Each cell's attack is the attack
zoo's bar setting (benchmarks/attacks.py: `PARAMS`, `SIG_SHARE`). Per data set
one plain model on clean data gives the clean-accuracy reference of the bars.
Results are cached in the JSON file (one entry per data set, attack and method),
so an interrupted run resumes; `--fresh` starts over; `--rerun` runs the chosen
cells and methods again (after a default changed), keeping the rest.

    python benchmarks/training_defense.py [--cells digits 'ucr:GunPoint|badnets'] [--threads 1]

A cell filter is a data set name, or `dataset|attack`. Writes
docs/results/training_defense.json and docs/training-defense.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from pathlib import Path

import torch

from backdoorguard.core.metrics import isolation
from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset
from backdoorguard.pipeline import resolve, train_run

from attacks import cell_config

RESULTS = Path("docs/results/training_defense.json")
# this benchmark process (its start and pid): rows from one process were timed side by side
PROCESS = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}-{os.getpid()}"
PAGE = Path("docs/training-defense.md")

IMAGE_ATTACKS = ["badnets", "blended", "wanet", "sig"]
SERIES_ATTACKS = ["badnets", "blended", "powerline", "wanet"]
# cheap data sets first: the grid is run in this order
GRID = {"digits": IMAGE_ATTACKS, "ucr:GunPoint": SERIES_ATTACKS,
        "ucr:BasicMotions": SERIES_ATTACKS, "ucr:JapaneseVowels": SERIES_ATTACKS,
        "mnist5k": IMAGE_ATTACKS}
METHODS = ["plain", "abl", "e2abl"]
RATE, TARGET = 0.1, 0
SERIES_NAMES = {"badnets": "static", "wanet": "time-warp"}
# Grid cells whose attack is another attack-zoo cell's: on mnist5k the SIG that
# passes the attack bar poisons half of the target class (`sig-half`).
ZOO_ATTACK = {("mnist5k", "sig"): "sig-half"}
# JapaneseVowels is not in the attack zoo. Its time warp follows GunPoint's (a
# local warp, k = 32 at the default strength) as far as its 29 steps allow: one
# control point per step.
GRID_PARAMS = {("ucr:JapaneseVowels", "wanet"): {"k": 29}}


@functools.cache
def attack_config(dataset: str, attack: str) -> AttackConfig:
    """The attack zoo's bar setting for this cell: its trigger parameters and,
    for SIG, its share of the target class."""
    config = cell_config(dataset, ZOO_ATTACK.get((dataset, attack), attack))
    params = GRID_PARAMS.get((dataset, attack), config.params)
    return config.model_copy(update={"params": dict(params)})


def variant(method: str) -> tuple[str, dict]:
    """`e2abl:trap_pooling=max,trap_steps=3` -> ("e2abl", {"trap_pooling": "max", ...})."""
    import yaml

    name, _, params = method.partition(":")
    pairs = [p.partition("=") for p in params.split(",") if p]
    return name, {key: yaml.safe_load(value) for key, _, value in pairs}


def run_one(dataset: str, attack: str | None, method: str, runtime: Runtime) -> dict:
    config = attack_config(dataset, attack) if attack else None
    name, params = variant(method)
    run = TrainRun(dataset=dataset, attack=config, defense=None if name == "plain" else name,
                   defense_args=params)
    start = time.perf_counter()
    result = train_run(run, runtime, resolve(run))
    row = {"dataset": dataset, "attack": attack, "method": method,
           "model": result.resolved.model_name,
           "poison_rate": config.poison_rate if config else 0.0,
           "attack_settings": config.params if config else {},
           "attack_spec": result.attack.spec()["params"] if result.attack else None,
           "metrics": result.metrics.to_dict(),
           "train_seconds": round(result.history.seconds, 2),
           "passes": round(result.history.passes, 3),
           "seconds": round(time.perf_counter() - start, 1),
           "date": time.strftime("%Y-%m-%d", time.gmtime()), "process": PROCESS}
    if result.trained is not None:
        row["isolated"] = len(result.trained.isolated)
        row.update(isolation(result.trained.isolated, result.train_data))
        row["details"] = {k: v for k, v in result.trained.to_dict()["details"].items()
                          if k not in ("history", "rounds")}
    return row


def chosen(dataset: str, attack: str | None, filters: list[str]) -> bool:
    if not filters:
        return True
    return any(f == dataset or f == f"{dataset}|{attack or 'clean'}" for f in filters)


# ---------------------------------------------------------------- the page

def passes_bar(e2abl: dict, clean_acc: float | None, plain: dict) -> bool | None:
    """None when there is nothing to judge: no clean reference, or the attack did
    not take under plain training (ASR < 0.5), so a low ASR proves nothing."""
    if clean_acc is None or plain["metrics"]["asr"] < 0.5:
        return None
    m = e2abl["metrics"]
    return m["asr"] <= 0.05 and m["clean_acc"] >= clean_acc - 0.02


def side_by_side(a: dict, b: dict) -> bool:
    """Two rows timed in one process, one after the other: only their seconds compare
    on a shared machine. Rows carry the process that ran them; earlier rows only
    their date (then the same day counts, as it did when they were written)."""
    if "process" in a or "process" in b:
        return a.get("process") == b.get("process")
    return a.get("date") == b.get("date")


def current(row: dict) -> bool:
    """The row was trained with its cell's attack as the grid sets it now (rows
    from before the settings were stored had the attack's defaults)."""
    config = attack_config(row["dataset"], row["attack"])
    return (row.get("attack_settings", {}) == config.params
            and abs(row["poison_rate"] - config.poison_rate) < 1e-9)


def cell_rows(results: dict) -> list[dict]:
    """One row per cell with any stored run; `runs` holds only the methods run
    with the cell's current attack, `stale` the methods stored from an earlier one."""
    rows = []
    for dataset, attacks in GRID.items():
        clean = results.get(f"{dataset}|clean|plain")
        for attack in attacks:
            stored = {m: results.get(f"{dataset}|{attack}|{m}") for m in METHODS}
            if not any(stored.values()):
                continue
            runs = {m: row for m, row in stored.items() if row and current(row)}
            rows.append({"dataset": dataset, "attack": attack, "runs": runs,
                         "stale": [m for m, row in stored.items() if row and m not in runs],
                         "clean_acc": clean["metrics"]["clean_acc"] if clean else None})
    return rows


def settings_lines() -> list[str]:
    """The grid cells whose attack is not the attack's defaults at 10 %."""
    lines = []
    for dataset, attacks in GRID.items():
        for attack in attacks:
            config = attack_config(dataset, attack)
            if not config.params and config.poison_rate == RATE:
                continue
            zoo = ZOO_ATTACK.get((dataset, attack))
            source = ("not in the attack zoo" if (dataset, attack) in GRID_PARAMS
                      else f"the zoo's {zoo}" if zoo else "")
            source = f" ({source})" if source else ""
            params = json.dumps(config.params, sort_keys=True) if config.params else "defaults"
            lines.append(f"- {dataset} {attack}{source}: poison rate {config.poison_rate:.3f}, "
                         f"`{params}`")
    return lines


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ratio_text(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cost_line(e2abl: float | None, abl: float | None) -> str:
    if e2abl is None:
        return ("- E2ABL cost vs plain (bar ≤ 1.5×): not measured side by side in these cells "
                "(see the notes below).")
    return (f"- E2ABL median cost {e2abl:.2f}× plain over the cells run side by side "
            f"(bar ≤ 1.5×): {'pass' if e2abl <= 1.5 else '**miss**'}; ABL {ratio_text(abl)}.")


def write_page(results: dict) -> None:
    rows = cell_rows(results)
    lines = [
        "# Training-time defenses: plain training, ABL, E2ABL", "",
        "A poisoned training set (10 % poisoning, target class 0; SIG poisons the share of the",
        "target class it needs), the data set's recipe (model and training settings), seed 0,",
        "one CPU thread. Per cell three models: plain training, ABL and E2ABL with their",
        "defaults (docs/abl.md, docs/e2abl.md), one after the other in one process unless the",
        "notes below say otherwise.",
        "*clean ref* is plain training on clean data. Precision and recall: of the samples",
        "each method flagged (ABL: the 1 % it isolates; E2ABL: its final suspects, up to",
        "2 × 10 % of the set by design, so its precision is at most about 0.5) against the",
        "true poison. Cost: the method's training seconds over plain training's in the same",
        "cell, shown only when both ran the same day (side by side on a shared machine: read",
        "ratios, not seconds); — when they did not.", "",
        "Bar (issue 6): E2ABL ASR ≤ 0.05 with clean accuracy ≥ clean ref − 0.02 on ≥ 80 % of",
        "cells; E2ABL's mean ASR ≤ ABL's and mean clean accuracy ≥ ABL's; E2ABL cost ≤ 1.5×.",
        "",
        "Reproduce: `python benchmarks/training_defense.py --threads 1` (resumes from",
        "`docs/results/training_defense.json`; `--cells digits 'ucr:GunPoint|badnets'` runs",
        "a part of the grid; `--rerun` trains stored cells again).", "",
        "Attack settings: the attack zoo's bar settings (benchmarks/attacks.py, docs/attacks.md);",
        "the cells not at the attack's defaults with 10 % poisoning:", "",
        *settings_lines(), ""]
    if rows:
        lines += ["| data set | attack | clean ref | plain acc / ASR | ABL acc / ASR | ABL prec / rec "
                  "| E2ABL acc / ASR | E2ABL prec / rec | cost ABL | cost E2ABL | E2ABL bar |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    ratios = {"abl": [], "e2abl": []}
    verdicts = []
    for row in rows:
        runs = row["runs"]
        pending = [m for m in METHODS if m not in runs]
        ok = None if pending else passes_bar(runs["e2abl"], row["clean_acc"], runs["plain"])
        if not pending:
            verdicts.append(ok)
        cells = []
        for m in METHODS:
            if m not in runs:  # not run, or run with an earlier attack setting
                cells += ["—"] if m == "plain" else ["—", "—"]
                continue
            metrics = runs[m]["metrics"]
            cells.append(f"{metrics['clean_acc']:.3f} / {metrics['asr']:.3f}")
            if m != "plain":
                cells.append(f"{fmt(runs[m].get('precision'), 2)} / {fmt(runs[m].get('recall'), 2)}")
        cost = {}
        for m in ("abl", "e2abl"):
            if m in runs and "plain" in runs and side_by_side(runs[m], runs["plain"]):
                cost[m] = runs[m]["train_seconds"] / max(runs["plain"]["train_seconds"], 1e-9)
                ratios[m].append(cost[m])
        series = load_dataset(row["dataset"]).task.modality == "series"
        name = SERIES_NAMES.get(row["attack"], row["attack"]) if series else row["attack"]
        verdict = (f"pending ({', '.join(pending)}: "
                   f"{'earlier attack setting' if set(pending) <= set(row['stale']) else 'not run'})"
                   if pending
                   else "n/a (attack did not take)" if ok is None and row["clean_acc"] is not None
                   else "—" if ok is None else "pass" if ok else "**miss**")
        lines.append(f"| {row['dataset']} | {name} | {fmt(row['clean_acc'])} | " + " | ".join(cells)
                     + f" | {ratio_text(cost.get('abl'))} | {ratio_text(cost.get('e2abl'))} | {verdict} |")
    complete = [r for r in rows if all(m in r["runs"] for m in METHODS)]
    if complete:
        means = {m: (statistics.mean(r["runs"][m]["metrics"]["clean_acc"] for r in complete),
                     statistics.mean(r["runs"][m]["metrics"]["asr"] for r in complete))
                 for m in METHODS}
        judged = [v for v in verdicts if v is not None]
        lines += ["", f"## Summary over the {len(complete)} cells run with all three methods", "",
                  "| method | mean clean acc | mean ASR | median cost vs plain |",
                  "| --- | --- | --- | --- |"]
        for m in METHODS:
            ratio = "1.00×" if m == "plain" else ratio_text(median(ratios[m]))
            lines.append(f"| {m} | {means[m][0]:.3f} | {means[m][1]:.3f} | {ratio} |")
        share = sum(judged) / len(judged) if judged else 0.0
        lines += ["", "Bars on these cells:", "",
                  f"- E2ABL ASR ≤ 0.05 within 2 points of clean accuracy: {sum(judged)} of "
                  f"{len(judged)} cells ({share:.0%}; bar ≥ 80 %): "
                  f"{'pass' if share >= 0.8 else '**miss**'}.",
                  f"- E2ABL mean ASR {means['e2abl'][1]:.3f} vs ABL {means['abl'][1]:.3f}: "
                  f"{'pass' if means['e2abl'][1] <= means['abl'][1] else '**miss**'}; mean clean "
                  f"accuracy {means['e2abl'][0]:.3f} vs ABL {means['abl'][0]:.3f}: "
                  f"{'pass' if means['e2abl'][0] >= means['abl'][0] else '**miss**'}.",
                  cost_line(median(ratios["e2abl"]), median(ratios["abl"]))]
    extras = sorted(k for k in results if ":" in k.split("|")[2])
    if extras:
        lines += ["", "## Variants (E2ABL with other parameters, same cells)", "",
                  "Run in separate processes from the cells above (no side-by-side cost). "
                  "The earlier defaults are the variant",
                  "`trap_steps=1,high_loss_share=0,unlearn_recovered=false`.", "",
                  "| data set | attack | variant | clean acc / ASR | precision / recall |",
                  "| --- | --- | --- | --- | --- |"]
        for key in extras:
            row = results[key]
            # a variant run with an earlier attack setting than the cell's current one
            earlier = "" if current(row) else " (earlier attack setting)"
            lines.append(f"| {row['dataset']} | {row['attack']}{earlier} | `{row['method']}` | "
                         f"{row['metrics']['clean_acc']:.3f} / {row['metrics']['asr']:.3f} | "
                         f"{fmt(row.get('precision'), 2)} / {fmt(row.get('recall'), 2)} |")
    runs = {(r["dataset"], r["attack"]): r["runs"] for r in rows}
    missing = [f"{d}|{a}" for d, attacks in GRID.items() for a in attacks
               if not all(m in runs.get((d, a), {}) for m in METHODS)]
    if missing:
        lines += ["", f"Not run yet with the current attack settings, in part or in full "
                  f"({len(missing)} cells): " + ", ".join(f"`{c}`" for c in missing) + "."]
    notes = Path("docs/training-defense-notes.md")
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    PAGE.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Training-time defense grid")
    parser.add_argument("--cells", nargs="*", default=[], help="data set or dataset|attack")
    parser.add_argument("--methods", nargs="*", default=METHODS,
                        help="plain, abl, e2abl, or a variant such as e2abl:trap_pooling=max")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="start over: forget every stored cell")
    parser.add_argument("--rerun", action="store_true",
                        help="run the chosen cells and methods again even if stored (after a "
                             "default changed); other stored cells are kept")
    parser.add_argument("--page-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtime = Runtime(seed=0, device="cpu", threads=args.threads, progress=False)
    results = {} if args.fresh or not RESULTS.exists() else json.loads(RESULTS.read_text())
    if not args.page_only:
        for dataset, attacks in GRID.items():
            for attack in [None] + attacks:
                if not chosen(dataset, attack, args.cells):
                    continue
                for method in (["plain"] if attack is None else args.methods):
                    key = f"{dataset}|{attack or 'clean'}|{method}"
                    # --rerun: only the methods asked for (not the clean reference
                    # that a data-set filter also selects)
                    if key in results and not (args.rerun and method in args.methods):
                        continue
                    results[key] = run_one(dataset, attack, method, runtime)
                    print(key, {k: results[key]["metrics"].get(k) for k in ("clean_acc", "asr")},
                          results[key].get("precision"), results[key]["train_seconds"], flush=True)
                    # re-read before writing: another process may be running other cells
                    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
                    results = {**saved, **results}
                    RESULTS.parent.mkdir(parents=True, exist_ok=True)
                    partial = RESULTS.with_suffix(f".{os.getpid()}.tmp")
                    partial.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
                    os.replace(partial, RESULTS)
    write_page(results)


if __name__ == "__main__":
    main()
