"""Grid files: the axes of a benchmark and their expansion into cells.

A grid (YAML, validated by pydantic; unknown keys are errors) names data sets,
models per data set, attacks (with poison rates; `none` included), defenses of
any family (`none` included) and seeds. It expands to the cross product, less
the combinations the registry says cannot work (an image attack on time
series, a regression-only defense on a classifier), which are counted as skipped.

    name: small
    datasets:
      - digits
      - {name: digits, label: digits-mlp, models: [mlp], train: {epochs: 20}}
    train: {epochs: 10}              # overrides of each data set's recipe
    attacks: [none, {name: badnets, poison_rate: [0.05, 0.1], target: 0}]
    defenses: [none, {name: ft, params: {epochs: 5}}]
    seeds: [0, 1]                    # or a count: 3 means [0, 1, 2]
    clean_fraction: 0.05             # the defender's clean data (detection, purification)
    resources: {cpus: 1, gpus: 0}    # per cell; torch threads follow cpus
    imports: [my_package.defenses]   # modules (or .py files) that register more methods

Each cell is keyed by the SHA-256 of its full configuration in canonical JSON
(training settings resolved from the recipe; labels and resources left out, so
renaming a label or moving to a bigger machine keeps the results). The model a
cell starts from is keyed the same way by (data set, model, training, attack,
seed): every defense applied to it shares one trained model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .. import registry
from ..config import Strict, TrainConfig, load_yaml, merge, validate
from ..errors import BadInput

NONE = "none"
KEY_LENGTH = 20
MODEL_KEYS = ("dataset", "model", "train", "attack", "seed")


def canonical_json(data: Any) -> str:
    """The one JSON text of `data`: sorted keys, no spaces, ASCII."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def config_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:KEY_LENGTH]


def _named(value: Any) -> Any:
    """Axis entries may be a bare name; make that `{name: ...}`."""
    return {"name": value} if isinstance(value, str) else value


class ModelChoice(Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None


class DatasetAxis(Strict):
    name: str
    label: str | None = None
    models: list[ModelChoice] | None = None
    train: dict[str, Any] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return [_named(m) for m in value] if isinstance(value, list) else value


class AttackAxis(Strict):
    name: str
    label: str | None = None
    poison_rate: float | list[float] = 0.1
    target: int | list[float] | None = None
    mode: Literal["all-to-one", "all-to-all"] = "all-to-one"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("poison_rate")
    @classmethod
    def _rates(cls, value: float | list[float]) -> float | list[float]:
        for rate in value if isinstance(value, list) else [value]:
            if not 0.0 < rate < 1.0:
                raise ValueError(f"poison rate {rate} must lie strictly between 0 and 1")
        if isinstance(value, list) and not value:
            raise ValueError("give at least one poison rate")
        return value


class DefenseAxis(Strict):
    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class Resources(Strict):
    """What one cell needs; the Ray executor asks for exactly this per task."""

    cpus: int = Field(1, ge=1)
    gpus: float = Field(0.0, ge=0)


class GridFile(Strict):
    name: str = "grid"
    imports: list[str] = Field(default_factory=list)
    datasets: list[DatasetAxis] = Field(min_length=1)
    models: list[ModelChoice] | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    attacks: list[AttackAxis] = Field(default_factory=lambda: [AttackAxis(name=NONE)])
    defenses: list[DefenseAxis] = Field(default_factory=lambda: [DefenseAxis(name=NONE)])
    seeds: list[int] | int = Field(default_factory=lambda: [0])
    clean_fraction: float = Field(0.05, gt=0, lt=1)
    resources: Resources = Field(default_factory=Resources)
    device: str = "auto"

    @field_validator("datasets", "models", "attacks", "defenses", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return [_named(item) for item in value] if isinstance(value, list) else value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | int) -> list[int]:
        seeds = list(range(value)) if isinstance(value, int) else value
        if not seeds:
            raise ValueError("give at least one seed")
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {seeds} must be distinct non-negative integers")
        return seeds


@dataclass(frozen=True)
class Cell:
    """One run of the grid. `config` is what the key hashes; `labels` are the
    display names of its data set, model, attack and defense."""

    key: str
    config: dict[str, Any]
    labels: dict[str, str]
    family: str
    model_key: str

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def model_config(self) -> dict[str, Any]:
        """What the shared trained model depends on (its cache key hashes this)."""
        return {k: self.config[k] for k in MODEL_KEYS}


@dataclass(frozen=True)
class Grid:
    """A validated grid: its settings, its cells and what the registry ruled out."""

    name: str
    source: str
    cells: list[Cell]
    skipped: list[str]
    imports: list[str]
    resources: Resources
    device: str
    files: dict[str, Any] = field(default_factory=dict)

    def models(self) -> dict[str, dict[str, Any]]:
        """Model key → model config, in grid order."""
        return {cell.model_key: cell.model_config for cell in self.cells}


# ---------------------------------------------------------------- imports

def import_plugins(imports: list[str]) -> None:
    """Import modules (dotted names or `.py` paths) that register methods."""
    for item in imports:
        if item.endswith(".py"):
            path = Path(item).resolve()
            name = f"backdoorguard_plugin_{path.stem}_{config_key({'p': str(path)})}"
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or not path.is_file():
                raise BadInput(f"grid import {item!r}: no such file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(item)
            except ImportError as error:
                raise BadInput(f"grid import {item!r} cannot be imported: {error}") from None


# ---------------------------------------------------------------- expansion

def _label(name: str, given: str | None, extra: dict[str, Any]) -> str:
    if given:
        return given
    shown = ", ".join(f"{k}={v}" for k, v in sorted(extra.items()))
    return f"{name} ({shown})" if shown else name


def _attack_configs(axis: AttackAxis) -> list[tuple[dict[str, Any] | None, str]]:
    if axis.name == NONE:
        return [(None, axis.label or NONE)]
    rates = axis.poison_rate if isinstance(axis.poison_rate, list) else [axis.poison_rate]
    out = []
    for rate in rates:
        config = {"name": axis.name, "poison_rate": rate, "target": axis.target,
                  "mode": axis.mode, "params": axis.params}
        label = axis.label or axis.name
        if len(rates) > 1 or axis.label is None:
            label = f"{label} @{rate:g}"
        out.append((config, label))
    return out


def _supports(entry: registry.Entry, dataset: registry.Entry) -> bool:
    return bool(set(entry.tasks) & set(dataset.tasks)) and bool(
        set(entry.modalities) & set(dataset.modalities))


def _check_names(grid: GridFile, where: str) -> dict[str, str]:
    """Every name must be registered; defense parameters are checked by building
    each defense once (constructors only store and check). Returns defense → family."""
    from ..defenses.base import create_defense

    families = {}
    for kind, items in (("dataset", grid.datasets), ("attack", grid.attacks),
                        ("defense", grid.defenses)):
        for i, item in enumerate(items):
            if item.name == NONE and kind != "dataset":
                continue
            try:
                entry = registry.get(kind, item.name)
            except BadInput as error:
                raise BadInput(f"{where}: {kind}s[{i}]: {error}") from None
            if kind == "defense":
                families[item.name] = entry.extra.get("family", "")
                try:
                    create_defense(item.name, **item.params)
                except BadInput as error:
                    raise BadInput(f"{where}: defenses[{i}]: {error}") from None
    for i, dataset in enumerate(grid.datasets):
        for model in (dataset.models or grid.models or []):
            try:
                registry.get("model", model.name)
            except BadInput as error:
                raise BadInput(f"{where}: datasets[{i}] ({dataset.name}): {error}") from None
    return families


def _dataset_models(dataset: DatasetAxis, grid: GridFile, where: str) -> list[ModelChoice]:
    from ..data import recipe

    models = dataset.models or grid.models
    if models:
        return models
    default = recipe(dataset.name).get("model")
    if default is None:
        raise BadInput(f"{where}: data set {dataset.name!r} has no default model; give `models`")
    return [ModelChoice(name=default)]


def _train_config(dataset: DatasetAxis, grid: GridFile, where: str) -> dict[str, Any]:
    from ..data import recipe

    merged = merge(merge(recipe(dataset.name).get("train", {}), grid.train), dataset.train)
    return validate(TrainConfig, merged, f"{where}: train settings of {dataset.name}").model_dump()


def _defense_config(axis: DefenseAxis, family: str, clean_fraction: float) -> dict[str, Any]:
    config: dict[str, Any] = {"name": axis.name, "family": family, "params": axis.params}
    if family in ("detection", "purification"):
        config["clean_fraction"] = clean_fraction
    return config


def _axes_for(dataset: DatasetAxis, grid: GridFile, families: dict[str, str], where: str,
              skipped: list[str]) -> tuple[list, list, list]:
    """The models, attacks and defenses that apply to one data set."""
    data_entry = registry.get("dataset", dataset.name)

    def keep(kind: str, name: str) -> bool:
        if name == NONE or _supports(registry.get(kind, name), data_entry):
            return True
        skipped.append(f"{kind} {name} on {dataset.name}")
        return False

    models = [(m, _label(m.name, m.label, m.args))
              for m in _dataset_models(dataset, grid, where) if keep("model", m.name)]
    attacks = [pair for axis in grid.attacks if keep("attack", axis.name)
               for pair in _attack_configs(axis)]
    defenses = []
    for axis in grid.defenses:
        if keep("defense", axis.name):
            family = families.get(axis.name, NONE)
            config = None if axis.name == NONE else _defense_config(axis, family,
                                                                    grid.clean_fraction)
            defenses.append((config, family, _label(axis.name, axis.label, axis.params)))
    return models, attacks, defenses


def expand(grid: GridFile, where: str = "grid") -> tuple[list[Cell], list[str]]:
    """All cells of `grid` in a fixed order, and descriptions of skipped combinations."""
    families = _check_names(grid, where)
    cells: list[Cell] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for dataset in grid.datasets:
        train = _train_config(dataset, grid, where)
        models, attacks, defenses = _axes_for(dataset, grid, families, where, skipped)
        for (model, model_label), (attack, attack_label), (defense, family, defense_label), seed \
                in product(models, attacks, defenses, grid.seeds):
            config = {"dataset": dataset.name, "model": {"name": model.name, "args": model.args},
                      "train": train, "attack": attack, "defense": defense, "seed": seed}
            labels = {"dataset": dataset.label or dataset.name, "model": model_label,
                      "attack": attack_label, "defense": defense_label}
            key = config_key(config)
            described = "/".join(labels.values()) + f"/seed {seed}"
            if key in seen:
                raise BadInput(f"{where}: the cell {described} is listed twice "
                               f"(same configuration as {seen[key]})")
            seen[key] = described
            model_key = config_key({k: config[k] for k in MODEL_KEYS})
            cells.append(Cell(key, config, labels, family, model_key))
    # A skipped combination is reported once, not once per seed and defense.
    return cells, list(dict.fromkeys(skipped))


def load_grid(path: str | Path) -> Grid:
    """Read, validate and expand a grid file; `BadInput` (one line) on any problem."""
    where = str(path)
    data = load_yaml(path)
    grid = validate(GridFile, data, where)
    # A .py import is relative to the grid file; workers get the absolute path.
    imports = [str((Path(path).parent / item).resolve()) if item.endswith(".py") else item
               for item in grid.imports]
    try:
        import_plugins(imports)
    except BadInput as error:
        raise BadInput(f"{where}: {error}") from None
    from ..core.runtime import resolve_device

    resolve_device(grid.device)
    cells, skipped = expand(grid, where)
    if not cells:
        raise BadInput(f"{where}: the grid has no cell the registry supports "
                       f"(skipped: {'; '.join(skipped)})")
    return Grid(grid.name, where, cells, skipped, imports, grid.resources, grid.device, data)
