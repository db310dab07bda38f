"""`digits`: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes)."""

from __future__ import annotations

import torch

from ..core.types import ArrayDataset, Splits, TaskSpec, split_indices
from ..registry import register

SPLIT_SEED = 0
TEST_FRACTION = 0.2


@register("dataset", "digits", "scikit-learn's 8×8 handwritten digits, 10 classes",
          tasks=("classification",), modalities=("image",),
          shape=(1, 8, 8), size=1797, units="class", source="sklearn.datasets.load_digits",
          recipe={"model": "cnn-small",
                  "train": {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 2e-3}})
def load_digits() -> Splits:
    """Pixels scaled from 0..16 to [0, 1]; a stratified 80/20 split (fixed seed)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    task = TaskSpec("classification", "image", (1, 8, 8), 10, (0.0, 1.0),
                    label_names=tuple(str(d) for d in range(10)), label_units="class")
    test_index, train_index = split_indices(y, len(y), TEST_FRACTION, SPLIT_SEED)
    full = ArrayDataset(x, y, task)
    return Splits("digits", full.subset(train_index), full.subset(test_index))
