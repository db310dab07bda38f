"""`backdoorguard report`: what a results database says, as one self-contained
HTML page (pictures embedded as base64 PNG, no scripts, no external files), or
as CSV / JSON exports.

The page has, per setting (data set × model): mean ± std over seeds of every
metric, per defense family; a scatter of the clean metric against the attack
metric per defense; ROC curves of the detectors (clean models against
backdoored ones, when the grid has both); reversed triggers (when detections
left them as artifacts); then the cost of every method and the failed cells.

The report depends only on the stored results, in a fixed order, so the same
results give the same bytes. Wall times are the one exception: `timings=False`
leaves them out (costs then show passes over the data only), which is how two
runs of one grid are compared.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .store import Row, Store

FORMATS = ("html", "csv", "json")
MODEL_FAMILIES = ("none", "purification", "training")
MODEL_METRICS = ("clean_acc", "asr", "robust_acc", "der", "clean_drop", "clean_mae",
                 "clean_rmse", "target_error", "true_error", "asr_at_tol",
                 "clean_error_change", "true_error_reduction", "n_isolated", "precision",
                 "recall")
DETECTION_METRICS = ("score", "threshold", "flagged", "correct", "target_found")
AUDIT_METRICS = ("n_flagged", "n_regions", "precision", "recall", "suspicion_auroc")
SKIPPED_METRICS = ("n_test", "n_triggered", "tol")


def _order(label: str) -> tuple[int, str]:
    """`none` first, the rest alphabetically."""
    return (0 if label == "none" else 1, label)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


# ---------------------------------------------------------------- grouping

def by_setting(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    settings: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        settings[(row.labels["dataset"], row.labels["model"])].append(row)
    return dict(sorted(settings.items()))


def summarise(rows: list[Row], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """One entry per (attack, defense): seeds and mean/std of each metric."""
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row.labels["attack"], row.labels["defense"], row.family)].append(row)
    extra = sorted({k for row in rows for k in row.metrics if k.startswith("details.")})
    out = []
    for (attack, defense, family), members in sorted(
            groups.items(), key=lambda item: (_order(item[0][0]), _order(item[0][1]))):
        entry: dict[str, Any] = {"attack": attack, "defense": defense, "family": family,
                                 "seeds": sorted(r.seed for r in members), "metrics": {}}
        for name in (*metrics, *extra):
            values = [v for r in members if (v := _number(r.metrics.get(name))) is not None]
            if values:
                mean, std = mean_std(values)
                entry["metrics"][name] = {"mean": mean, "std": std, "n": len(values)}
        out.append(entry)
    return out


def roc_stats(rows: list[Row]) -> list[dict[str, Any]]:
    """Per detector: clean models (attack none) against backdoored ones."""
    from sklearn.metrics import roc_curve

    from ..core.metrics import auroc, tpr_at_fpr

    by_detector: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_detector[row.labels["defense"]].append(row)
    out = []
    for detector, members in sorted(by_detector.items()):
        members = [r for r in members if _number(r.metrics.get("score")) is not None]
        truth = [r.config["attack"] is not None for r in members]
        scores = [r.metrics["score"] for r in members]
        entry: dict[str, Any] = {"detector": detector, "clean": truth.count(False),
                                 "backdoored": truth.count(True),
                                 "accuracy": statistics.fmean(
                                     [r.metrics.get("correct", 0.0) for r in members])
                                 if members else None}
        if all(truth) or not any(truth):
            out.append(entry)
            continue
        fpr, tpr, _ = roc_curve(truth, scores)
        entry.update(auroc=auroc(scores, truth), tpr_at_5_fpr=tpr_at_fpr(scores, truth, 0.05),
                     fpr=[float(v) for v in fpr], tpr=[float(v) for v in tpr],
                     per_attack={})
        for attack in sorted({r.labels["attack"] for r in members
                              if r.config["attack"] is not None}):
            chosen = [(s, t) for s, t, r in zip(scores, truth, members)
                      if not t or r.labels["attack"] == attack]
            entry["per_attack"][attack] = auroc([s for s, _ in chosen], [t for _, t in chosen])
        out.append(entry)
    return out


def costs(rows: list[Row], models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean cost per method: the defenses' own, and plain training of the shared models."""
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.family != "none":
            per[row.labels["defense"]].append(row.cost)
    per_model = [m["cost"] for m in models.values()]
    out = []
    if per_model:
        out.append(_cost_entry("plain training (shared models)", "training", per_model))
    families = {row.labels["defense"]: row.family for row in rows}
    for method in sorted(per):
        out.append(_cost_entry(method, families[method], per[method]))
    return out


def _cost_entry(method: str, family: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [c["seconds"] for c in items if _number(c.get("seconds")) is not None]
    passes = [c["passes"] for c in items if _number(c.get("passes")) is not None]
    return {"method": method, "family": family, "runs": len(items),
            "seconds": statistics.fmean(seconds) if seconds else None,
            "passes": statistics.fmean(passes) if passes else None}


# ---------------------------------------------------------------- the data behind every format

def collect(store: Store, timings: bool = True) -> dict[str, Any]:
    rows = store.rows()
    done = [r for r in rows if r.status == "done"]
    models = store.model_rows()
    settings = []
    for (dataset, model), members in by_setting(done).items():
        settings.append({
            "dataset": dataset, "model": model,
            "models": summarise([r for r in members if r.family in MODEL_FAMILIES],
                                MODEL_METRICS),
            "detection": summarise([r for r in members if r.family == "detection"],
                                   DETECTION_METRICS),
            "audit": summarise([r for r in members if r.family == "audit"], AUDIT_METRICS),
            "roc": roc_stats([r for r in members if r.family == "detection"]),
        })
    method_costs = costs(done, models)
    if not timings:
        for entry in method_costs:
            entry.pop("seconds")
    versions = sorted({json.dumps(r.versions, sort_keys=True) for r in done if r.versions})
    return {"format": "backdoorguard.report/1",
            "summary": {"cells": len(rows), "done": len(done), "failed": len(rows) - len(done),
                        "models": len(models), "versions": [json.loads(v) for v in versions]},
            "settings": settings, "costs": method_costs,
            "failed": [{"labels": r.labels, "seed": r.seed, "key": r.key, "attempts": r.attempts,
                        "error": (r.error or "").splitlines()[0] if r.error else ""}
                       for r in rows if r.status == "failed"],
            "cells": [cell_record(r, timings) for r in rows]}


def cell_record(row: Row, timings: bool) -> dict[str, Any]:
    record = {"key": row.key, "status": row.status, "family": row.family, **row.labels,
              "seed": row.seed, "model_key": row.model_key, "config": row.config,
              "metrics": row.metrics, "baseline": row.baseline, "result": row.result,
              "cost": dict(row.cost), "artifacts": row.artifacts, "versions": row.versions,
              "error": row.error, "attempts": row.attempts}
    if timings:
        record.update(timings=row.timings, finished=row.finished)
    else:
        record["cost"].pop("seconds", None)
    return record


# ---------------------------------------------------------------- formats

def render_report(store: Store, format: str, *, timings: bool = True) -> str:
    data = collect(store, timings)
    if format == "json":
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n"
    if format == "csv":
        return to_csv(data["cells"])
    from .page import page

    return page(data, store, timings)


def write_report(db: str | Path, out: str | Path, format: str = "html", *,
                 timings: bool = True) -> str:
    """Render the report of `db`; write it to `out` atomically (`-`: return it only)."""
    from ..errors import BadInput

    if format not in FORMATS:
        raise BadInput(f"unknown report format {format!r}; allowed: {', '.join(FORMATS)}")
    out = Path(out)
    if str(out) != "-":
        if not out.resolve().parent.is_dir():
            raise BadInput(f"cannot write {str(out)!r}: its folder does not exist")
        if out.is_dir():
            raise BadInput(f"output {str(out)!r} is a directory")
    with Store(db) as store:
        text = render_report(store, format, timings=timings)
    if str(out) != "-":
        _write_atomically(out, text)
    return text


def _write_atomically(path: Path, text: str) -> None:
    import os
    import tempfile

    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                   dir=path.resolve().parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_csv(cells: list[dict[str, Any]]) -> str:
    """One line per cell: labels, status, every metric, cost, the error's first line."""
    metric_names = sorted({k for c in cells for k, v in c["metrics"].items()
                           if _number(v) is not None})
    cost_names = sorted({k for c in cells for k, v in c["cost"].items()
                         if _number(v) is not None})
    columns = ["key", "status", "family", "dataset", "model", "attack", "defense", "seed",
               *metric_names, *(f"cost.{k}" for k in cost_names), "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for cell in cells:
        writer.writerow([cell["key"], cell["status"], cell["family"], cell["dataset"],
                         cell["model"], cell["attack"], cell["defense"], cell["seed"],
                         *(_csv_value(cell["metrics"].get(k)) for k in metric_names),
                         *(_csv_value(cell["cost"].get(k)) for k in cost_names),
                         (cell["error"] or "").splitlines()[0] if cell["error"] else ""])
    return buffer.getvalue()


def _csv_value(value: Any) -> str:
    number = _number(value)
    return "" if number is None else repr(number)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)

