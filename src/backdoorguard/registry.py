"""Names to factories, shared by the Python API, the command line and the benchmarks.

Each entry carries a one-line description and the tasks and modalities it supports,
so `backdoorguard list` can print them and a method can refuse a task it does not
handle before doing any work.

    from backdoorguard import registry
    registry.create("model", "cnn-small", task)
    registry.get("attack", "badnets").supports(task)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput

KINDS = ("dataset", "model", "attack", "defense")
TASKS = ("classification", "regression")
MODALITIES = ("image", "series", "tabular")

# Modules whose import registers the built-in entries; imported on first lookup so
# that `import backdoorguard` stays cheap.
_BUILTIN_MODULES = (
    "backdoorguard.data",
    "backdoorguard.models",
    "backdoorguard.attacks",
    "backdoorguard.defenses",
)


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    tasks: tuple[str, ...] = TASKS
    modalities: tuple[str, ...] = MODALITIES
    extra: dict[str, Any] = field(default_factory=dict)

    def supports(self, task: Any) -> bool:
        return task.kind in self.tasks and task.modality in self.modalities

    def check_supports(self, task: Any) -> None:
        """Raise `BadInput` when this entry cannot handle `task`."""
        if not self.supports(task):
            raise BadInput(
                f"{self.kind} {self.name!r} supports {'/'.join(self.tasks)} on "
                f"{'/'.join(self.modalities)} data, not {task.kind} on {task.modality} data"
            )


_entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
# One name may stand for methods of different families (DRMGuard detects and
# mitigates): every entry with a `family` is also kept under (name, family).
_by_family: dict[str, dict[tuple[str, str], Entry]] = {kind: {} for kind in KINDS}
_loaded = False


def register(
    kind: str,
    name: str,
    description: str,
    *,
    tasks: Iterable[str] = TASKS,
    modalities: Iterable[str] = MODALITIES,
    **extra: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers `factory` under `(kind, name)`.

    A name may be registered again for another `family` (an `extra` key); `get`
    without a family then returns the first registration.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}")
    tasks, modalities = tuple(tasks), tuple(modalities)
    assert set(tasks) <= set(TASKS) and set(modalities) <= set(MODALITIES)

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        entry = Entry(kind, name, factory, description, tasks, modalities, extra)
        family = extra.get("family")
        existing = _entries[kind].get(name)
        if existing is not None and existing.factory is not factory:
            if family is None or (name, family) in _by_family[kind]:
                raise ValueError(f"{kind} {name!r} is registered twice")
        else:
            _entries[kind][name] = entry
        if family is not None:
            _by_family[kind][(name, family)] = entry
        return factory

    return decorate


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def entries(kind: str) -> list[Entry]:
    """All entries of one kind, sorted by name."""
    _load_builtins()
    every = {id(e): e for e in [*_entries[kind].values(), *_by_family[kind].values()]}
    return sorted(every.values(), key=lambda e: (e.name, str(e.extra.get("family", ""))))


def get(kind: str, name: str, family: str | None = None) -> Entry:
    """The entry for `name` (of `family`, when given and registered so); `BadInput`
    listing the known names if there is none.

    A name may carry a parameter after a colon (`ucr:GunPoint`, `npz:data.npz`);
    the entry is then the one registered as `ucr:` and the factory receives the
    part after the colon as its first argument.
    """
    _load_builtins()
    table = _entries[kind]
    if family is not None and (name, family) in _by_family[kind]:
        return _by_family[kind][(name, family)]
    if name in table:
        return table[name]
    prefix, sep, _ = name.partition(":")
    if sep and prefix + ":" in table:
        return table[prefix + ":"]
    known = ", ".join(sorted(table))
    raise BadInput(f"unknown {kind} {name!r}; known: {known}")


def create(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
    entry = get(kind, name)
    if entry.name.endswith(":"):
        return entry.factory(name.partition(":")[2], *args, **kwargs)
    return entry.factory(*args, **kwargs)
