"""The detection zoo's page: the marked results section of docs/detection.md
and the ROC curves, written from docs/results/detection_zoo.json's entries.
Each data set's entry names its attacks and the attack success from which a
backdoor counts as taken (`attacks`, `took_bar`), so the page needs nothing
from the zoo's settings."""

from __future__ import annotations

from pathlib import Path

PAGE = Path("docs/detection.md")
MARK_BEGIN, MARK_END = "<!-- zoo:begin -->", "<!-- zoo:end -->"


def roc_figure(results: dict, dataset: str, path: Path) -> None:
    """Every detector's ROC curve on the scored models of one data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.2, 4))
    for name, entry in results["detectors"].items():
        scored = [r for r in entry["rows"] if r["role"] != "calib"]
        fpr, tpr, _ = roc_curve([r["role"] == "backdoored" for r in scored],
                                [r["score"] for r in scored])
        ax.plot(fpr, tpr, label=f"{name} (AUC {entry['summary']['auroc']:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"detection zoo: {dataset}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def classification_lines(results: dict) -> list[str]:
    """The tables of a classification zoo: the calibrated threshold beside each
    detector's own rule (MAD anomaly index > 2), and per model its ASR, clean
    accuracy, true target, and each detector's score, verdict and named class."""
    attacks = results["attacks"]
    lines = ["| detector | AUROC | AUROC, backdoors that took (ASR ≥ "
             f"{results['took_bar']}) | acc @ calibrated threshold | TPR @ 5 % FPR | threshold | "
             "own rule: acc / TPR / FPR | names true target (all / took) | "
             + " | ".join(f"AUROC {a}" for a in attacks) + " | median s | median passes |",
             "| --- " * (10 + len(attacks)) + "|"]
    for name, entry in results["detectors"].items():
        s = entry["summary"]
        per = [f"{s['per_attack'][a]:.2f}" if a in s["per_attack"] else "–" for a in attacks]
        lines.append(
            f"| {name} | {s['auroc']:.2f} | {s['auroc_learnt']:.2f} ({s['n_learnt']} models) | "
            f"{s['accuracy']:.2f} | {s['tpr_at_5fpr']:.2f} | {s['threshold']:.4g} | "
            f"{fmt(s['own_accuracy'])} / {fmt(s['own_tpr'])} / {fmt(s['own_fpr'])} | "
            f"{fmt(s['names_target'])} / {fmt(s['names_target_took'])} | " + " | ".join(per)
            + f" | {s['seconds_median']:.0f} | {s['passes_median']:.0f} |")
    detectors = results["detectors"]
    lines += ["", "Scores per model (score > threshold = flagged at the calibrated threshold; "
              "✓ = flagged by the detector's own rule, then the class it names; the ASR on "
              "the triggered test set shows whether the backdoor took):", "",
              "| model | role | attack | target | ASR | clean acc | "
              + " | ".join(detectors) + " |", "| --- " * (6 + len(detectors)) + "|"]
    first = next(iter(detectors.values()))["rows"]
    for i, row in enumerate(first):
        metrics = row["metrics"]
        cells = []
        for entry in detectors.values():
            other = entry["rows"][i]
            cells.append(f"{other['score']:.3g} {'✓' if other['verdict'] else '·'} "
                         f"→{other['named_target']}")
        target = "–" if row.get("true_target") is None else row["true_target"]
        asr = fmt(metrics.get("asr")) if row["attack"] else "–"
        lines.append(f"| {row['name']} | {row['role']} | {row['attack'] or '–'} | {target} | "
                     f"{asr} | {metrics['clean_acc']:.3f} | " + " | ".join(cells) + " |")
    return lines


def page_section(all_results: dict) -> str:
    """The marked section of the page: per data set its zoo, a table of every
    detector's summary and one of every model's scores."""
    lines = [MARK_BEGIN, ""]
    for dataset, results in all_results.items():
        attacks = results["attacks"]
        if results.get("task") == "classification":
            lines += [f"### {dataset}", "", f"Zoo: {results['zoo']}. Scan parameters (beyond "
                      "each detector's defaults): " + "; ".join(
                          f"{name} {entry.get('params') or 'defaults'}"
                          for name, entry in results["detectors"].items()), ""]
            lines += classification_lines(results)
            lines += ["", f"![ROC curves]({results['roc']})", ""]
            continue
        lines += [f"### {dataset}", "", f"Zoo: {results['zoo']}. Scan parameters (beyond "
                  "each detector's defaults): " + "; ".join(
                      f"{name} {entry.get('params') or 'defaults'}"
                      for name, entry in results["detectors"].items()), "",
                  "| detector | AUROC | AUROC, backdoors that took (asr@tol ≥ "
                  f"{results['took_bar']}) | acc @ calibrated threshold | TPR @ 5 % FPR | "
                  "threshold | " + " | ".join(f"AUROC {a}" for a in attacks)
                  + " | median s | median passes |",
                  "| --- " * (8 + len(attacks)) + "|"]
        for name, entry in results["detectors"].items():
            s = entry["summary"]
            per = [f"{s['per_attack'][a]:.2f}" if a in s["per_attack"] else "–" for a in attacks]
            learnt = (f"{s['auroc_learnt']:.2f} ({s['n_learnt']} models)"
                      if "auroc_learnt" in s else "–")
            lines.append(f"| {name} | {s['auroc']:.2f} | {learnt} | {s['accuracy']:.2f} | "
                         f"{s['tpr_at_5fpr']:.2f} | {s['threshold']:.4g} | " + " | ".join(per)
                         + f" | {s['seconds_median']:.0f} | {s['passes_median']:.0f} |")
        lines += ["", "Scores per model (score > threshold = flagged; the attack's own "
                  "asr@tol on the test set shows whether the backdoor took):", "",
                  "| model | role | attack | asr@tol | clean MAE | "
                  + " | ".join(results["detectors"]) + " |",
                  "| --- " * (5 + len(results["detectors"])) + "|"]
        names = [r["name"] for r in next(iter(results["detectors"].values()))["rows"]]
        for i, name in enumerate(names):
            row = next(iter(results["detectors"].values()))["rows"][i]
            metrics = row["metrics"]
            lines.append(f"| {name} | {row['role']} | {row['attack'] or '–'} | "
                         f"{metrics.get('asr_at_tol', float('nan')):.2f} | "
                         f"{metrics.get('clean_mae', float('nan')):.2f} | "
                         + " | ".join(f"{e['rows'][i]['score']:.4g}"
                                      for e in results["detectors"].values()) + " |")
        lines += ["", f"![ROC curves]({results['roc']})", ""]
    lines.append(MARK_END)
    return "\n".join(lines)


def write_page(all_results: dict) -> None:
    """Replace the page's marked section (or append it)."""
    text = PAGE.read_text() if PAGE.exists() else ""
    section = page_section(all_results)
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text + "\n" + section + "\n"
    PAGE.write_text(text)
