"""From NumPy arrays to checked `Splits`: shared by the series archives (`ucr.py`)
and the user-file readers (`files.py`).

The rules, in one place:

- **Task.** Integer, boolean or string labels mean classification; floating-point
  labels mean regression (one output per column of `y`).
- **Modality.** Per-sample shape C×H×W is an image, C×T a series, F a table row.
- **Class labels** become indices 0..K−1 in sorted order of the training labels
  (numeric order when every label reads as a number, so "2" comes before "10");
  the original names are kept in `TaskSpec.label_names`. A test label absent from
  the training labels is an error: no model could predict it.
- **`input_range`** (what triggers are clipped to): [0, 1] for images whose
  training pixels lie there, else the training minimum and maximum; for series
  and tables the training minimum and maximum widened by `RANGE_MARGIN` of the
  span on each side, so a trigger may reach a little past the values seen in
  training (test series do) without becoming implausible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..core.types import ArrayDataset, Splits, TaskSpec, split_indices
from ..errors import BadInput

RANGE_MARGIN = 0.1
TEST_FRACTION = 0.2
SPLIT_SEED = 0
MODALITY_BY_RANK = {3: "image", 2: "series", 1: "tabular"}


def label_kind(y: np.ndarray, where: str) -> str:
    """`classification` for integer/bool/string labels, `regression` for floats."""
    if y.dtype.kind in "iub" or y.dtype.kind in "US":
        return "classification"
    if y.dtype.kind == "f":
        return "regression"
    raise BadInput(f"{where}: labels of type {y.dtype} are neither class labels (integers or "
                   f"strings) nor regression targets (floats)")


def _sort_key(values: Sequence) -> list:
    """Numeric order when every label reads as a number, else plain sorted order."""
    try:
        return sorted(values, key=lambda v: float(v))
    except (TypeError, ValueError):
        return sorted(values, key=str)


def encode_labels(train: np.ndarray, test: np.ndarray, where: str
                  ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Class labels to indices in sorted order; (y_train, y_test, label_names)."""
    for part, labels in (("training", train), ("test", test)):
        if labels.ndim != 1:
            raise BadInput(f"{where}: class labels must be one per sample, but the {part} labels "
                           f"have shape {labels.shape}")
    classes = _sort_key(np.unique(train).tolist())
    if len(classes) < 2:
        raise BadInput(f"{where}: classification needs at least 2 classes in the training "
                       f"labels, found {len(classes)}: {classes}")
    index = {value: i for i, value in enumerate(classes)}
    unseen = sorted({str(v) for v in np.unique(test).tolist() if v not in index})
    if unseen:
        raise BadInput(f"{where}: test labels {', '.join(unseen)} do not occur in the training "
                       f"labels {', '.join(map(str, classes))}")

    def encode(labels: np.ndarray) -> torch.Tensor:
        return torch.tensor([index[v] for v in labels.tolist()], dtype=torch.long)

    return encode(train), encode(test), tuple(str(c) for c in classes)


def regression_targets(y: np.ndarray, where: str, part: str) -> torch.Tensor:
    """Float labels as an N×outputs tensor; one output per column."""
    if y.ndim not in (1, 2):
        raise BadInput(f"{where}: regression labels must be N or N×outputs, but the {part} "
                       f"labels have shape {y.shape}")
    check_finite(y, where, f"{part} labels")
    values = torch.tensor(y, dtype=torch.float32)
    return values.reshape(len(values), -1)


def check_finite(array: np.ndarray, where: str, what: str) -> None:
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise BadInput(f"{where}: {what} contain {bad} NaN or infinite values")


def modality_of(sample_shape: tuple[int, ...], where: str) -> str:
    if len(sample_shape) not in MODALITY_BY_RANK or 0 in sample_shape:
        raise BadInput(f"{where}: samples of shape {sample_shape} are neither images (C×H×W), "
                       f"series (C×T) nor table rows (F)")
    return MODALITY_BY_RANK[len(sample_shape)]


def input_range(x: torch.Tensor, modality: str) -> tuple[float, float]:
    """The range triggers are clipped to, from the training inputs (module docstring)."""
    lo, hi = float(x.min()), float(x.max())
    if modality == "image":
        if lo >= 0.0 and hi <= 1.0:
            return 0.0, 1.0
        return (lo, hi) if hi > lo else (lo, lo + 1.0)
    span = hi - lo if hi > lo else 1.0
    return lo - RANGE_MARGIN * span, hi + RANGE_MARGIN * span


def build_splits(name: str, x_train: np.ndarray | torch.Tensor, y_train: np.ndarray,
                 x_test: np.ndarray | torch.Tensor | None, y_test: np.ndarray | None, *,
                 modality: str | None = None, units: str = "",
                 output_names: Sequence[str] = ()) -> Splits:
    """Check arrays, infer the task and build `Splits`.

    Without a test part, a stratified (classification) or plain random split
    holds out `TEST_FRACTION` with the fixed `SPLIT_SEED`, so every run and
    every defense sees the same test set.
    """
    x_train = _inputs(x_train, name, "training inputs")
    if len(x_train) != len(y_train):
        raise BadInput(f"{name}: {len(x_train)} training inputs but {len(y_train)} labels")
    if len(x_train) < 2:
        raise BadInput(f"{name}: needs at least 2 training samples, found {len(x_train)}")
    y_train, y_test = (_text(y) for y in (y_train, y_test))
    kind = label_kind(y_train, name)
    modality = modality or modality_of(tuple(x_train.shape[1:]), name)
    if x_test is None:
        return _split_one(name, x_train, y_train, kind, modality, units, output_names)
    x_test = _inputs(x_test, name, "test inputs")
    if len(x_test) != len(y_test):
        raise BadInput(f"{name}: {len(x_test)} test inputs but {len(y_test)} test labels")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise BadInput(f"{name}: test samples of shape {tuple(x_test.shape[1:])} differ from "
                       f"training samples of shape {tuple(x_train.shape[1:])}")
    if label_kind(y_test, name) != kind:
        raise BadInput(f"{name}: training labels ({y_train.dtype}) mean {kind} but test "
                       f"labels are of type {y_test.dtype}")
    if kind == "classification":
        train_y, test_y, names = encode_labels(y_train, y_test, name)
        task = TaskSpec("classification", modality, tuple(x_train.shape[1:]), len(names),
                        input_range(x_train, modality), label_names=names,
                        label_units=units or "class")
    else:
        train_y = regression_targets(y_train, name, "training")
        test_y = regression_targets(y_test, name, "test")
        if train_y.shape[1] != test_y.shape[1]:
            raise BadInput(f"{name}: {train_y.shape[1]} training label columns but "
                           f"{test_y.shape[1]} test label columns")
        outputs = train_y.shape[1]
        names = tuple(output_names) or (("value",) if outputs == 1
                                        else tuple(f"output{i}" for i in range(outputs)))
        ranges = tuple((float(lo), float(hi)) for lo, hi in
                       zip(train_y.min(0).values, train_y.max(0).values))
        task = TaskSpec("regression", modality, tuple(x_train.shape[1:]), outputs,
                        input_range(x_train, modality), label_names=names, label_units=units,
                        label_range=ranges)
    return Splits(name, ArrayDataset(x_train, train_y, task), ArrayDataset(x_test, test_y, task))


def _split_one(name: str, x: torch.Tensor, y: np.ndarray, kind: str, modality: str | None,
               units: str, output_names: Sequence[str]) -> Splits:
    labels = None
    if kind == "classification":
        labels, _, _ = encode_labels(y, y[:0], name)
    test_index, train_index = split_indices(labels, len(x), TEST_FRACTION, SPLIT_SEED)
    if len(test_index) == 0 or len(train_index) == 0:
        raise BadInput(f"{name}: too few samples ({len(x)}) to hold out a test split")
    pick = lambda idx: idx.numpy()  # noqa: E731
    return build_splits(name, x[train_index], y[pick(train_index)], x[test_index],
                        y[pick(test_index)], modality=modality, units=units,
                        output_names=output_names)


def _text(labels: np.ndarray | None) -> np.ndarray | None:
    """Byte-string labels as text, so their names read `cat`, not `b'cat'`."""
    return labels.astype(str) if labels is not None and labels.dtype.kind == "S" else labels


def _inputs(x: np.ndarray | torch.Tensor, name: str, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iubf":
            raise BadInput(f"{name}: {what} must be numbers, not {x.dtype}")
        check_finite(x, name, what)
        x = torch.tensor(x, dtype=torch.float32)
    elif not torch.isfinite(x).all():
        raise BadInput(f"{name}: {what} contain NaN or infinite values")
    if x.ndim < 2:
        raise BadInput(f"{name}: {what} must be N samples of at least one value, got shape "
                       f"{tuple(x.shape)}")
    return x.float()
