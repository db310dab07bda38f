"""ucr:/tser: archives bundled with aeon: table, splits, z-normalisation, labels."""

import json

import numpy as np
import pytest
import torch

from backdoorguard.cli import main
from backdoorguard.data import load_dataset
from backdoorguard.data.ucr import CLASSIFICATION, REGRESSION, bundled_folder, read_ts
from backdoorguard.errors import BadInput


def raw_files(name):
    folder = bundled_folder() / name
    return read_ts(folder / f"{name}_TRAIN.ts"), read_ts(folder / f"{name}_TEST.ts")


def test_every_bundled_archive_is_registered():
    folders = {p.name for p in bundled_folder().iterdir() if (p / f"{p.name}_TRAIN.ts").exists()}
    assert folders - {"UnitTest"} == set(CLASSIFICATION) | set(REGRESSION)


@pytest.mark.parametrize("name", sorted(CLASSIFICATION))
def test_classification_table_matches_the_files(name):
    channels, length, n_train, n_test, classes, _ = CLASSIFICATION[name]
    data = load_dataset(f"ucr:{name}")
    assert data.task.input_shape == (channels, length)
    assert (len(data.train), len(data.test)) == (n_train, n_test)
    assert data.task.num_outputs == classes and data.task.modality == "series"


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_regression_archives_take_label_range_from_training_labels(name):
    channels, length, n_train, n_test = REGRESSION[name][:4]
    data = load_dataset(f"tser:{name}")
    (_, y_train), _ = raw_files(name)
    assert data.task.kind == "regression" and data.task.input_shape == (channels, length)
    assert (len(data.train), len(data.test)) == (n_train, n_test)
    low, high = data.task.label_range[0]
    assert low == pytest.approx(y_train.astype(float).min(), abs=1e-6)
    assert high == pytest.approx(y_train.astype(float).max(), abs=1e-6)


def test_series_are_z_normalised_per_series_and_channel():
    x = load_dataset("ucr:BasicMotions").train.x.double()
    assert torch.allclose(x.mean(-1), torch.zeros(x.shape[:2], dtype=x.dtype), atol=1e-5)
    assert torch.allclose(x.std(-1, unbiased=False), torch.ones(x.shape[:2], dtype=x.dtype),
                          atol=1e-4)
    raw = load_dataset("ucr:BasicMotions:raw").train.x
    (series, _), _ = raw_files("BasicMotions")
    assert torch.allclose(raw, torch.tensor(np.stack(series), dtype=torch.float32))


def test_unequal_lengths_are_normalised_then_padded_with_the_last_value():
    data = load_dataset("ucr:JapaneseVowels")
    (series, _), (test_series, _) = raw_files("JapaneseVowels")
    longest = max(s.shape[1] for s in series + test_series)
    assert data.task.input_shape == (12, longest)
    for i in (0, 1, 100):
        length = series[i].shape[1]
        observed = data.train.x[i, :, :length].double()
        assert length < longest
        assert torch.allclose(observed.mean(-1), torch.zeros(12, dtype=observed.dtype), atol=1e-5)
        padding = data.train.x[i, :, length:]
        assert torch.equal(padding, data.train.x[i, :, length - 1:length].expand_as(padding))


def test_labels_are_sorted_class_indices_with_names_kept():
    data = load_dataset("ucr:BasicMotions")
    assert data.task.label_names == ("badminton", "running", "standing", "walking")
    (_, labels), _ = raw_files("BasicMotions")
    assert [data.task.label_names[i] for i in data.train.y] == labels.tolist()
    # numeric labels in numeric order: "10" after "9"
    gestures = load_dataset("ucr:PickupGestureWiimoteZ").task.label_names
    assert gestures == tuple(str(i) for i in range(1, 11))


def test_official_splits_and_input_range():
    data = load_dataset("ucr:GunPoint")
    assert (len(data.train), len(data.test)) == (50, 150)
    low, high = data.task.input_range
    x_low, x_high = float(data.train.x.min()), float(data.train.x.max())
    span = x_high - x_low
    assert low == pytest.approx(x_low - 0.1 * span) and high == pytest.approx(x_high + 0.1 * span)


def test_an_archive_that_is_not_bundled_is_refused_without_download():
    with pytest.raises(BadInput, match="not bundled with aeon; bundled: ACSF1, ArrowHead"):
        load_dataset("ucr:Adiac")
    with pytest.raises(BadInput, match="tser:'GunPoint' is not bundled"):
        load_dataset("tser:GunPoint")


def test_list_datasets_shows_the_bundled_names(capsys):
    assert main(["list", "datasets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["datasets"]}
    for name in ("GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions", "JapaneseVowels"):
        assert rows[f"ucr:{name}"]["shape"] == list(CLASSIFICATION[name][:2])
    assert rows["tser:Covid3Month"]["tasks"] == ["regression"]
    assert {"mnist5k", "rotation", "npz:", "folder:", "ts:"} <= set(rows)
