"""Regression audit bars (issue 7) on barrier-option, MLP, several seeds.

Per seed: a clean surrogate and two poisoned ones (localised poisoning with and
without the clean shell), trained with the data set's recipe; the audit (local
error maximisers against the PDE oracle) on all three; the repair of the
poisoned one; and, separately, active learning against random sampling.

    PYTHONPATH=src python benchmarks/regression_audit.py [--seeds 0-9] [--parts attack,active]
        [--cache /tmp/bg-regression-audit] [--threads 1]

Trained models and per-seed results are cached in `--cache`, so an interrupted
run resumes, and seeds can run in separate processes (`--seeds 0-4` and
`--seeds 5-9`) before a last call (`--seeds 0-9`) assembles the report from the
cache. Writes docs/results/regression_audit.json, two pictures in
docs/results/ and the results section of docs/regression-audit.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from backdoorguard.attacks import create_attack
from backdoorguard.attacks.localized import Localized, ball_sample
from backdoorguard.config import TrainConfig
from backdoorguard.core.checkpoint import load_model, save_model, write_json
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import fit, predict
from backdoorguard.core.types import ArrayDataset
from backdoorguard.data import load_dataset, recipe
from backdoorguard.data.options import (FEATURES, RAW_HIGH, RAW_LOW, closed_form_price,
                                        pde_oracle)
from backdoorguard.defenses.audit import ErrorMaximizers
from backdoorguard.defenses.audit.active import ActiveLearning
from backdoorguard.defenses.audit.figures import error_slices_figure
from backdoorguard.defenses.audit.repair import Repair
from backdoorguard.models import create_model

DATASET = "barrier-option"
ATTACK = {"rate": 0.01, "density": 10.0, "shift": 0.004, "shell_ratio": 1.0, "shell_width": 0.5}
AUDIT_BUDGET = 2000
SMALL_BUDGETS = (100, 200, 400)          # how visible each variant is with few calls
ACTIVE_BUDGETS = (500, 1000, 2000, 4000)
REGION_POINTS = 1000
# A flagged maximiser "finds" the planted region when it lies in the attacker's
# footprint: the poisoned ball or the shell around it (1.5 r). The bump a
# poisoned MLP learns spreads further (its error 1.5 r..2 r from the centre is
# still 2-5 × the clean model's), so the report also counts matches within 2 r.
MATCH = 1.0 + ATTACK["shell_width"]
WIDE_MATCH = 2.0
DOCS = Path("docs")
RESULTS = DOCS / "results"
QUICK: dict[str, Any] = {}       # --quick: a smoke test of every code path, not a measurement


def truth(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(closed_form_price(x), dtype=torch.float32)[:, None]


def rmse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x) - y).pow(2).mean().sqrt())


def runtime_for(seed: int, threads: int) -> Runtime:
    return Runtime(seed=seed, device="cpu", threads=threads, progress=False)


def trained(name: str, data: ArrayDataset, seed: int, cache: Path, threads: int) -> torch.nn.Module:
    """The recipe's model trained on `data` (loaded from the cache when there)."""
    folder = cache / f"seed{seed}" / name
    if (folder / "model.json").exists():
        return load_model(folder)[0]
    settings = recipe(DATASET)
    runtime = runtime_for(seed, threads).apply()
    model = create_model(settings["model"], data.task)
    fit(model, data, TrainConfig(**{**settings["train"], **QUICK.get("train", {})}),
        runtime=runtime)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, folder, data.task)
    return model.eval()


def planted(task, seed: int, shell: bool) -> Localized:
    params = {k: v for k, v in ATTACK.items() if k != "rate"}
    return create_attack("localized", task, truth=truth, shell=shell, **params)


def region_errors(models: dict[str, torch.nn.Module], attack: Localized,
                  test: ArrayDataset, seed: int) -> dict[str, Any]:
    """RMSE against the closed form inside the ball, in two shells around it, and
    on the test set, for each model."""
    generator = torch.Generator().manual_seed(seed)
    lo, hi = test.task.input_range
    inside = attack.sample_region(REGION_POINTS, seed)
    rings = {"ring_1_1.5": ball_sample(attack.centre, attack.radius, 1.5 * attack.radius,
                                       REGION_POINTS, lo, hi, generator),
             "ring_1.5_2": ball_sample(attack.centre, 1.5 * attack.radius, 2 * attack.radius,
                                       REGION_POINTS, lo, hi, generator)}
    out: dict[str, Any] = {}
    for name, model in models.items():
        out[name] = {"global": rmse(model, test.x, test.y),
                     "region": rmse(model, inside, truth(inside)),
                     **{k: rmse(model, x, truth(x)) for k, x in rings.items()}}
    return out


def audit_summary(audit, attack: Localized | None, box_width: float) -> dict[str, Any]:
    """Found (a suspicious maximiser inside the planted ball) and false regions."""
    def distance(region) -> float:
        """Distance of a maximiser from the planted centre, in planted radii."""
        if attack is None:
            return float("inf")
        return float((torch.tensor(region["centre"]) - attack.centre).norm()) / attack.radius

    def inside(region) -> bool:
        return distance(region) <= MATCH

    suspicious = [r for r in audit.regions if r["suspicious"]]
    hits = sum(inside(r) for r in suspicious)
    return {"found": bool(hits), "false_regions": len(suspicious) - hits,
            "suspicious": len(suspicious), "oracle_calls": audit.cost.counters["oracle_calls"],
            "seconds": round(audit.cost.seconds, 2),
            "typical_error": audit.details["typical_error"],
            "regions": [{**{k: r[k] for k in ("error", "error_ratio", "density_ratio",
                                               "suspicious")}, "inside": inside(r),
                         "distance_in_radii": distance(r) if attack is not None else None}
                        for r in audit.regions]}


def visible_share(model, test: ArrayDataset, attack: Localized, threshold: float,
                  seed: int) -> dict[str, float]:
    """How much of the test set, and of the ball of radius 2r, has an error above
    the audit's threshold: the area a screening seed can land in and see the attack."""
    generator = torch.Generator().manual_seed(seed)
    around = ball_sample(attack.centre, 0.0, 2 * attack.radius, REGION_POINTS,
                         *test.task.input_range, generator)
    above = (predict(model, test.x) - test.y).abs()[:, 0] > threshold
    near = (predict(model, around) - truth(around)).abs()[:, 0] > threshold
    return {"test_share": float(above.float().mean()), "ball_2r_share": float(near.float().mean())}


def attack_seed(seed: int, cache: Path, threads: int) -> dict[str, Any]:
    """Everything but active learning for one seed (cached as JSON)."""
    record_path = cache / f"seed{seed}" / "attack.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    data = load_dataset(DATASET)
    runtime = runtime_for(seed, threads)
    models = {"clean": trained("clean", data.train, seed, cache, threads)}
    attacks, poisoned = {}, {}
    for variant, shell in (("shell", True), ("no_shell", False)):
        attacks[variant] = planted(data.task, seed, shell)
        poisoned[variant] = attacks[variant].poison(data.train, ATTACK["rate"], seed)
        models[variant] = trained(variant, poisoned[variant], seed, cache, threads)
    attack = attacks["shell"]
    record: dict[str, Any] = {
        "seed": seed, "centre": attack.centre.tolist(), "radius": attack.radius,
        "poisoned": len(poisoned["shell"].poison_index), "shell_points": attack.shell_count,
        "errors": region_errors(models, attack, data.test, seed), "audit": {}, "visibility": {}}
    for name, model in models.items():
        train = data.train if name == "clean" else poisoned[name]
        oracle = pde_oracle()
        audit = ErrorMaximizers(budget=AUDIT_BUDGET).audit(model, train, oracle, runtime=runtime)
        record["audit"][name] = audit_summary(audit, attacks.get(name), 1.0)
        record["audit"][name]["seconds_per_call"] = oracle.seconds_per_call
        if name == "shell":
            record["repair"] = repair_record(model, train, audit, attack, data, runtime, models)
    for name in ("shell", "no_shell"):
        threshold = ErrorMaximizers().error_factor * record["audit"][name]["typical_error"]
        record["visible"] = record.get("visible", {})
        record["visible"][name] = visible_share(models[name], data.test, attacks[name],
                                                threshold, seed)
        record["visibility"][name] = {
            str(budget): audit_summary(ErrorMaximizers(budget=budget).audit(
                models[name], poisoned[name], pde_oracle(), runtime=runtime), attacks[name], 1.0)
            ["found"] for budget in SMALL_BUDGETS}
    write_json(record_path, record)
    return record


def slices_picture(seed: int, cache: Path, threads: int, path: Path) -> None:
    """The audit picture of one seed's poisoned (shell) model, from the cache."""
    data = load_dataset(DATASET)
    attack = planted(data.task, seed, True)
    train = attack.poison(data.train, ATTACK["rate"], seed)
    model = trained("shell", train, seed, cache, threads)
    audit = ErrorMaximizers(budget=AUDIT_BUDGET).audit(model, train, pde_oracle(),
                                                       runtime=runtime_for(seed, threads))
    error_slices_figure(model, pde_oracle(), audit.regions, path, names=FEATURES,
                        raw_box=(RAW_LOW.tolist(), RAW_HIGH.tolist()))


def repair_record(model, train, audit, attack, data, runtime, models) -> dict[str, Any]:
    out = {}
    for mode in ("relabel", "drop"):
        repaired = Repair(mode=mode).repair(model, train, audit, pde_oracle(), runtime=runtime)
        errors = region_errors({"repaired": repaired.model, "clean": models["clean"]}, attack,
                               data.test, runtime.seed)
        changes = {k: v for k, v in repaired.changes.items() if k != "indices"}
        poisoned = set(train.poison_index.tolist())
        hit = len(poisoned & set(repaired.changes["indices"]))
        out[mode] = {"errors": errors["repaired"], "changes": changes,
                     "oracle_calls": repaired.cost.counters["oracle_calls"],
                     "poison_recall": hit / max(len(poisoned), 1),
                     "precision": hit / max(len(repaired.changes["indices"]), 1)}
    return out


def active_seed(seed: int, cache: Path, threads: int) -> dict[str, Any]:
    record_path = cache / f"seed{seed}" / "active.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    data = load_dataset(DATASET)
    runtime = runtime_for(seed, threads).apply()
    settings = recipe(DATASET)

    def factory():
        torch.manual_seed(seed)
        return create_model(settings["model"], data.task)

    def test_rmse(model):
        return rmse(model, data.test.x, data.test.y)

    learner = ActiveLearning()
    pool = data.train.x
    active = learner.run(factory, pool, data.task, pde_oracle(), ACTIVE_BUDGETS, test_rmse,
                         runtime=runtime)
    random = learner.run_random(factory, pool, data.task, pde_oracle(), ACTIVE_BUDGETS,
                                test_rmse, runtime=runtime)
    record = {"seed": seed, "active": active.to_dict(), "random": random.to_dict()}
    (cache / f"seed{seed}").mkdir(parents=True, exist_ok=True)
    write_json(record_path, record)
    return record


# ---------------------------------------------------------------- report

def mean(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else float("nan")


def summarise(attack: list[dict], active: list[dict]) -> dict[str, Any]:
    summary: dict[str, Any] = {"seeds": [r["seed"] for r in attack] or [r["seed"] for r in active]}
    if attack:
        summary["attack"] = {}
        for variant in ("shell", "no_shell"):
            ratio = [r["errors"][variant]["region"] / r["errors"]["clean"]["region"] for r in attack]
            rise = [r["errors"][variant]["global"] / r["errors"]["clean"]["global"] - 1
                    for r in attack]
            ring = [r["errors"][variant]["ring_1_1.5"] / r["errors"]["clean"]["ring_1_1.5"]
                    for r in attack]
            summary["attack"][variant] = {
                "region_ratio_mean": mean(ratio), "region_ratio_min": min(ratio),
                "global_rise_mean": mean(rise), "global_rise_max": max(rise),
                "ring_ratio_mean": mean(ring),
                "found_at_budget": {b: mean([r["visibility"][variant][b] for r in attack])
                                    for b in attack[0]["visibility"][variant]}}
        summary["audit"] = {
            name: {"recall": mean([r["audit"][name]["found"] for r in attack]) if name != "clean"
                   else None,
                   "false_regions_mean": mean([r["audit"][name]["false_regions"] for r in attack]),
                   "oracle_calls_max": max(r["audit"][name]["oracle_calls"] for r in attack),
                   "seconds_mean": mean([r["audit"][name]["seconds"] for r in attack])}
            for name in ("clean", "shell", "no_shell")}
        summary["wide_match"] = {
            name: recount(attack, name, WIDE_MATCH) for name in ("clean", "shell", "no_shell")}
        summary["threshold_sensitivity"] = threshold_sensitivity(attack)
        summary["visible"] = {
            variant: {key: mean([r["visible"][variant][key] for r in attack])
                      for key in ("test_share", "ball_2r_share")}
            for variant in ("shell", "no_shell")}
        summary["repair"] = {}
        for mode in ("relabel", "drop"):
            # The repair starts from every flagged maximiser of the audit (wherever
            # the match criterion puts it), so it is reported over every seed.
            ratios = [r["repair"][mode]["errors"]["region"] / r["errors"]["clean"]["region"]
                      for r in attack]
            summary["repair"][mode] = {
                "region_ratio_mean": mean(ratios), "region_ratio_max": max(ratios, default=None),
                "seeds": len(ratios), "within_2x": sum(v <= 2.0 for v in ratios),
                "ratios": ratios,
                "precision_mean": mean([r["repair"][mode]["precision"] for r in attack]),
                "global_rise_mean": mean([r["repair"][mode]["errors"]["global"]
                                          / r["errors"]["clean"]["global"] - 1 for r in attack]),
                "oracle_calls_mean": mean([r["repair"][mode]["oracle_calls"] for r in attack]),
                "poison_recall_mean": mean([r["repair"][mode]["poison_recall"] for r in attack])}
    if active:
        budgets = active[0]["active"]["calls"]
        summary["active"] = {
            "budgets": budgets,
            "active_rmse_mean": [mean([r["active"]["rmse"][i] for r in active])
                                 for i in range(len(budgets))],
            "random_rmse_mean": [mean([r["random"]["rmse"][i] for r in active])
                                 for i in range(len(budgets))],
            "active_wins": [sum(r["active"]["rmse"][i] < r["random"]["rmse"][i] for r in active)
                            for i in range(len(budgets))]}
    return summary


def recount(attack: list[dict], name: str, match: float) -> dict[str, float]:
    """Recall and false regions per audit had a flagged maximiser within `match`
    planted radii of the centre counted as finding the region."""
    found, false = [], []
    for r in attack:
        flagged = [g for g in r["audit"][name]["regions"] if g["suspicious"]]
        near = [g["distance_in_radii"] is not None and g["distance_in_radii"] <= match
                for g in flagged]
        found.append(any(near))
        false.append(len(flagged) - sum(near))
    return {"recall": mean(found) if name != "clean" else None,
            "false_regions_mean": mean(false)}


def threshold_sensitivity(attack: list[dict], factors=(4.0, 5.0, 6.0, 8.0, 10.0)) -> dict:
    """Recall and false regions per audit had the error factor been different
    (density factor 1), from the maximisers each audit recorded."""
    out = {}
    for factor in factors:
        row = {}
        for name in ("clean", "shell", "no_shell"):
            found, false = [], []
            for r in attack:
                flagged = [g for g in r["audit"][name]["regions"]
                           if g["error_ratio"] >= factor and g["density_ratio"] >= 1.0]
                found.append(any(g["inside"] for g in flagged))
                false.append(sum(not g["inside"] for g in flagged))
            row[name] = {"recall": mean(found), "false_regions_mean": mean(false)}
        out[str(factor)] = row
    return out


def active_figure(summary: dict, active: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    budgets = summary["active"]["budgets"]
    for key, label, colour in (("active", "active learning (error maximisers)", "C0"),
                               ("random", "random sampling", "C1")):
        for r in active:
            ax.plot(budgets, r[key]["rmse"], color=colour, alpha=0.15, lw=0.8)
        ax.plot(budgets, summary["active"][f"{key}_rmse_mean"], color=colour, lw=2, marker="o",
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("test RMSE (price / strike)")
    ax.set_title(f"barrier-option, MLP, {len(active)} seeds (thin: each seed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summary: dict) -> str:
    lines = [f"Seeds: {', '.join(map(str, summary['seeds']))}. Attack: {json.dumps(ATTACK)}.", ""]
    if "attack" in summary:
        lines += ["| attack | in-region error ÷ clean's (mean, min) | global RMSE rise (mean, max) "
                  "| error in the shell r..1.5r ÷ clean's | found by an audit "
                  "of 100 / 200 / 400 calls |", "| --- | --- | --- | --- | --- |"]
        for variant, label in (("shell", "with shell"), ("no_shell", "without shell")):
            a = summary["attack"][variant]
            found = " / ".join(f"{v:.0%}" for v in a["found_at_budget"].values())
            lines.append(f"| {label} | {a['region_ratio_mean']:.1f}×, {a['region_ratio_min']:.1f}× "
                         f"| {a['global_rise_mean']:+.1%}, {a['global_rise_max']:+.1%} "
                         f"| {a['ring_ratio_mean']:.1f}× | {found} |")
        lines += ["", f"| audited model | planted regions found (within {MATCH:g} r) | false "
                  f"regions per audit | found, false if within {WIDE_MATCH:g} r counts "
                  "| oracle calls (max) | seconds per audit |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, label in (("clean", "clean"), ("shell", "poisoned, with shell"),
                            ("no_shell", "poisoned, without shell")):
            a, w = summary["audit"][name], summary["wide_match"][name]
            recall = "—" if a["recall"] is None else f"{a['recall']:.0%}"
            wide = "—" if w["recall"] is None else f"{w['recall']:.0%}"
            lines.append(f"| {label} | {recall} | {a['false_regions_mean']:.2f} "
                         f"| {wide}, {w['false_regions_mean']:.2f} "
                         f"| {a['oracle_calls_max']} | {a['seconds_mean']:.1f} |")
        lines += ["", "Had the error factor been different (density factor 1; from the "
                  "maximisers the audits recorded):", "",
                  "| error factor | recall (with shell) | recall (without) | false regions "
                  "per audit: clean / with shell / without |", "| --- | --- | --- | --- |"]
        for factor, row in summary["threshold_sensitivity"].items():
            lines.append(f"| {float(factor):g} | {row['shell']['recall']:.0%} "
                         f"| {row['no_shell']['recall']:.0%} "
                         f"| {row['clean']['false_regions_mean']:.2f} / "
                         f"{row['shell']['false_regions_mean']:.2f} / "
                         f"{row['no_shell']['false_regions_mean']:.2f} |")
        v = summary["visible"]
        lines += ["", "How visible each variant is — share of points whose error exceeds the "
                  "audit's threshold (6 × typical error):", "",
                  "| attack | test set | ball of radius 2r around the centre |",
                  "| --- | --- | --- |",
                  f"| with shell | {v['shell']['test_share']:.2%} | {v['shell']['ball_2r_share']:.1%} |",
                  f"| without shell | {v['no_shell']['test_share']:.2%} "
                  f"| {v['no_shell']['ball_2r_share']:.1%} |"]
        lines += ["", "Repair of the poisoned model (with shell), from every maximiser its audit "
                  "flagged, every seed:", "",
                  "| repair | in-region error ÷ clean's (mean, max) | seeds within 2× "
                  "| global RMSE vs clean | oracle calls | poisoned labels found (precision) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for mode, a in summary["repair"].items():
            worst = "—" if a["region_ratio_max"] is None else f"{a['region_ratio_max']:.2f}×"
            lines.append(f"| {mode} | {a['region_ratio_mean']:.2f}×, {worst} "
                         f"| {a['within_2x']} of {a['seeds']} "
                         f"| {a['global_rise_mean']:+.1%} | {a['oracle_calls_mean']:.0f} "
                         f"| {a['poison_recall_mean']:.0%} ({a['precision_mean']:.0%}) |")
    if "active" in summary:
        a = summary["active"]
        n = len(summary["seeds"])
        lines += ["", "| oracle calls | " + " | ".join(map(str, a["budgets"])) + " |",
                  "| --- |" + " --- |" * len(a["budgets"]),
                  "| active learning, mean test RMSE | "
                  + " | ".join(f"{v:.5f}" for v in a["active_rmse_mean"]) + " |",
                  "| random sampling, mean test RMSE | "
                  + " | ".join(f"{v:.5f}" for v in a["random_rmse_mean"]) + " |",
                  f"| seeds where active is lower (of {n}) | "
                  + " | ".join(map(str, a["active_wins"])) + " |",
                  "", "![active learning vs random](results/regression_audit_active.png)"]
    if "attack" in summary:
        lines += ["", f"The audit picture of seed {summary['seeds'][0]}'s poisoned model (with "
                  "shell): |model − oracle| on 2-D slices through the flagged maximiser, the "
                  "flagged region circled (radius = density radius):", "",
                  "![audit slices](results/regression_audit_slices.png)"]
    return "\n".join(lines)


def write_docs(summary: dict) -> None:
    page = DOCS / "regression-audit.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = page.read_text() if page.exists() else f"# Regression audit\n\n{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    page.write_text(f"{head}{start}\n{markdown(summary)}\n{end}{tail}")


def seed_list(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--parts", default="attack,active")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bg-regression-audit"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-report", action="store_true", help="only fill the cache")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 epoch, small budgets, nothing written to docs/")
    args = parser.parse_args()
    if args.quick:
        global AUDIT_BUDGET, SMALL_BUDGETS, ACTIVE_BUDGETS, RESULTS, DOCS
        QUICK["train"] = {"epochs": 1}
        AUDIT_BUDGET, SMALL_BUDGETS, ACTIVE_BUDGETS = 300, (100,), (300, 450)
        DOCS = RESULTS = args.cache / "docs"
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    seeds = seed_list(args.seeds)
    attack = [attack_seed(s, args.cache, args.threads) for s in seeds] if "attack" in parts else []
    active = [active_seed(s, args.cache, args.threads) for s in seeds] if "active" in parts else []
    if args.no_report:
        return
    summary = summarise(attack, active)
    if attack:
        slices_picture(seeds[0], args.cache, args.threads, RESULTS / "regression_audit_slices.png")
    if active:
        active_figure(summary, active, RESULTS / "regression_audit_active.png")
    write_json(RESULTS / "regression_audit.json",
               {"summary": summary, "attack": attack, "active": active,
                "settings": {"attack": ATTACK, "audit_budget": AUDIT_BUDGET,
                             "active_budgets": list(ACTIVE_BUDGETS)}})
    write_docs(summary)
    print(markdown(summary))


if __name__ == "__main__":
    main()
