"""Clean-set augmentation of the purifiers: label- and shape-preserving, inside
the input range, seeded; on by default for classification series only, so image
purification is bit-for-bit what it was."""

import pytest
import torch

from backdoorguard.core.training import StepLoss
from backdoorguard.core.types import ArrayDataset, Batch, TaskSpec
from backdoorguard.defenses.base import create_defense
from backdoorguard.defenses.purification.augment import (SeriesAugment, augmentation_for,
                                                         augmented)
from backdoorguard.errors import BadInput

SERIES = TaskSpec("classification", "series", (3, 40), 2, (-2.0, 2.0))


def series(n=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 40, generator=generator).clamp(-2, 2)


def test_series_augment_keeps_shape_and_range_and_is_seeded():
    x = series()
    first = SeriesAugment(SERIES, seed=0)(x)
    assert first.shape == x.shape and not torch.equal(first, x)
    assert first.min() >= -2.0 and first.max() <= 2.0
    assert torch.equal(first, SeriesAugment(SERIES, seed=0)(x))
    assert not torch.equal(first, SeriesAugment(SERIES, seed=1)(x))
    augment = SeriesAugment(SERIES, seed=0)
    assert not torch.equal(augment(x), augment(x)), "every batch needs fresh draws"
    assert torch.equal(x, series()), "the input was changed"


def test_series_shift_alone_moves_each_series_and_repeats_its_edge():
    x = torch.arange(40.0).repeat(4, 3, 1) / 40  # a ramp in every channel, inside the range
    out = SeriesAugment(SERIES, shift=0.1, scale=0.0, jitter=0.0, seed=3)(x)
    for sample in out:
        offset = round(float(sample[0, 20] - x[0, 0, 20]) * -40)
        assert abs(offset) <= 4
        # same shift for every channel; the emptied steps hold the edge value
        assert torch.equal(sample[0], sample[1]) and torch.equal(sample[0], sample[2])
        expected = x[0, 0, (torch.arange(40) - offset).clamp(0, 39)]
        assert torch.equal(sample[0], expected)


def test_augmented_objective_changes_inputs_only():
    seen = []

    def objective(model, batch):
        seen.append(batch)
        return StepLoss(torch.zeros(()), None, None)

    x, y, index = series(4), torch.tensor([0, 1, 1, 0]), torch.arange(4)
    augmented(objective, SeriesAugment(SERIES, seed=0))(None, Batch(x, y, index))
    assert torch.equal(seen[0].y, y) and torch.equal(seen[0].index, index)
    assert seen[0].x.shape == x.shape and not torch.equal(seen[0].x, x)


def test_default_augments_classification_series_only():
    image = TaskSpec("classification", "image", (1, 8, 8), 10)
    table = TaskSpec("classification", "tabular", (5,), 2)
    regression = TaskSpec("regression", "series", (1, 40), 1, (-2.0, 2.0),
                          label_range=((0.0, 1.0),))
    assert augmentation_for("auto", SERIES) == "series"
    assert [augmentation_for("auto", t) for t in (image, table, regression)] == ["off"] * 3
    assert augmentation_for("series", regression) == "series"
    assert augmentation_for("off", SERIES) == "off"
    # YAML reads `--param augment=off` as false and `on` as true
    assert augmentation_for(False, SERIES) == "off" and augmentation_for(True, SERIES) == "series"
    with pytest.raises(BadInput, match="augment='series' needs series data; this task is image"):
        augmentation_for("series", image)
    with pytest.raises(BadInput, match="unknown augment 'sometimes'; allowed: auto, series, off"):
        create_defense("ft", "purification", augment="sometimes")


def test_image_purification_is_unchanged_by_the_default(digits, runtime):
    """`augment="auto"` on images trains exactly as before augmentation existed."""
    from backdoorguard.models import create_model
    from backdoorguard.pipeline import clean_subset

    torch.manual_seed(0)
    model = create_model("preact-resnet18", digits.task, width=4)
    clean = clean_subset(digits, 0.05, seed=0)
    default = create_defense("ft", "purification", min_steps=3).purify(model, clean,
                                                                        runtime=runtime)
    off = create_defense("ft", "purification", min_steps=3, augment="off").purify(
        model, clean, runtime=runtime)
    assert default.changes["augment"] == "off"
    assert all(torch.equal(a, b) for a, b in zip(default.model.state_dict().values(),
                                                 off.model.state_dict().values()))
    with pytest.raises(BadInput, match="augment='series' needs series data"):
        create_defense("ft", "purification", augment="series").purify(model, clean,
                                                                      runtime=runtime)


@pytest.mark.parametrize("method", ["ft", "fp", "nad", "d3", "sms"])
def test_every_purifier_augments_series_through_the_training_loop(method, runtime):
    """The same purifier with and without augmentation ends with different weights
    on series; `changes` says which was used."""
    from backdoorguard.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet1d", SERIES, width=4)
    clean = ArrayDataset(series(8), torch.arange(8) % 2, SERIES)
    runs = {mode: create_defense(method, "purification", min_steps=4, augment=mode).purify(
        model, clean, runtime=runtime) for mode in ("auto", "off")}
    assert runs["auto"].changes["augment"] == "series" and runs["off"].changes["augment"] == "off"
    assert not all(torch.equal(a, b) for a, b in zip(runs["auto"].model.state_dict().values(),
                                                     runs["off"].model.state_dict().values()))
