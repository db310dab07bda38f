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
    """Decorator that registers `factory` under `(kind, name)`."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}")
    tasks, modalities = tuple(tasks), tuple(modalities)
    assert set(tasks) <= set(TASKS) and set(modalities) <= set(MODALITIES)

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _entries[kind] and _entries[kind][name].factory is not factory:
            raise ValueError(f"{kind} {name!r} is registered twice")
        _entries[kind][name] = Entry(kind, name, factory, description, tasks, modalities, extra)
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
    return sorted(_entries[kind].values(), key=lambda e: e.name)


def get(kind: str, name: str) -> Entry:
    """The entry for `name`; `BadInput` listing the known names if there is none.

    A name may carry a parameter after a colon (`ucr:GunPoint`, `npz:data.npz`);
    the entry is then the one registered as `ucr:` and the factory receives the
    part after the colon as its first argument.
    """
    _load_builtins()
    table = _entries[kind]
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
