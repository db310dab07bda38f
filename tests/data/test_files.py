"""User data (npz:, folder:, ts:): round trips through files in tmp_path, and every
bad input gives its one-line error."""

import numpy as np
import pytest
import torch

from backdoorguard.cli import main
from backdoorguard.data import load_dataset, recipe
from backdoorguard.data.files import load_npz
from backdoorguard.errors import BadInput


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


# ------------------------------------------------------------------ npz

def test_npz_with_test_part_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x, x_test = rng.random((30, 1, 6, 6)), rng.random((10, 1, 6, 6))
    y, y_test = np.repeat([3, 5, 7], 10), np.repeat([7, 3], 5)
    data = load_dataset(save_npz(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test))
    assert data.task.kind == "classification" and data.task.modality == "image"
    assert data.task.label_names == ("3", "5", "7") and data.task.input_range == (0.0, 1.0)
    assert torch.equal(data.train.x, torch.tensor(x, dtype=torch.float32))
    assert torch.equal(data.test.x, torch.tensor(x_test, dtype=torch.float32))
    assert data.test.y.tolist() == [2] * 5 + [0] * 5
    assert recipe(f"npz:{tmp_path / 'd.npz'}")["model"] == "cnn-small"


def test_npz_without_test_part_gets_a_fixed_stratified_split(tmp_path):
    x = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    y = np.array(["cat", "dog"] * 50)
    name = save_npz(tmp_path / "t.npz", x=x, y=y)
    data = load_dataset(name)
    assert data.task.modality == "tabular" and (len(data.train), len(data.test)) == (80, 20)
    assert torch.bincount(data.test.y).tolist() == [10, 10]
    assert recipe(name)["model"] == "mlp"
    torch.manual_seed(99)    # the split must not follow the global seed
    again = load_npz(str(tmp_path / "t.npz"))    # uncached
    assert torch.equal(again.test.x, data.test.x)
    # every sample is in exactly one part
    rows = sorted(data.train.x[:, 0].tolist() + data.test.x[:, 0].tolist())
    assert rows == x[:, 0].tolist()


def test_npz_regression_series_and_uint8_scaling(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2, 16))
    y = rng.uniform(-3, 5, size=(40, 2))
    data = load_dataset(save_npz(tmp_path / "r.npz", x=x, y=y))
    assert data.task.kind == "regression" and data.task.modality == "series"
    assert data.task.num_outputs == 2 and data.task.input_shape == (2, 16)
    for (low, high), column in zip(data.task.label_range, data.train.y.T):
        assert (low, high) == (float(column.min()), float(column.max()))
    pixels = np.full((20, 1, 4, 4), 255, dtype=np.uint8)
    images = load_dataset(save_npz(tmp_path / "u.npz", x=pixels, y=np.arange(20) % 2))
    assert images.train.x.max() == 1.0 and images.task.input_range == (0.0, 1.0)


def test_npz_byte_string_labels_keep_readable_names(tmp_path):
    name = save_npz(tmp_path / "b.npz", x=np.zeros((10, 3)), y=np.array([b"dog", b"cat"] * 5))
    data = load_dataset(name)
    assert data.task.label_names == ("cat", "dog")


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 3)), "y": np.zeros(4, int)}, "must hold arrays named x and y"),
    ({"x": np.zeros((4, 3)), "y": np.zeros(5, int)}, "4 training inputs but 5 labels"),
    ({"x": np.full((4, 3), np.nan), "y": np.arange(4) % 2}, "NaN or infinite"),
    ({"x": np.full((4, 3), np.inf), "y": np.arange(4) % 2}, "NaN or infinite"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 1, np.nan, 1.0])}, "NaN or infinite"),
    ({"x": np.zeros((4, 3)), "y": np.zeros(4, int)}, "at least 2 classes"),
    ({"x": np.zeros((4, 3)), "y": np.zeros((4, 2, 2))}, "regression labels must be N"),
    ({"x": np.zeros((4, 3)), "y": np.zeros((4, 2), int)}, "one per sample"),
    ({"x": np.zeros((4, 3)), "y": np.arange(4) % 2, "x_test": np.zeros((2, 3)),
      "y_test": np.array([0, 2])}, "test labels 2 do not occur"),
    ({"x": np.zeros((4, 3)), "y": np.arange(4) % 2, "x_test": np.zeros((2, 3))},
     "only one of x_test and y_test"),
    ({"x": np.zeros((4, 3)), "y": np.arange(4) % 2, "x_test": np.zeros((2, 5)),
      "y_test": np.arange(2)}, "test samples of shape (5,) differ"),
    ({"x": np.zeros((4, 3)), "y": np.arange(4) % 2, "x_test": np.zeros((2, 3)),
      "y_test": np.zeros(2)}, "mean classification but test labels"),
    ({"x": np.zeros((4, 2, 2, 2, 2)), "y": np.arange(4) % 2}, "neither images"),
    ({"x": np.zeros((4, 8, 8, 3)), "y": np.arange(4) % 2}, "channels-last"),
])
def test_npz_bad_input_is_one_clear_error(tmp_path, arrays, message):
    name = save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(name)


def test_npz_missing_file_and_object_arrays(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(BadInput, match="object arrays"):
        load_dataset(f"npz:{tmp_path / 'obj.npz'}")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(BadInput, match="cannot read"):
        load_dataset(f"npz:{tmp_path / 'text.npz'}")


def test_cli_bad_data_and_unfit_model_exit_2_with_one_line(tmp_path, capsys):
    name = save_npz(tmp_path / "bad.npz", x=np.zeros((4, 3)), y=np.zeros(5, int))
    assert main(["train", "--dataset", name, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "4 training inputs but 5 labels" in err
    table = save_npz(tmp_path / "table.npz", x=np.zeros((20, 3)), y=np.arange(20) % 2)
    assert main(["train", "--dataset", table, "--model", "cnn-small", "--epochs", "1",
                 "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cnn-small" in err
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------ folder

def write_folder(folder, rows, header, size=(6, 5), mode="L"):
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for i, row in enumerate(rows):
        value = (i * 37) % 256
        Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(
            folder / row[0])
    lines = [",".join(header)] + [",".join(map(str, row)) for row in rows]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return f"folder:{folder}"


def test_folder_classification_with_split_column(tmp_path):
    rows = [(f"img{i}.png", ["ok", "defect"][i % 2], "test" if i >= 8 else "train")
            for i in range(12)]
    data = load_dataset(write_folder(tmp_path / "f", rows, ["file", "label", "split"]))
    assert data.task.kind == "classification" and data.task.input_shape == (1, 5, 6)
    assert data.task.label_names == ("defect", "ok")
    assert (len(data.train), len(data.test)) == (8, 4)
    assert float(data.train.x[1, 0, 0, 0]) == pytest.approx(37 / 255)
    assert data.train.y.tolist() == [1, 0] * 4


def test_folder_regression_columns_and_rgb(tmp_path):
    rows = [(f"p{i}.png", i * 0.5, -i) for i in range(10)]
    data = load_dataset(write_folder(tmp_path / "g", rows, ["file", "pitch", "yaw"], mode="RGB"))
    assert data.task.kind == "regression" and data.task.input_shape == (3, 5, 6)
    assert data.task.label_names == ("pitch", "yaw") and data.task.num_outputs == 2
    assert (len(data.train), len(data.test)) == (8, 2)


def test_folder_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="has no labels.csv"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    name = write_folder(tmp_path / "a", [("a.png", 1), ("b.png", 2)], ["image", "label"])
    with pytest.raises(BadInput, match="needs a 'file' column"):
        load_dataset(name)
    name = write_folder(tmp_path / "b", [("a.png", "x"), ("b.png", "y")], ["file", "angle"])
    with pytest.raises(BadInput, match="must be numbers for regression"):
        load_dataset(name)
    write_folder(tmp_path / "c", [("a.png", 0), ("b.png", 1)], ["file", "label"])
    (tmp_path / "c" / "labels.csv").write_text("file,label\na.png,0\nmissing.png,1\n")
    with pytest.raises(BadInput, match="'missing.png' does not exist"):
        load_dataset(f"folder:{tmp_path / 'c'}")
    from PIL import Image
    Image.new("L", (9, 9)).save(tmp_path / "c" / "missing.png")
    with pytest.raises(BadInput, match="all images must have one size"):
        load_dataset(f"folder:{tmp_path / 'c'}")


# ------------------------------------------------------------------ ts

TS_HEADER = """@problemName Toy
@timeStamps false
@univariate {univariate}
@equalLength {equal}
{label_line}
@data
"""


def write_ts(path, series, labels, regression=False):
    """A .ts file: channels separated by ':', the label last."""
    univariate = "true" if all(len(s) == 1 for s in series) else "false"
    equal = "true" if len({len(c) for s in series for c in s}) == 1 else "false"
    label_line = ("@targetLabel true" if regression
                  else "@classLabel true " + " ".join(sorted(set(map(str, labels)))))
    body = "".join(":".join(",".join(f"{v:g}" for v in c) for c in s) + f":{label}\n"
                   for s, label in zip(series, labels))
    path.write_text(TS_HEADER.format(univariate=univariate, equal=equal,
                                     label_line=label_line) + body)
    return path


def test_ts_train_test_pair_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    train = [rng.normal(3, 2, size=(2, 10)) for _ in range(6)]
    test = [rng.normal(3, 2, size=(2, 10)) for _ in range(4)]
    write_ts(tmp_path / "Toy_TRAIN.ts", train, ["b", "a"] * 3)
    write_ts(tmp_path / "Toy_TEST.ts", test, ["a", "b"] * 2)
    data = load_dataset(f"ts:{tmp_path / 'Toy_TRAIN.ts'}")
    assert (len(data.train), len(data.test)) == (6, 4) and data.task.input_shape == (2, 10)
    assert data.task.label_names == ("a", "b") and data.train.y.tolist() == [1, 0] * 3
    expected = (train[0] - train[0].mean(1, keepdims=True)) / train[0].std(1, keepdims=True)
    assert np.allclose(data.train.x[0].numpy(), expected, atol=1e-4)
    raw = load_dataset(f"ts:{tmp_path / 'Toy_TRAIN.ts'}:raw")
    assert np.allclose(raw.train.x[0].numpy(), train[0], atol=1e-4)


def test_ts_regression_single_file_is_split_and_padded(tmp_path):
    series = [np.arange(1.0, 1.0 + n)[None] for n in [5, 8] * 10]
    write_ts(tmp_path / "reg.ts", series, [float(i) / 3 for i in range(20)], regression=True)
    data = load_dataset(f"ts:{tmp_path / 'reg.ts'}")
    assert data.task.kind == "regression" and data.task.input_shape == (1, 8)
    assert (len(data.train), len(data.test)) == (16, 4)
    short = [x for x in data.train.x if x[0, 4] == x[0, 7]]
    assert short and all(torch.equal(x[0, 4:], x[0, 4].expand(4)) for x in short)


def test_ts_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(f"ts:{tmp_path / 'none.ts'}")
    (tmp_path / "broken.ts").write_text("@problemName X\n@data\n1,2,3:a\n1,2:b:c\n")
    with pytest.raises(BadInput, match="cannot read"):
        load_dataset(f"ts:{tmp_path / 'broken.ts'}")
    write_ts(tmp_path / "nan.ts", [np.array([[1.0, np.nan, 2.0]])] * 4, ["a", "b"] * 2)
    with pytest.raises(BadInput, match="NaN"):
        load_dataset(f"ts:{tmp_path / 'nan.ts'}")
