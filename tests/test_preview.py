"""`preview`: a picture of samples, clean vs triggered, written whole or not at all."""

import json

import pytest
import torch
from PIL import Image

from backdoorguard.attacks.base import Attack
from backdoorguard.cli import main
from backdoorguard.core.types import ArrayDataset, TaskSpec
from backdoorguard.errors import BadInput
from backdoorguard.plots import _draw, _figure_module, _save, label_text, pick_samples, preview


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_preview_writes_a_picture_with_clean_and_triggered_rows(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, stdout, _ = run(capsys, "preview", "digits", "--out", str(out), "--attack", "badnets",
                          "--attack-param", "size=3", "--target", "2", "--count", "4", "--json")
    assert code == 0
    record = json.loads(stdout)
    assert record["attack"]["target"] == 2 and record["attack"]["params"]["size"] == 3
    with Image.open(out) as picture:
        triggered_size = picture.size
    code, _, _ = run(capsys, "preview", "digits", "--out", str(out), "--count", "4", "--overwrite")
    with Image.open(out) as picture:
        clean_size = picture.size
    # same width, a second (triggered) row of pictures
    assert triggered_size[0] == clean_size[0] and triggered_size[1] > 1.5 * clean_size[1]


def test_preview_of_series_writes_line_plots(tmp_path, capsys):
    out = tmp_path / "series.png"
    assert run(capsys, "preview", "--dataset", "ucr:GunPoint", "--out", str(out))[0] == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG"


@pytest.mark.parametrize("argv, message", [
    (["digits", "--out", "{tmp}/grid.nope"], "needs a file suffix"),
    (["digits", "--out", "{tmp}/missing/grid.png"], "does not exist"),
    (["ucr:GunPoint", "--out", "{tmp}/g.png", "--attack", "input-aware"], "supports"),
    (["digits", "--out", "{tmp}/g.png", "--attack-param", "size=3"], "need --attack"),
    (["digits", "--out", "{tmp}/g.png", "--count", "0"], "sample count 0"),
    (["digits", "--out", "{tmp}/g.png", "--split", "val"], "unknown split"),
    (["nothing", "--out", "{tmp}/g.png"], "unknown dataset"),
    (["--out", "{tmp}/g.png"], "no data set given"),
    (["digits", "--dataset", "mnist5k", "--out", "{tmp}/g.png"], "two data sets given"),
])
def test_preview_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = run(capsys, "preview", *argv)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_preview_refuses_to_replace_a_file_without_overwrite(tmp_path, capsys):
    out = tmp_path / "grid.png"
    out.write_bytes(b"mine")
    code, _, err = run(capsys, "preview", "digits", "--out", str(out))
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"mine"


class ShiftSeries(Attack):
    """A test-only series attack: adds 1 to the last quarter of every channel."""

    name = "shift"

    def apply(self, x):
        out = x.clone()
        out[..., -x.shape[-1] // 4:] += 1.0
        return self.clip(out)


def series_data(kind="classification"):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2, 20, generator=generator)
    if kind == "classification":
        task = TaskSpec("classification", "series", (2, 20), 3, (-5.0, 5.0),
                        label_names=("a", "b", "c"))
        y = torch.arange(12) % 3
    else:
        task = TaskSpec("regression", "series", (2, 20), 1, (-5.0, 5.0), label_units="K",
                        label_range=((0.0, 1.0),))
        y = torch.rand(12, 1, generator=generator)
    return ArrayDataset(x, y, task)


def test_series_attack_is_overlaid_on_the_clean_lines():
    data = series_data()
    attack = ShiftSeries(data.task, target=1)
    plt = _figure_module()
    fig, ax = plt.subplots()
    _draw(ax, data.x[0], data.task, attack.apply(data.x[:1])[0])
    lines = ax.get_lines()
    assert len(lines) == 4                                  # 2 channels × (clean, triggered)
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    assert lines[0].get_color() == lines[1].get_color()     # a channel keeps its colour
    plt.close(fig)


def test_preview_api_with_a_regression_series_attack(tmp_path):
    data = series_data("regression")
    path = preview(data, tmp_path / "r.svg", attack=ShiftSeries(data.task, target=[0.5]), count=5)
    assert path.read_text().lstrip().startswith("<?xml")
    assert [p.name for p in tmp_path.iterdir()] == ["r.svg"]      # no partial file left
    assert label_text(data.task, torch.tensor([0.5])) == "0.5 K"
    assert label_text(series_data().task, torch.tensor(2)) == "c"


def test_pick_samples_shows_every_class_and_is_seeded():
    data = series_data()
    chosen = pick_samples(data, 6, seed=3)
    assert sorted(data.y[chosen].tolist()) == [0, 0, 1, 1, 2, 2]
    assert torch.equal(chosen, pick_samples(data, 6, seed=3))
    assert not torch.equal(chosen, pick_samples(data, 6, seed=4))


def test_save_closes_the_figure_whether_or_not_it_saves(tmp_path):
    plt = _figure_module()
    fig, _ = plt.subplots()
    assert _save(fig, tmp_path / "ok.png").is_file()
    assert fig.number not in plt.get_fignums()
    fig, _ = plt.subplots()
    with pytest.raises(BadInput, match="needs a file suffix"):
        _save(fig, tmp_path / "picture.nope")
    assert fig.number not in plt.get_fignums()
    assert [p.name for p in tmp_path.iterdir()] == ["ok.png"]
