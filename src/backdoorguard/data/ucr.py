"""`ucr:NAME` and `tser:NAME`: the UCR/UEA classification archives and the TSER
regression archives that aeon bundles (aeon < 1.7), with their official
train/test splits.

The files are read straight from aeon's bundled data folder with aeon's `.ts`
reader (the files `aeon.datasets.load_classification` / `load_regression` read
for these names), so a name that is not bundled can never start a download: it
is refused with the list of bundled names. Other archives: download the `.ts`
files once and use `ts:PATH`.

Preparation (also used for `ts:PATH`):

- **z-normalisation** per series and per channel (mean 0, standard deviation 1
  over the observed time points), the UCR archive's own convention and what
  the ResNet baseline (Wang et al., 2017) trains on. A constant channel becomes
  zeros. Append `:raw` to the name (`ucr:GunPoint:raw`) to keep the values as
  stored.
- **Unequal lengths** (JapaneseVowels: 7–29 steps, PickupGestureWiimoteZ):
  after normalisation each series is padded at its end to the longest length
  in the training and test files by repeating its last observed value (per
  channel). Repeating rather than zero-filling avoids a step that a model (or a
  trigger detector) could mistake for signal; resnet1d's global average pooling
  then sees a held final value. Alternatives not taken: truncation to the
  shortest series (loses most of JapaneseVowels' longer utterances) and
  resampling (changes the time scale of each series differently).
- **Labels** and **input range**: see `data.arrays` (sorted class indices with
  the original names kept; the training range widened by 10 % on each side).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from ..core.types import Splits
from ..errors import BadInput
from ..registry import register
from .arrays import build_splits, check_finite

RAW_SUFFIX = ":raw"
SERIES_RECIPE = {"model": "resnet1d",
                 "train": {"epochs": 150, "batch_size": 16, "optimizer": "adam", "lr": 1e-3}}

# name: (channels, length, train size, test size, classes, what it is). Checked
# against the files by tests/data/test_ucr.py.
CLASSIFICATION = {
    "ACSF1": (1, 1460, 100, 100, 10, "power consumption of 10 kinds of home appliance"),
    "ArrowHead": (1, 251, 36, 175, 3, "outlines of arrowheads (angle-based), 3 shapes"),
    "BasicMotions": (6, 100, 40, 40, 4, "smart-watch accelerometer and gyroscope, "
                                        "4 activities"),
    "Covid3Month_disc": (1, 84, 140, 61, 3, "daily COVID-19 cases per country, death rate "
                                           "in 3 bins"),
    "GunPoint": (1, 150, 50, 150, 2, "hand position while drawing a gun or pointing"),
    "ItalyPowerDemand": (1, 24, 67, 1029, 2, "a day of Italian power demand: winter or summer"),
    "JapaneseVowels": (12, 29, 270, 370, 9, "12 LPC cepstra of a spoken vowel, 9 speakers; "
                                            "unequal lengths 7-29, padded"),
    "OSULeaf": (1, 427, 200, 242, 6, "leaf outlines, 6 species"),
    "PickupGestureWiimoteZ": (1, 361, 50, 50, 10, "Wiimote z-acceleration of 10 gestures; "
                                                  "unequal lengths, padded"),
}
# name: (channels, length, train size, test size, label, units, what it is)
REGRESSION = {
    "Covid3Month": (1, 84, 140, 61, "death_rate", "deaths per confirmed case",
                    "3 months of daily COVID-19 cases per country -> its death rate"),
    "CardanoSentiment": (2, 24, 74, 33, "sentiment", "normalised score",
                         "a day of hourly Cardano close price and volume -> that day's "
                         "normalised sentiment score"),
}


# Per-archive settings where the general recipe is not the best use of a few
# CPU minutes (measured by benchmarks/data_bars.py).
RECIPES: dict[str, dict] = {}


def bundled_folder() -> Path:
    import aeon.datasets

    return Path(aeon.datasets.__file__).parent / "data"


def read_ts(path: str | Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A `.ts` file as a list of C×T float arrays and its labels (aeon's reader)."""
    from aeon.datasets import load_from_ts_file

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"time-series file {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            x, y = load_from_ts_file(str(path))
    except Exception as error:  # aeon raises IOError, ValueError, ... for malformed files
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadInput(f"cannot read {str(path)!r} as a .ts file: {first}") from None
    if y is None or len(y) == 0:
        raise BadInput(f"{str(path)!r} holds no labelled series (a .ts file needs class labels "
                       f"or target values)")
    series = [np.asarray(s, dtype=np.float64) for s in x]
    series = [s.reshape(1, -1) if s.ndim == 1 else s for s in series]
    return series, np.asarray(y)


def znormalise(series: np.ndarray) -> np.ndarray:
    """Per channel of one C×T series: mean 0, standard deviation 1 (constant → 0)."""
    mean = series.mean(axis=1, keepdims=True)
    std = series.std(axis=1, keepdims=True)
    return (series - mean) / np.where(std > 0, std, 1.0)


def pad_to(series: np.ndarray, length: int) -> np.ndarray:
    """Pad a C×T series at its end to `length` by repeating its last value."""
    missing = length - series.shape[1]
    return np.pad(series, ((0, 0), (0, missing)), mode="edge") if missing else series


def series_splits(name: str, train: tuple[list[np.ndarray], np.ndarray],
                  test: tuple[list[np.ndarray], np.ndarray] | None, *, normalise: bool = True,
                  units: str = "", output_names: tuple[str, ...] = ()) -> Splits:
    """Series and labels to `Splits`: check, z-normalise, pad, infer the task."""
    parts = [train] + ([test] if test is not None else [])
    channels = {s.shape[0] for part, _ in parts for s in part}
    if len(channels) != 1:
        raise BadInput(f"{name}: series have different numbers of channels: {sorted(channels)}")
    length = max(s.shape[1] for part, _ in parts for s in part)
    arrays = []
    for which, (series, labels) in zip(("training", "test"), parts):
        for s in series:
            check_finite(s, name, f"{which} series")
        if normalise:
            series = [znormalise(s) for s in series]
        arrays.append((np.stack([pad_to(s, length) for s in series]), labels))
    x_train, y_train = arrays[0]
    x_test, y_test = arrays[1] if test is not None else (None, None)
    return build_splits(name, x_train, y_train, x_test, y_test, modality="series", units=units,
                        output_names=output_names)


def _parse(name: str, table: dict, prefix: str) -> tuple[str, bool]:
    """`NAME` or `NAME:raw` → (NAME, normalise); refuses names that are not bundled."""
    normalise = not name.endswith(RAW_SUFFIX)
    base = name if normalise else name[:-len(RAW_SUFFIX)]
    if base not in table:
        raise BadInput(f"{prefix}{base!r} is not bundled with aeon; bundled: "
                       f"{', '.join(sorted(table))} (other archives: ts:PATH to a .ts file)")
    return base, normalise


def _bundled(base: str) -> tuple:
    folder = bundled_folder() / base
    return read_ts(folder / f"{base}_TRAIN.ts"), read_ts(folder / f"{base}_TEST.ts")


def load_ucr(name: str) -> Splits:
    """`ucr:NAME` (z-normalised) or `ucr:NAME:raw`: a bundled classification archive."""
    base, normalise = _parse(name, CLASSIFICATION, "ucr:")
    train, test = _bundled(base)
    return series_splits(f"ucr:{name}", train, test, normalise=normalise)


def load_tser(name: str) -> Splits:
    """`tser:NAME` (z-normalised) or `tser:NAME:raw`: a bundled regression archive;
    `label_range` from the training labels."""
    base, normalise = _parse(name, REGRESSION, "tser:")
    train, test = _bundled(base)
    label, units = REGRESSION[base][4:6]
    return series_splits(f"tser:{name}", train, test, normalise=normalise, units=units,
                         output_names=(label,))


def _register_all() -> None:
    register("dataset", "ucr:", "UCR/UEA classification archive bundled with aeon: ucr:NAME "
             "(z-normalised per series) or ucr:NAME:raw", tasks=("classification",),
             modalities=("series",), shape=("C", "T"), size="the archive's", units="class",
             source="aeon bundled archives", recipe=SERIES_RECIPE)(load_ucr)
    register("dataset", "tser:", "TSER regression archive bundled with aeon: tser:NAME or "
             "tser:NAME:raw", tasks=("regression",), modalities=("series",),
             shape=("C", "T"), size="the archive's", units="the archive's label units",
             source="aeon bundled archives", recipe=SERIES_RECIPE)(load_tser)
    for base, (channels, length, n_train, n_test, _, about) in CLASSIFICATION.items():
        register("dataset", f"ucr:{base}", about, tasks=("classification",),
                 modalities=("series",), shape=(channels, length), size=n_train + n_test,
                 units="class", source=f"aeon bundled {base}_TRAIN/TEST.ts",
                 recipe=RECIPES.get(base, SERIES_RECIPE))(lambda base=base: load_ucr(base))
    for base, (channels, length, n_train, n_test, _, units, about) in REGRESSION.items():
        register("dataset", f"tser:{base}", about, tasks=("regression",),
                 modalities=("series",), shape=(channels, length), size=n_train + n_test,
                 units=units, source=f"aeon bundled {base}_TRAIN/TEST.ts",
                 recipe=RECIPES.get(base, SERIES_RECIPE))(lambda base=base: load_tser(base))


_register_all()
