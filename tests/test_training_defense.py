"""The training-defense grid: each cell's attack is the attack zoo's bar setting,
and the page leaves out rows trained with an earlier attack setting."""

import sys
from pathlib import Path

import pytest

from backdoorguard.data import load_dataset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def grid(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)
    import training_defense

    yield training_defense
    for added in set(sys.modules) - before:  # the scripts import each other by bare name
        if added in ("training_defense", "attacks"):
            del sys.modules[added]


def target_share(dataset: str) -> float:
    return float((load_dataset(dataset).train.y == 0).float().mean())


def test_cells_take_the_attack_zoos_bar_settings(grid):
    import attacks

    digits = grid.attack_config("digits", "sig")
    assert digits.name == "sig" and digits.params == attacks.PARAMS[("digits", "sig")]
    assert digits.poison_rate == pytest.approx(target_share("digits"), abs=1e-5)
    # mnist5k's passing SIG cell poisons half of the target class
    mnist = grid.attack_config("mnist5k", "sig")
    assert mnist.name == "sig" and mnist.params == attacks.PARAMS[("mnist5k", "sig-half")]
    assert mnist.poison_rate == pytest.approx(0.5 * target_share("mnist5k"), abs=1e-5)
    warp = grid.attack_config("ucr:BasicMotions", "wanet")
    assert warp.params == attacks.PARAMS[("ucr:BasicMotions", "wanet")]
    assert warp.poison_rate == grid.RATE and warp.target == grid.TARGET
    plain = grid.attack_config("digits", "badnets")
    assert plain.params == {} and plain.poison_rate == grid.RATE


def test_every_grid_attack_builds(grid):
    from backdoorguard.pipeline import build_attack

    for dataset, attacks in grid.GRID.items():
        task = load_dataset(dataset).task
        for attack in attacks:
            build_attack(grid.attack_config(dataset, attack), task)  # raises on a bad parameter


def row(grid, dataset, attack, method, asr, settings=None):
    config = grid.attack_config(dataset, attack)
    return {"dataset": dataset, "attack": attack, "method": method, "date": "2026-01-01",
            "poison_rate": config.poison_rate, "train_seconds": 10.0,
            "metrics": {"clean_acc": 1.0, "asr": asr},
            "attack_settings": config.params if settings is None else settings}


def test_a_row_from_an_earlier_attack_setting_is_pending(grid, tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "PAGE", tmp_path / "page.md")
    cell = ("ucr:GunPoint", "wanet")
    results = {f"{cell[0]}|{cell[1]}|plain": row(grid, *cell, "plain", 0.9),
               f"{cell[0]}|{cell[1]}|abl": row(grid, *cell, "abl", 0.5),
               f"{cell[0]}|{cell[1]}|e2abl": row(grid, *cell, "e2abl", 0.0, settings={}),
               "ucr:GunPoint|badnets|plain": row(grid, "ucr:GunPoint", "badnets", "plain", 1.0),
               "ucr:GunPoint|badnets|abl": row(grid, "ucr:GunPoint", "badnets", "abl", 1.0)}
    (rows,) = [r for r in grid.cell_rows(results) if r["attack"] == "wanet"]
    assert set(rows["runs"]) == {"plain", "abl"} and rows["stale"] == ["e2abl"]
    grid.write_page(results)
    page = (tmp_path / "page.md").read_text()
    assert "| ucr:GunPoint | time-warp | — | 1.000 / 0.900 | 1.000 / 0.500 |" in page
    assert "pending (e2abl: earlier attack setting)" in page
    assert "pending (e2abl: not run)" in page  # the badnets cell
    assert "## Summary" not in page  # no cell has all three methods
