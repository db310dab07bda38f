"""User data: `npz:PATH`, `folder:PATH`, `ts:PATH`.

- `npz:PATH` — a NumPy `.npz` archive with arrays `x` and `y`, and optionally
  `x_test` and `y_test` (both or neither). Loaded with `allow_pickle=False`:
  object arrays are refused. `uint8` inputs are images or signals in 0..255 and
  are scaled to [0, 1]; other inputs are used as given. Samples must be C×H×W
  (images; a grey image is 1×H×W), C×T (series) or F (table rows).
- `folder:PATH` — image files plus `PATH/labels.csv`. The CSV has a header, a
  `file` column (paths relative to the folder), and either a `label` column
  (classification; any text or integers) or one or more numeric columns
  (regression, one output each, named by their headers). An optional `split`
  column with `train`/`test` gives the split. Images are read with Pillow, as
  grey (1 channel) when every image is grey, else RGB, scaled to [0, 1]; all
  must have the same size.
- `ts:PATH` — a `.ts` file (the UCR/UEA format) read with aeon, prepared as
  `ucr:` archives are (z-normalised per series; `ts:PATH:raw` keeps the
  values). A file named `..._TRAIN.ts` with a `..._TEST.ts` beside it gives
  the official split.

Without a test part, a seeded 80/20 split (stratified for classification) holds
out the test set; the seed is fixed, so every run sees the same split. Task,
modality, shapes and labels are inferred and checked by `data.arrays`; every
problem is a `BadInput` naming the file and what is wrong.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ..core.types import Splits
from ..errors import BadInput
from ..registry import register
from .arrays import build_splits
from .ucr import RAW_SUFFIX, read_ts, series_splits

NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
USER_RECIPE = {"train": {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3}}


@register("dataset", "npz:", "your arrays: npz:PATH with x, y (and optional x_test, y_test)",
          shape=("any",), size="any number of", units="your units", source="a .npz file",
          recipe=USER_RECIPE)
def load_npz(path: str) -> Splits:
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"npz file {path!r} does not exist")
    if not zipfile.is_zipfile(file):
        raise BadInput(f"cannot read {path!r} as a .npz archive (np.savez writes one)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            names = set(archive.files)
            arrays = {key: archive[key] for key in NPZ_ARRAYS if key in names}
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise BadInput(f"cannot read {path!r} as a .npz archive: {error}") from None
    except ValueError:
        raise BadInput(f"{path!r} holds object arrays, which need pickle; save plain numeric "
                       f"or string arrays") from None
    if "x" not in arrays or "y" not in arrays:
        raise BadInput(f"{path!r} must hold arrays named x and y (optionally x_test and "
                       f"y_test); it holds: {', '.join(sorted(names)) or 'nothing'}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise BadInput(f"{path!r} has only one of x_test and y_test; give both or neither")
    x, x_test = (_scale_bytes(arrays.get(k)) for k in ("x", "x_test"))
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        raise BadInput(f"{path!r}: x has shape {x.shape}, which looks like channels-last "
                       f"images; store them as N×C×H×W (e.g. x.transpose(0, 3, 1, 2))")
    return build_splits(f"npz:{path}", x, arrays["y"], x_test, arrays.get("y_test"))


def _scale_bytes(x: np.ndarray | None) -> np.ndarray | None:
    return x.astype(np.float32) / 255.0 if x is not None and x.dtype == np.uint8 else x


@register("dataset", "folder:", "your images: folder:PATH with image files and labels.csv",
          modalities=("image",), shape=("C", "H", "W"), size="any number of", units="your units",
          source="a folder of images", recipe={"model": "cnn-small", **USER_RECIPE})
def load_folder(path: str) -> Splits:
    folder = Path(path)
    if not folder.is_dir():
        raise BadInput(f"image folder {path!r} does not exist")
    table = folder / "labels.csv"
    header, rows = _read_csv(table)
    if "file" not in header:
        raise BadInput(f"{table}: needs a 'file' column; it has: {', '.join(header)}")
    extra = {"file", "split"}
    label_columns = ["label"] if "label" in header else [h for h in header if h not in extra]
    if not label_columns:
        raise BadInput(f"{table}: needs a 'label' column (classification) or numeric label "
                       f"columns (regression)")
    images = _read_images(folder, [row["file"] for row in rows], table)
    labels = _labels(rows, label_columns, table)
    where = f"folder:{path}"
    if "split" not in header:
        return build_splits(where, images, labels, None, None, modality="image",
                            output_names=label_columns if labels.dtype.kind == "f" else ())
    split = np.array([row["split"].strip().lower() for row in rows])
    bad = sorted(set(split) - {"train", "test"})
    if bad:
        raise BadInput(f"{table}: split values must be train or test, not {', '.join(bad)}")
    train, test = split == "train", split == "test"
    return build_splits(where, images[train], labels[train], images[test], labels[test],
                        modality="image",
                        output_names=label_columns if labels.dtype.kind == "f" else ())


def _read_csv(table: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not table.is_file():
        raise BadInput(f"image folder {str(table.parent)!r} has no labels.csv")
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = list(reader)
    if not rows:
        raise BadInput(f"{table}: holds no rows")
    for number, row in enumerate(rows, start=2):
        if None in row or any(row.get(h) is None for h in header):
            raise BadInput(f"{table}: line {number} does not have {len(header)} fields")
    return header, rows


def _labels(rows: list[dict[str, str]], columns: list[str], table: Path) -> np.ndarray:
    """Class labels as integers when all are integers, else text; regression as floats."""
    if columns == ["label"]:
        values = [row["label"].strip() for row in rows]
        try:
            return np.array([int(v) for v in values], dtype=np.int64)
        except ValueError:
            return np.array(values)
    try:
        return np.array([[float(row[c]) for c in columns] for row in rows], dtype=np.float64)
    except ValueError:
        raise BadInput(f"{table}: label columns {', '.join(columns)} must be numbers for "
                       f"regression (or name a single class column 'label')") from None


def _read_images(folder: Path, names: list[str], table: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    pictures = []
    for name in names:
        file = folder / name
        if not file.is_file():
            raise BadInput(f"{table}: image {name!r} does not exist in {str(folder)!r}")
        try:
            with Image.open(file) as image:
                image.load()
                pictures.append(image.copy())
        except (UnidentifiedImageError, OSError):
            raise BadInput(f"{table}: {name!r} is not an image Pillow can read") from None
    grey = all(p.mode in ("1", "L", "I", "I;16", "F") for p in pictures)
    arrays = []
    for name, picture in zip(names, pictures):
        pixels = np.asarray(picture.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
        pixels = pixels[None] if grey else pixels.transpose(2, 0, 1)
        if arrays and pixels.shape != arrays[0].shape:
            raise BadInput(f"{table}: image {name!r} is {pixels.shape[2]}×{pixels.shape[1]} "
                           f"but the first is {arrays[0].shape[2]}×{arrays[0].shape[1]}; all "
                           f"images must have one size")
        arrays.append(pixels)
    return np.stack(arrays)


@register("dataset", "ts:", "your series: ts:PATH to a .ts file (UCR/UEA format), "
          "z-normalised; ts:PATH:raw keeps values", modalities=("series",),
          shape=("C", "T"), size="any number of", units="your units", source="a .ts file",
          recipe={"model": "resnet1d", **USER_RECIPE})
def load_ts(path: str) -> Splits:
    normalise = not path.endswith(RAW_SUFFIX)
    file = Path(path if normalise else path[:-len(RAW_SUFFIX)])
    train = read_ts(file)
    test = None
    if file.name.endswith("_TRAIN.ts"):
        sibling = file.with_name(file.name[:-len("_TRAIN.ts")] + "_TEST.ts")
        if sibling.is_file():
            test = read_ts(sibling)
    return series_splits(f"ts:{path}", train, test, normalise=normalise)
