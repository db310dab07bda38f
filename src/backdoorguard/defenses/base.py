"""One contract per defense family (after TrojanZoo's taxonomy, with
scikit-learn's estimator discipline: the constructor only stores and checks its
arguments; the work happens in one verb with the same arguments across a family).

    family          verb                                        returns
    detection       detector.inspect(model, clean)              Detection
    audit           auditor.audit(model, train, oracle=None)    Audit
    training-time   defense.fit(model, poisoned)                Trained
    post-training   purifier.purify(model, clean)               Purified

Every verb also takes `runtime=` (seed, device, threads, progress). Results are
frozen dataclasses; `to_dict()` gives their JSON form (tensors and models are
left out: they are written as files beside the JSON).

Register a method with `@register_defense("name", family, description, tasks=..,
modalities=..)`; `create_defense(name, **params)` builds it by name.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from .. import registry
from ..core.runtime import Runtime
from ..core.types import ArrayDataset, TaskSpec
from ..errors import BadInput

FAMILIES = ("detection", "audit", "training", "purification")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 64 else None
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Cost:
    """What a method spent: wall seconds, passes over the data it was given, and
    method-specific counters (oracle calls, restarts, ...)."""

    seconds: float
    passes: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)


class Result:
    """JSON form of a result dataclass; fields named in `_files` are left out."""

    _files: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        data = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in self._files:
                continue
            value = getattr(self, f.name)
            data[f.name] = asdict(value) if isinstance(value, Cost) else _jsonable(value)
        return data


@dataclass(frozen=True)
class Detection(Result):
    """Verdict of a model detector. `score` is higher for more suspicious models
    (used for ROC curves); `backdoored` is `score > threshold`. `target` is the
    estimated attack target (class index or vector), `trigger` the reversed
    trigger in whatever form the method produces (written to files, not JSON)."""

    method: str
    score: float
    threshold: float
    backdoored: bool
    target: int | list[float] | None
    evidence: dict[str, Any]
    cost: Cost
    trigger: Any = None
    _files: ClassVar[tuple[str, ...]] = ("trigger",)


@dataclass(frozen=True)
class Audit(Result):
    """A data audit: suspicious samples or regions and the flagged set."""

    method: str
    flagged: list[int]
    suspicion: list[float]
    regions: list[dict[str, Any]]
    cost: Cost
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trained(Result):
    """A model trained by a training-time defense, and the samples it isolated
    (indices into the training set it was given)."""

    method: str
    model: nn.Module
    isolated: list[int]
    cost: Cost
    details: dict[str, Any] = field(default_factory=dict)
    _files: ClassVar[tuple[str, ...]] = ("model",)


@dataclass(frozen=True)
class Purified(Result):
    """A purified model and what the purifier changed (layers, blocks, masks)."""

    method: str
    model: nn.Module
    changes: dict[str, Any]
    cost: Cost
    _files: ClassVar[tuple[str, ...]] = ("model",)


class Defense(ABC):
    """Shared by all families: the name, the family, what it supports."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""

    def check_task(self, task: TaskSpec) -> None:
        registry.get("defense", self.name, self.family).check_supports(task)


class Detector(Defense):
    family = "detection"

    @abstractmethod
    def inspect(self, model: nn.Module, clean: ArrayDataset, *,
                runtime: Runtime = Runtime()) -> Detection:
        """Is `model` backdoored? `clean` is the defender's small clean set."""


class Auditor(Defense):
    family = "audit"

    @abstractmethod
    def audit(self, model: nn.Module, train: ArrayDataset, oracle: Any = None, *,
              runtime: Runtime = Runtime()) -> Audit:
        """Which training samples or input regions are suspicious?"""


class TrainingDefense(Defense):
    family = "training"

    @abstractmethod
    def fit(self, model: nn.Module, poisoned: ArrayDataset, *,
            runtime: Runtime = Runtime()) -> Trained:
        """Train `model` on possibly poisoned data so it does not learn a backdoor."""


class Purifier(Defense):
    family = "purification"

    @abstractmethod
    def purify(self, model: nn.Module, clean: ArrayDataset, *,
               runtime: Runtime = Runtime()) -> Purified:
        """A cleaner copy of `model` (the input model is never changed)."""


def register_defense(name: str, family: str, description: str, *,
                     tasks: Iterable[str] = registry.TASKS,
                     modalities: Iterable[str] = registry.MODALITIES
                     ) -> Callable[[type[Defense]], type[Defense]]:
    """Class decorator registering a defense under `name` in the registry."""
    if family not in FAMILIES:
        raise ValueError(f"unknown defense family {family!r}")

    def decorate(cls: type[Defense]) -> type[Defense]:
        cls.name = name
        assert cls.family == family, f"{cls.__name__} is not a {family} defense"
        registry.register("defense", name, description, tasks=tasks, modalities=modalities,
                          family=family)(cls)
        return cls

    return decorate


def defense_names(family: str) -> list[str]:
    """Every registered defense of `family` (others plug in by registering)."""
    return [e.name for e in registry.entries("defense") if e.extra.get("family") == family]


def create_defense(name: str, family: str | None = None, **params: Any) -> Defense:
    """Build a registered defense; `family` (if given) must match.

    The one place a defense name and its parameters are checked: an unknown name,
    one of another family or a bad parameter is `BadInput` saying what is allowed."""
    try:
        entry = registry.get("defense", name, family)
    except BadInput:
        if family is None:
            raise
        raise BadInput(f"unknown {family} defense {name!r}; "
                       f"allowed: {', '.join(defense_names(family)) or 'none'}") from None
    if family is not None and entry.extra.get("family") != family:
        raise BadInput(f"{name!r} is a {entry.extra.get('family')} defense, not {family}; "
                       f"{family} defenses: {', '.join(defense_names(family)) or 'none'}")
    check_parameters(name, entry.factory, params)
    try:
        return entry.factory(**params)
    except TypeError as error:
        raise BadInput(f"defense {name!r}: bad parameters {params}: {error}") from None


def _numeric(default: Any, annotation: Any) -> bool:
    """Does a constructor argument take a number (by its default or annotation)?"""
    if isinstance(default, bool):
        return False
    if isinstance(default, (int, float)):
        return True
    text = str(annotation)
    return default is None and text in ("float | None", "int | None", "float", "int")


def _whole(default: Any, annotation: Any) -> bool:
    """Does a constructor argument take a count (an int default or annotation)?"""
    if isinstance(default, bool):
        return False
    return isinstance(default, int) or str(annotation) in ("int", "int | None")


def check_parameters(name: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Unknown parameter names and non-numbers where a number is expected are
    `BadInput` naming the parameter and what is allowed, before any work."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    accepted = {k: p for k, p in signature.parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    for key, value in params.items():
        if key not in accepted:
            raise BadInput(f"defense {name!r} has no parameter {key!r}; "
                           f"allowed: {', '.join(accepted) or 'none'}")
        parameter = accepted[key]
        if (_numeric(parameter.default, parameter.annotation) and value is not None
                and (isinstance(value, bool) or not isinstance(value, (int, float)))):
            raise BadInput(f"defense {name!r}: parameter {key}={value!r} must be a number")
        if isinstance(parameter.default, bool) and not isinstance(value, bool):
            raise BadInput(f"defense {name!r}: parameter {key}={value!r} must be true or false")
        if (_whole(parameter.default, parameter.annotation) and isinstance(value, float)
                and not value.is_integer()):
            raise BadInput(f"defense {name!r}: parameter {key}={value!r} must be a whole number")
