"""Configuration models (pydantic), loadable from YAML; command-line flags override."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BadInput

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for configs: unknown keys are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainConfig(Strict):
    """One training run of the one training loop."""

    epochs: int = Field(20, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["none", "cosine", "step"] = "cosine"
    loss: Literal["auto", "cross_entropy", "mse", "l1", "smooth_l1"] = "auto"
    grad_clip: float | None = Field(None, gt=0)
    drop_last: bool = False
    amp: bool = True


class AttackConfig(Strict):
    """An attack by registry name, its poison rate, target and own parameters."""

    name: str
    poison_rate: float = Field(0.1, gt=0, lt=1)
    target: int | list[float] | None = None
    mode: Literal["all-to-one", "all-to-all"] = "all-to-one"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainRun(Strict):
    """`backdoorguard train`: data, model, optional attack, training settings.

    `train` holds overrides of the data set's recipe (its recommended settings),
    so a YAML file may give only `epochs`, say.
    """

    dataset: str = "digits"
    model: str | None = None
    model_args: dict[str, Any] = Field(default_factory=dict)
    attack: AttackConfig | None = None
    defense: str | None = None
    defense_args: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0


def validate(model: type[M], data: dict[str, Any], source: str = "config") -> M:
    """`model.model_validate(data)` with pydantic's errors turned into one line."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        value = first.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        raise BadInput(f"{source}: {where}: {first['msg']}{shown}") from None


def train_settings(train: TrainConfig | Mapping[str, Any] | None, base: TrainConfig,
                   source: str) -> TrainConfig:
    """The training settings a method runs with: `base` (its defaults) with the
    keys of `train` (a mapping) over it, validated; a `TrainConfig` is taken as
    it is. An unknown key or a bad value is one-line `BadInput` naming `source`."""
    if train is None:
        return base
    if isinstance(train, TrainConfig):
        return train
    if not isinstance(train, Mapping):
        raise BadInput(f"{source} {train!r} must be a mapping of training settings "
                       "(epochs, lr, batch_size, ...)")
    return validate(TrainConfig, {**base.model_dump(), **train}, source)


class _Loader(yaml.SafeLoader):
    """YAML 1.1's safe loader, except that `1e-4` (no dot in the mantissa) is a
    number, as in YAML 1.2 and JSON, not the string '1e-4'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """`yaml.safe_load`, reading `1e-4` as a number (config files and KEY=VALUE flags)."""
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise BadInput(f"cannot read config file {str(path)!r}: {error.strerror}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BadInput(f"config file {str(path)!r} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"config file {str(path)!r} must hold a mapping, not {type(data).__name__}")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `None` in `overrides` means "not given" and keeps `base`."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            inner = merged.get(key)
            merged[key] = merge(inner if isinstance(inner, dict) else {}, value)
        else:
            merged[key] = value
    return merged
