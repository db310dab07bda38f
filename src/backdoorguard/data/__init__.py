"""Built-in data sets (all offline) and user data.

`load_dataset(name)` returns `Splits(name, train, test)`. Each built-in split is
fixed (its own seed), so every run and every defense sees the same test set.
"""

from __future__ import annotations

from functools import lru_cache

from .. import registry
from ..core.types import Splits
from . import digits, files, mnist, options, rotation, synthgaze, ucr  # noqa: F401  (registers)

__all__ = ["load_dataset", "recipe"]


@lru_cache(maxsize=8)
def _load(name: str) -> Splits:
    return registry.create("dataset", name)


def load_dataset(name: str) -> Splits:
    """A built-in or user data set by name. The tensors are shared between calls:
    treat them as read-only (attacks and defenses copy before changing)."""
    return _load(name)


# The model for data whose entry cannot name one in advance (npz: may hold images,
# series or table rows).
DEFAULT_MODELS = {"image": "cnn-small", "series": "resnet1d", "tabular": "mlp"}


def recipe(name: str) -> dict:
    """The data set's recommended model and training settings:
    `{"model": name, "model_args": {...} (optional), "train": {TrainConfig fields}}`."""
    entry = registry.get("dataset", name)
    settings = dict(entry.extra.get("recipe", {}))
    if "model" not in settings:
        settings["model"] = DEFAULT_MODELS[load_dataset(name).task.modality]
    return settings
