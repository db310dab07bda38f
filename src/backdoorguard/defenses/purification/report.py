"""docs/purification.md from the benchmark's results (benchmarks/purification.py).

Bars (issue 5): with 5 % clean data and default settings, a cell passes when
ASR ≤ 0.10 (regression: asr_at_tol ≤ 0.10) and clean accuracy drops ≤ 3 points
(regression: clean MAE rises ≤ 15 %); the wall time passes when it is ≤ 20 % of
training the model from scratch. ALGORITHMS.md's small setting (mnist5k-small)
asks ASR ≤ 0.05 with clean accuracy within 1 point. A cell whose backdoored
model's attack metric was already ≤ 0.10 (the attack did not take) is shown but
not judged: there was no backdoor to remove.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

STRICT = {"mnist5k-small": (0.05, 0.01)}
TOOK = 0.10  # an attack metric above this before purification: a backdoor to remove
# accuracies are counts over the test set: 0.989 − 0.959 is 30 of 1,000, three points,
# though in floating point it is 0.030000000000000027
ROUNDING = 1e-9


def judged(cell: dict[str, Any]) -> bool:
    """Whether the cell counts: it ran, and its model carried a backdoor."""
    return "skipped" not in cell and _attack(cell["before"]) > TOOK


def cell_bar(cell: dict[str, Any], setting: str) -> bool:
    before, after = cell["before"], cell["after"]
    if before["kind"] == "classification":
        asr_bar, drop_bar = STRICT.get(setting, (0.10, 0.03))
        return after["asr"] <= asr_bar and before["clean_acc"] - after["clean_acc"] <= drop_bar + ROUNDING
    return (after["asr_at_tol"] <= 0.10
            and after["clean_mae"] <= 1.15 * before["clean_mae"])


def verdict(cell: dict[str, Any], setting: str) -> str:
    if not judged(cell):
        return "n/a: the attack did not take"
    return "pass" if cell_bar(cell, setting) else "**miss**"


def _clean(metrics: dict[str, Any]) -> str:
    if metrics["kind"] == "classification":
        return f"{metrics['clean_acc']:.3f}"
    return f"MAE {metrics['clean_mae']:.2f}"


def _attack(metrics: dict[str, Any]) -> float:
    return metrics["asr"] if metrics["kind"] == "classification" else metrics["asr_at_tol"]


def summary_rows(results: dict[str, Any], exclude: tuple[str, ...] = ()) -> list[str]:
    cells = {k: v for k, v in results["cells"].items() if k.split("|")[0] not in exclude}
    methods = sorted({key.rsplit("|", 1)[1] for key in cells})
    lines = ["| method | cells judged | bar met | share | mean DER | time bar met | median time / training |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for method in methods:
        rows = [(key, cell) for key, cell in cells.items()
                if key.rsplit("|", 1)[1] == method and judged(cell)]
        if not rows:
            continue
        passed = sum(cell_bar(cell, key.split("|")[0]) for key, cell in rows)
        ratios = sorted(cell["wall_seconds"] / results["models"][key.rsplit("|", 1)[0]]
                        ["train_seconds"] for key, cell in rows)
        ders = [cell["der"] for _, cell in rows if cell["der"] is not None]
        lines.append(f"| {method} | {len(rows)} | {passed} | {passed / len(rows):.0%} | "
                     f"{mean(ders):.3f} | {sum(r <= 0.2 for r in ratios)} | "
                     f"{ratios[len(ratios) // 2]:.1%} |")
    return lines


def setting_tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    settings: dict[str, list[str]] = {}
    for key in results["models"]:
        settings.setdefault(key.split("|")[0], []).append(key)
    for setting, keys in settings.items():
        first = results["models"][keys[0]]
        lines += [f"### {setting}: {first['dataset']} × {first['model']} "
                  f"{first['model_args'] or ''}".rstrip(), "",
                  "| attack | method | clean before → after | attack before → after | DER | "
                  "bar | wall s | training s | time bar |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for key in keys:
            model = results["models"][key]
            cells = {k: v for k, v in results["cells"].items() if k.rsplit("|", 1)[0] == key}
            if not cells:
                lines.append(f"| {model['attack']} | (not run) | {_clean(model['metrics'])} | "
                             f"{_attack(model['metrics']):.3f} | | | | "
                             f"{model['train_seconds']:.0f} | |")
            for cell_key, cell in cells.items():
                method = cell_key.rsplit("|", 1)[1]
                if "skipped" in cell:
                    lines.append(f"| {model['attack']} | {method} | n/a: {cell['skipped']} "
                                 f"| | | | | {model['train_seconds']:.0f} | |")
                    continue
                before, after = cell["before"], cell["after"]
                ratio = cell["wall_seconds"] / model["train_seconds"]
                der = "" if cell["der"] is None else f"{cell['der']:.3f}"
                lines.append(
                    f"| {model['attack']} | {method} | {_clean(before)} → {_clean(after)} | "
                    f"{_attack(before):.3f} → {_attack(after):.3f} | {der} | "
                    f"{verdict(cell, setting)} | "
                    f"{cell['wall_seconds']:.1f} | {model['train_seconds']:.0f} | "
                    f"{'pass' if ratio <= 0.2 else '**miss**'} ({ratio:.1%}) |")
        lines.append("")
    return lines


def write_page(results: dict[str, Any], page: Path) -> None:
    lines = [
        "# Purification: measured", "",
        "Every purifier with its defaults against backdoored models trained with each data",
        "set's recipe (seed 0, one CPU thread, a machine shared with other jobs), 5 % clean",
        "data (`pipeline.clean_subset`: at least one sample per class). Bars (issue 5):",
        "ASR ≤ 0.10 (regression asr_at_tol ≤ 0.10) with clean accuracy down ≤ 3 points",
        "(regression: clean MAE up ≤ 15 %); mnist5k-small (ALGORITHMS.md's small setting):",
        "ASR ≤ 0.05 within 1 point. Time bar: purification wall time ≤ 20 % of the model's",
        "training time (both measured on this machine, in different runs, so the ratio is",
        "noisy). How each method works and our choices: [purification-methods.md]",
        "(purification-methods.md).", "",
        "Reproduce: `python benchmarks/purification.py --threads 1` (resumable; `--only",
        "'GunPoint|*'` filters cells by SETTING|ATTACK; results in",
        "`docs/results/purification.json`).", "",
    ]
    if results.get("cells"):
        lines += ["## Summary over the issue's grid (the cells run and judged; mnist5k-small "
                  "left out)", "",
                  *summary_rows(results, exclude=tuple(STRICT)), "",
                  "The issue's bars: D3 and SMS each meet the cell bar on ≥ 80 % of cells, and",
                  "their mean DER is at least FT's.", ""]
    lines += ["## Per setting", ""] + setting_tables(results)
    notes = page.with_name("purification-notes.md")
    if notes.exists():
        lines += [notes.read_text()]
    page.write_text("\n".join(lines) + "\n")
