"""Grid files: validation with one-line errors, expansion, keys."""

import pytest
import yaml

from backdoorguard import registry
from backdoorguard.bench.grid import load_grid
from backdoorguard.core.types import Splits
from backdoorguard.errors import BadInput

from .conftest import FAMILIES, write_grid


@registry.register("dataset", "test-series", "a tiny series data set for the grid tests",
                   tasks=("classification",), modalities=("series",), shape=(1, 16), size=8,
                   units="class", recipe={"model": "resnet1d", "train": {"epochs": 1}})
def _series() -> Splits:  # never loaded: expansion reads only the registry
    raise AssertionError("expansion must not load data")


def test_expands_the_cross_product_with_families(tmp_path):
    grid = load_grid(write_grid(tmp_path))
    assert len(grid.cells) == 1 * 2 * len(FAMILIES) * 2
    families = {c.labels["defense"]: c.family for c in grid.cells}
    assert families == {"none": "none", "double-detector": "detection",
                        "double-purifier": "purification", "double-training": "training",
                        "double-audit": "audit"}
    # Defenses on one (data, model, attack, seed) share one model; seeds and attacks do not.
    assert len({c.model_key for c in grid.cells}) == 2 * 2
    assert len({c.key for c in grid.cells}) == len(grid.cells)


def test_keys_follow_the_configuration_not_the_labels(tmp_path):
    base = {c.key for c in load_grid(write_grid(tmp_path, "a.yaml")).cells}
    relabelled = load_grid(write_grid(tmp_path, "b.yaml", datasets=[{"name": "digits",
                                                                    "label": "renamed"}]))
    assert {c.key for c in relabelled.cells} == base
    assert {c.labels["dataset"] for c in relabelled.cells} == {"renamed"}
    longer = load_grid(write_grid(tmp_path, "c.yaml", train={"epochs": 2, "batch_size": 64}))
    assert not {c.key for c in longer.cells} & base


def test_recipe_is_resolved_into_the_key(tmp_path):
    cell = load_grid(write_grid(tmp_path)).cells[0]
    # The digits recipe's optimizer and learning rate, the grid's epochs.
    assert cell.config["train"]["epochs"] == 3 and cell.config["train"]["lr"] == 2e-3
    assert cell.config["model"] == {"name": "cnn-small", "args": {"width": 8, "features": 32}}


def test_poison_rate_lists_and_seed_counts_expand(tmp_path):
    grid = load_grid(write_grid(tmp_path, attacks=[{"name": "badnets",
                                                    "poison_rate": [0.05, 0.1]}],
                                defenses=["none"], seeds=3))
    rates = sorted({c.config["attack"]["poison_rate"] for c in grid.cells})
    assert rates == [0.05, 0.1] and sorted({c.seed for c in grid.cells}) == [0, 1, 2]
    assert {c.labels["attack"] for c in grid.cells} == {"badnets @0.05", "badnets @0.1"}


@registry.register("attack", "test-image-only", "an image-only attack for the grid tests",
                   modalities=("image",))
def _image_only(task, **kwargs):  # never built: expansion reads only the registry
    raise AssertionError("expansion must not build attacks")


def test_unsupported_combinations_are_skipped_not_failed(tmp_path):
    grid = load_grid(write_grid(tmp_path, datasets=["digits", "test-series"], models=None,
                                attacks=["none", "test-image-only"],
                                defenses=["none", "double-detector"]))
    assert "attack test-image-only on test-series" in grid.skipped
    assert "defense double-detector on test-series" in grid.skipped
    series = [c for c in grid.cells if c.config["dataset"] == "test-series"]
    assert {(c.labels["attack"], c.labels["defense"]) for c in series} == {("none", "none")}
    assert {c.config["model"]["name"] for c in series} == {"resnet1d"}


@pytest.mark.parametrize("overrides, message", [
    ({"atacks": ["none"]}, "atacks: Extra inputs are not permitted"),
    ({"attacks": [{"name": "badnets", "poison_rate": 1.5}]}, "poison rate 1.5 must lie"),
    ({"attacks": ["nope"]}, "attacks[0]: unknown attack 'nope'"),
    ({"defenses": ["none", "nope"]}, "defenses[1]: unknown defense 'nope'"),
    ({"defenses": [{"name": "double-purifier", "params": {"epochs": 0}}]},
     "epochs 0 must be at least 1"),
    ({"defenses": [{"name": "double-purifier", "params": {"speed": 3}}]}, "has no parameter 'speed'"),
    ({"seeds": [1, 1]}, "must be distinct"),
    ({"datasets": []}, "datasets: List should have at least 1 item"),
    ({"datasets": [{"name": "digits", "models": ["nope"]}]}, "unknown model 'nope'"),
    ({"train": {"epochs": -1}}, "epochs: Input should be greater than or equal to 0"),
    ({"defenses": ["none", "none"]}, "is listed twice"),
    ({"resources": {"cpus": 0}}, "resources.cpus"),
    ({"imports": ["no_such_module_xyz"]}, "cannot be imported"),
])
def test_bad_grids_get_one_line(tmp_path, overrides, message):
    with pytest.raises(BadInput) as error:
        load_grid(write_grid(tmp_path, **overrides))
    text = str(error.value)
    assert message in text and "\n" not in text and str(tmp_path / "grid.yaml") in text


def test_malformed_yaml_is_one_line(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("datasets: [digits\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_grid(path)
    path.write_text(yaml.safe_dump(["digits"]))
    with pytest.raises(BadInput, match="must hold a mapping"):
        load_grid(path)
