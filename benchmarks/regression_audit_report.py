"""Tables, summary and curve of benchmarks/regression_audit.py, from its per-seed
records (kept apart so the benchmark itself stays about what it measures)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def mean(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else float("nan")


def summarise(attack: list[dict], active: list[dict], settings: dict[str, Any]) -> dict[str, Any]:
    """Means over seeds of the per-seed records; `settings` holds the attack's
    parameters and the match radii (in planted radii), kept in the summary."""
    summary: dict[str, Any] = {"seeds": [r["seed"] for r in attack] or [r["seed"] for r in active],
                               "settings": settings}
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
            name: recount(attack, name, settings["wide_match"]) for name in ("clean", "shell", "no_shell")}
        summary["threshold_sensitivity"] = threshold_sensitivity(attack)
        summary["visible"] = {
            variant: {key: mean([r["visible"][variant][key] for r in attack])
                      for key in ("test_share", "ball_2r_share")}
            for variant in ("shell", "no_shell")}
        if "mse_rise_by_distance" in attack[0]:
            bands = [[r["mse_rise_by_distance"][i] for r in attack] for i in range(4)]
            summary["mse_rise_by_distance"] = {
                "mean": [mean(b) for b in bands], "min": [min(b) for b in bands],
                "max": [max(b) for b in bands]}
        summary["repair"] = {}
        for mode in ("relabel", "drop"):
            # The repair starts from every flagged region of the audit (wherever
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
    """Recall and false regions per audit had a flagged region's centre within
    `match` planted radii of the planted centre counted as finding it."""
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
    (density factor 1), from the regions each audit recorded: a region suspicious
    at the default factor is placed at its located centre, the others at their
    maximisers, and regions merged away at the default are not recounted — so
    rows other than the default are approximate."""
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
    for key, label, colour in (("active", "active learning (error-weighted spread)", "C0"),
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
    settings = summary["settings"]
    match, wide = settings["match"], settings["wide_match"]
    lines = [f"Seeds: {', '.join(map(str, summary['seeds']))}. "
             f"Attack: {json.dumps(settings['attack'])}.", ""]
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
        if "mse_rise_by_distance" in summary:
            b = summary["mse_rise_by_distance"]
            lines += ["", "Where the global rise comes from (with shell): the poisoned model's "
                      "squared-error increase on the test points at each distance from the "
                      "planted centre ÷ the clean model's total squared error (the four add up "
                      "to the relative MSE rise):", "",
                      "| test points at | 0–1 r | 1–2 r | 2–3 r | ≥ 3 r |",
                      "| --- | --- | --- | --- | --- |",
                      "| mean over seeds | " + " | ".join(f"{v:+.3f}" for v in b["mean"]) + " |",
                      "| min … max | " + " | ".join(f"{lo:+.3f} … {hi:+.3f}"
                                                  for lo, hi in zip(b["min"], b["max"])) + " |"]
        lines += ["", f"| audited model | planted regions found (within {match:g} r) | false "
                  f"regions per audit | found, false if within {wide:g} r counts "
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
                  "regions the audits recorded — located centres of the regions suspicious "
                  "at 6, maximisers of the others, regions merged away at 6 not recounted, "
                  "so rows other than 6 are approximate):", "",
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
                  "shell): |model − oracle| on 2-D slices through the flagged region's centre, the "
                  "flagged region circled (radius = density radius):", "",
                  "![audit slices](results/regression_audit_slices.png)"]
    return "\n".join(lines)


def write_docs(summary: dict, docs: Path) -> None:
    """Replace the results section of docs/regression-audit.md (between markers)."""
    page = docs / "regression-audit.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = page.read_text() if page.exists() else f"# Regression audit\n\n{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    page.write_text(f"{head}{start}\n{markdown(summary)}\n{end}{tail}")
