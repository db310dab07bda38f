"""The report: self-contained, deterministic, right numbers; CSV and JSON exports."""

import base64
import csv
import io
import json
import re

import pytest

from backdoorguard.bench.report import render_report, roc_stats, summarise
from backdoorguard.bench.store import Row, Store


@pytest.fixture(scope="module")
def pages(tiny_run):
    with Store(tiny_run["db"]) as store:
        return {(fmt, timings): render_report(store, fmt, timings=timings)
                for fmt in ("html", "csv", "json") for timings in (True, False)}


def test_html_is_self_contained_with_every_section(pages):
    page = pages[("html", True)]
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 4  # scatter, ROC, reversed triggers, cost
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for heading in ("Clean metric against attack metric", "Detection", "Reversed triggers",
                    "Data audit", "Cost per method", "mean seconds"):
        assert heading in page
    assert "±" in page


def test_reports_are_deterministic_and_timings_can_be_left_out(tiny_run, pages):
    with Store(tiny_run["db"]) as store:
        assert render_report(store, "html", timings=False) == pages[("html", False)]
    assert "mean seconds" not in pages[("html", False)]
    data = json.loads(pages[("json", False)])
    assert all("seconds" not in cell["cost"] and "timings" not in cell
               for cell in data["cells"])
    assert all(entry.keys() >= {"passes"} and "seconds" not in entry for entry in data["costs"])


def test_exports_hold_every_cell(pages):
    lines = list(csv.DictReader(io.StringIO(pages[("csv", True)])))
    assert len(lines) == 20 and {"clean_acc", "asr", "score", "cost.seconds"} <= set(lines[0])
    assert "cost.seconds" not in pages[("csv", False)].splitlines()[0]
    data = json.loads(pages[("json", True)])
    assert data["summary"] == {**data["summary"], "cells": 20, "done": 20, "failed": 0,
                               "models": 4}
    setting = data["settings"][0]
    assert setting["roc"][0]["clean"] == 2 and setting["roc"][0]["backdoored"] == 2


def row(attack, score, seed=0, value=None):
    return Row(key=f"{attack}{seed}{score}", status="done", family="detection",
               labels={"dataset": "d", "model": "m", "attack": attack, "defense": "det"},
               seed=seed, model_key="k", config={"attack": None if attack == "none" else {}},
               metrics={"score": score, "correct": 1.0, **({"v": value} if value else {})})


def test_roc_separates_clean_and_backdoored_scores():
    rows = [row("none", 0.1), row("none", 0.2, 1), row("bad", 0.3), row("bad", 0.9, 1)]
    [stats] = roc_stats(rows)
    assert stats["auroc"] == 1.0 and stats["tpr_at_5_fpr"] == 1.0
    assert stats["per_attack"] == {"bad": 1.0}
    flipped = [row("none", 0.9), row("none", 0.8, 1), row("bad", 0.1), row("bad", 0.2, 1)]
    assert roc_stats(flipped)[0]["auroc"] == 0.0
    assert "auroc" not in roc_stats([row("bad", 0.1)])[0]  # no clean model: no curve


def test_mean_and_std_over_seeds():
    [entry] = summarise([row("bad", 0.5, 0, 0.5), row("bad", 0.5, 1, 0.7)], ("v", "score"))
    assert entry["seeds"] == [0, 1]
    assert entry["metrics"]["v"]["mean"] == pytest.approx(0.6)
    assert entry["metrics"]["v"]["std"] == pytest.approx(0.1414213562)
    assert entry["metrics"]["score"]["std"] == 0.0
