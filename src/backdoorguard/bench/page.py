"""The HTML page of `backdoorguard report`: static, self-contained, no scripts."""

from __future__ import annotations

from typing import Any

from . import figures
from .report import MODEL_FAMILIES, data_uri, escape
from .store import Store

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
.note { color: #666; font-size: 0.85em; } .err { color: #a00; text-align: left; }
"""


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _mean_std(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return ""
    text = _fmt(stat["mean"])
    return text if stat["std"] is None else f"{text} ± {_fmt(stat['std'])}"


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(f"<th{' class=l' if i < left else ''}>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{' class=l' if i < left else ''}>{escape(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="{data_uri(png)}">'


def summary_table(entries: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds, one line per (attack, defense)."""
    names = list(dict.fromkeys(k for e in entries for k in e["metrics"]))
    rows = [[e["attack"], e["defense"], e["family"], str(len(e["seeds"])),
             *(_mean_std(e["metrics"].get(n)) for n in names)] for e in entries]
    return _table(["attack", "defense", "family", "seeds", *names], rows, left=3)


def _scatter(cells: list[dict[str, Any]], title: str) -> str:
    points: dict[tuple[str, str], dict[str, Any]] = {}
    axes = None
    for cell in cells:
        metrics = cell["metrics"]
        if cell["family"] not in MODEL_FAMILIES or cell["config"]["attack"] is None:
            continue
        for clean, attack in (("clean_acc", "asr"), ("clean_mae", "asr_at_tol")):
            if metrics.get(clean) is not None and metrics.get(attack) is not None:
                axes = axes or (clean, attack)
                point = points.setdefault((cell["attack"], cell["defense"]), {
                    "attack": cell["attack"], "defense": cell["defense"], "x": [], "y": []})
                point["x"].append(metrics[clean])
                point["y"].append(metrics[attack])
                break
    if not points:
        return ""
    chosen = [points[k] for k in sorted(points)]
    png = figures.scatter(chosen, axes[0], axes[1], title)
    return (f"<h3>Clean metric against attack metric</h3>"
            f"<p class=note>One colour per defense, one marker per attack; small points "
            f"are seeds, large ones their mean.</p>{_image(png, 'scatter ' + title)}")


def _detection(setting: dict[str, Any], title: str) -> str:
    if not setting["detection"]:
        return ""
    parts = ["<h3>Detection</h3>", summary_table(setting["detection"])]
    curves = [r for r in setting["roc"] if "auroc" in r]
    rows = [[r["detector"], str(r["clean"]), str(r["backdoored"]), _fmt(r.get("auroc")),
             _fmt(r.get("tpr_at_5_fpr")), _fmt(r["accuracy"]),
             "; ".join(f"{a}: {_fmt(v)}" for a, v in r.get("per_attack", {}).items())]
            for r in setting["roc"]]
    parts.append(_table(["detector", "clean models", "backdoored models", "AUROC",
                         "TPR at 5 % FPR", "accuracy at threshold", "AUROC per attack"], rows))
    if curves:
        png = figures.roc([{"label": r["detector"], "fpr": r["fpr"], "tpr": r["tpr"],
                            "auroc": r["auroc"]} for r in curves], title)
        parts.append(_image(png, "ROC " + title))
    else:
        parts.append("<p class=note>No ROC curve: the grid needs both clean (attack none) and "
                     "backdoored models for it.</p>")
    return "".join(parts)


MAX_TRIGGERS = 12


def _triggers(cells: list[dict[str, Any]], store: Store, title: str) -> str:
    from safetensors.numpy import load_file

    items = []
    for cell in sorted(cells, key=lambda c: (c["defense"], c["attack"], c["seed"])):
        files = [a for a in cell["artifacts"] if a.endswith("trigger.safetensors")]
        if cell["family"] != "detection" or not files:
            continue
        try:
            tensors = load_file(str(store.artifacts / files[0]))
        except (OSError, ValueError):
            continue
        caption = f"{cell['defense']}: {cell['attack']}, seed {cell['seed']}"
        items.append({"caption": caption, "tensors": dict(sorted(tensors.items()))})
    if not items:
        return ""
    shown = items[:MAX_TRIGGERS]
    note = (f"<p class=note>First {len(shown)} of {len(items)} cells.</p>"
            if len(items) > len(shown) else "")
    png = figures.triggers(shown, f"reversed triggers, {title}")
    return f"<h3>Reversed triggers</h3>{note}{_image(png, 'triggers ' + title)}"


def _costs(data: dict[str, Any], timings: bool) -> str:
    entries = data["costs"]
    if not entries:
        return ""
    unit = "seconds" if timings else "passes"
    rows = [[e["method"], e["family"], str(e["runs"]),
             *([_fmt(e["seconds"])] if timings else []), _fmt(e["passes"])] for e in entries]
    headers = ["method", "family", "runs", *(["mean seconds"] if timings else []),
               "mean passes over the data"]
    values = {e["method"]: e[unit] for e in entries if e.get(unit) is not None}
    picture = _image(figures.bars(values, f"mean {unit} per run", f"cost per method ({unit})"),
                     "cost per method") if values else ""
    note = ("" if timings else "<p class=note>Wall times left out (--no-timings).</p>")
    return f"<h2 id=cost>Cost per method</h2>{note}{_table(headers, rows, left=2)}{picture}"


def _failed(data: dict[str, Any]) -> str:
    if not data["failed"]:
        return ""
    rows = [[f["labels"]["dataset"], f["labels"]["model"], f["labels"]["attack"],
             f["labels"]["defense"], str(f["seed"]), str(f["attempts"]), f["error"]]
            for f in data["failed"]]
    table = _table(["dataset", "model", "attack", "defense", "seed", "attempts", "error"],
                   rows, left=5).replace("<td>", "<td class=err>")
    return (f"<h2 id=failed>Failed cells</h2><p class=note>Run the grid again with "
            f"--retry-failed to retry them.</p>{table}")


def page(data: dict[str, Any], store: Store, timings: bool) -> str:
    summary = data["summary"]
    versions = "; ".join(", ".join(f"{k} {v}" for k, v in sorted(v.items()))
                         for v in summary["versions"])
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<title>backdoorguard benchmark report</title><style>{STYLE}</style></head><body>",
             "<h1>backdoorguard benchmark report</h1>",
             f"<p>{summary['cells']} cells: {summary['done']} done, {summary['failed']} failed; "
             f"{summary['models']} trained models shared by the defenses.</p>",
             f"<p class=note>Versions: {escape(versions or 'none recorded')}. Values are mean ± "
             f"standard deviation over seeds.</p>"]
    if data["settings"]:
        links = " · ".join(f'<a href="#s{i}">{escape(s["dataset"])} / {escape(s["model"])}</a>'
                           for i, s in enumerate(data["settings"]))
        parts.append(f"<p>Settings: {links}</p>")
    for i, setting in enumerate(data["settings"]):
        title = f"{setting['dataset']} / {setting['model']}"
        cells = [c for c in data["cells"] if c["status"] == "done"
                 and (c["dataset"], c["model"]) == (setting["dataset"], setting["model"])]
        parts.append(f"<h2 id=s{i}>{escape(title)}</h2>")
        if setting["models"]:
            parts += ["<h3>Models: no defense, purified, trained with a defense</h3>",
                      summary_table(setting["models"]), _scatter(cells, title)]
        parts.append(_detection(setting, title))
        parts.append(_triggers(cells, store, title))
        if setting["audit"]:
            parts += ["<h3>Data audit</h3>", summary_table(setting["audit"])]
    parts += [_costs(data, timings), _failed(data), "</body></html>\n"]
    return "\n".join(p for p in parts if p)
