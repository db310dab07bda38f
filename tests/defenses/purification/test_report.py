"""The purification page judges only cells whose model carried a backdoor."""

from backdoorguard.defenses.purification.report import summary_rows, verdict


def regression(mae: float, asr: float) -> dict:
    return {"kind": "regression", "clean_mae": mae, "asr_at_tol": asr}


def cell(before_asr: float, after_asr: float, mae_after: float = 1.0) -> dict:
    return {"before": regression(1.0, before_asr), "after": regression(mae_after, after_asr),
            "der": 0.5, "wall_seconds": 1.0}


def test_a_cell_whose_attack_did_not_take_is_shown_but_not_judged():
    untaken = cell(0.009, 0.008)
    assert verdict(untaken, "synthgaze") == "n/a: the attack did not take"
    assert verdict(cell(1.0, 0.05), "synthgaze") == "pass"
    assert verdict(cell(1.0, 0.05, mae_after=1.2), "synthgaze") == "**miss**"
    results = {"models": {"s|badnets": {"train_seconds": 10.0}, "s|wanet": {"train_seconds": 10.0}},
               "cells": {"s|badnets|d3": cell(1.0, 0.5), "s|wanet|d3": untaken}}
    row = summary_rows(results)[2]
    assert row.startswith("| d3 | 1 | 0 | 0% |")


def test_a_drop_of_exactly_three_points_meets_the_bar():
    def classification(before_acc, after_acc, after_asr=0.05):
        return {"before": {"kind": "classification", "clean_acc": before_acc, "asr": 1.0},
                "after": {"kind": "classification", "clean_acc": after_acc, "asr": after_asr}}

    assert 0.989 - 0.959 > 0.03  # the floating-point difference the bar must not trip on
    assert verdict(classification(0.989, 0.959), "mnist5k") == "pass"
    assert verdict(classification(0.989, 0.958), "mnist5k") == "**miss**"
    assert verdict(classification(0.989, 0.959, after_asr=0.11), "mnist5k") == "**miss**"
