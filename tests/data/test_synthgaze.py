import pytest
import torch

from backdoorguard import registry
from backdoorguard.config import TrainConfig
from backdoorguard.data import synthgaze
from backdoorguard.data.synthgaze import PITCH_RANGE, YAW_RANGE, generate, render
from backdoorguard.errors import BadInput


def rendered(pitch, yaw, seed=0, **options):
    generator = torch.Generator().manual_seed(seed)
    return render(torch.tensor(pitch, dtype=torch.float32), torch.tensor(yaw, dtype=torch.float32),
                  generator, **options)


def iris_centroid(pitch, yaw, n=32):
    """(row, column) centre of mass of what the iris and pupil darken, per image:
    the same scenes rendered with and without the iris differ only there."""
    pitch, yaw = [pitch] * n, [yaw] * n
    darkened = (rendered(pitch, yaw, iris=False) - rendered(pitch, yaw)).clamp(min=0)[:, 0]
    rows = torch.arange(darkened.shape[1], dtype=torch.float32)[:, None]
    cols = torch.arange(darkened.shape[2], dtype=torch.float32)[None, :]
    mass = darkened.sum((1, 2))
    return (darkened * rows).sum((1, 2)) / mass, (darkened * cols).sum((1, 2)) / mass


def test_same_seed_same_images_and_other_seed_other_images():
    first = generate(40, seed=7)
    again = generate(40, seed=7)
    other = generate(40, seed=8)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert not torch.equal(first.x, other.x)
    assert (first.x - other.x).abs().mean() > 0.02


def test_shapes_values_and_label_ranges():
    data = generate(300, seed=1)
    assert data.x.shape == (300, 1, 36, 60) and data.x.dtype == torch.float32
    assert data.y.shape == (300, 2)
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert data.x.std() > 0.1  # a picture, not a flat field
    pitch, yaw = data.y[:, 0], data.y[:, 1]
    assert PITCH_RANGE[0] <= pitch.min() and pitch.max() <= PITCH_RANGE[1]
    assert YAW_RANGE[0] <= yaw.min() and yaw.max() <= YAW_RANGE[1]
    assert pitch.max() - pitch.min() > 0.8 * (PITCH_RANGE[1] - PITCH_RANGE[0])


def test_positive_yaw_moves_the_iris_left_in_every_scene():
    row_left, col_left = iris_centroid(0.0, 25.0)
    row_right, col_right = iris_centroid(0.0, -25.0)
    shift = col_right - col_left
    # eyeball model: R·cos α·(sin 25° + sin 25°) ≈ 10..14 px for R = 12.5..15.5
    assert (shift > 6).all() and (shift < 16).all()
    assert (row_left - row_right).abs().max() < 2.0


def test_positive_pitch_moves_the_iris_up_in_every_scene():
    row_up, col_up = iris_centroid(12.0, 0.0)
    row_down, col_down = iris_centroid(-22.0, 0.0)
    assert (row_down - row_up > 3).all()
    assert (col_down - col_up).abs().max() < 2.0


def test_iris_and_glint_options_change_only_what_they_name():
    pitch, yaw = [0.0] * 8, [10.0] * 8
    full = rendered(pitch, yaw)
    no_glint = rendered(pitch, yaw, glint=False)
    no_iris = rendered(pitch, yaw, iris=False)
    # the glint only brightens, and only a few pixels; the iris covers more of the eye
    changed_by_glint = (full - no_glint).abs() > 0.02
    assert (full - no_glint).min() > -1e-6
    assert 0 < changed_by_glint.float().mean() < 0.02
    assert ((full - no_iris).abs() > 0.02).float().mean() > 3 * changed_by_glint.float().mean()


def test_render_rejects_mismatched_labels():
    with pytest.raises(BadInput, match="pitch has 3 values but yaw has 2"):
        rendered([0.0, 1.0, 2.0], [0.0, 1.0])


@pytest.mark.parametrize("size", [0, -5, 1.5, "10", True, 10**9])
def test_generate_rejects_bad_sizes(size):
    with pytest.raises(BadInput, match="synthgaze size"):
        generate(size, seed=0)


@pytest.mark.parametrize("seed", [-1, 0.5, None])
def test_generate_rejects_bad_seeds(seed):
    with pytest.raises(BadInput, match="synthgaze seed"):
        generate(4, seed=seed)


@pytest.mark.parametrize("name", ["synthgaze:abc", "synthgaze:0", "synthgaze:-3", "synthgaze:"])
def test_sized_name_rejects_bad_sizes(name):
    with pytest.raises(BadInput, match="synthgaze size"):
        registry.create("dataset", name)


def test_sized_data_set_keeps_the_fixed_test_split(monkeypatch):
    monkeypatch.setattr(synthgaze, "TEST_SIZE", 50)  # keep the test quick
    small = registry.create("dataset", "synthgaze:30")
    larger = registry.create("dataset", "synthgaze:1_000")
    assert small.name == "synthgaze:30" and len(small.train) == 30 and len(larger.train) == 1000
    assert torch.equal(small.test.x, larger.test.x) and torch.equal(small.test.y, larger.test.y)
    assert not torch.equal(small.train.x[:30], small.test.x[:30])


def test_task_and_registry_entry():
    task = synthgaze.TASK
    assert task.kind == "regression" and task.modality == "image"
    assert task.input_shape == (1, 36, 60) and task.num_outputs == 2
    assert task.label_names == ("pitch", "yaw") and task.label_units == "deg"
    assert task.label_range == (PITCH_RANGE, YAW_RANGE) and task.tol == 5.0
    for name in ("synthgaze", "synthgaze:500"):
        entry = registry.get("dataset", name)
        assert entry.extra["shape"] == (1, 36, 60) and entry.extra["units"] == "deg"
        recipe = entry.extra["recipe"]
        registry.get("model", recipe["model"]).check_supports(task)
        TrainConfig(**recipe["train"])  # the recipe's settings are valid
    assert registry.get("dataset", "synthgaze").extra["size"] == 12_000


def test_render_takes_a_seed_or_a_generator():
    pitch, yaw = torch.tensor([-5.0, 5.0]), torch.tensor([20.0, -3.0])
    assert torch.equal(render(pitch, yaw, 5), render(pitch, yaw, torch.Generator().manual_seed(5)))


def test_recipe_model_args_apply_to_the_recipe_model_only(monkeypatch):
    from backdoorguard.config import TrainRun
    from backdoorguard.pipeline import resolve

    monkeypatch.setattr(synthgaze, "TEST_SIZE", 20)  # keep the test quick
    name = "synthgaze:21"  # a name no other test loads (data sets are cached by name)
    recipe_args = synthgaze.RECIPE["model_args"]
    assert resolve(TrainRun(dataset=name)).model_args == recipe_args
    assert resolve(TrainRun(dataset=name, model_args={"width": 8})).model_args == {
        **recipe_args, "width": 8}
    assert resolve(TrainRun(dataset=name, model="preact-resnet18")).model_args == {}
