"""The one exception type for bad input.

Anything a user can get wrong (a name, a value, a file) raises `BadInput` with a
single sentence naming the bad value and what is allowed. The command line turns
it into one line on stderr and exit status 2; the Python API lets it propagate.
"""

from __future__ import annotations

from collections.abc import Iterable


class BadInput(ValueError):
    """A user-supplied value, name or file that cannot be used."""


def check(condition: bool, message: str) -> None:
    """Raise `BadInput(message)` unless `condition` holds."""
    if not condition:
        raise BadInput(message)


def one_of(what: str, value: object, allowed: Iterable[object]) -> None:
    """Raise unless `value` is in `allowed`, listing what is allowed."""
    allowed = list(allowed)
    if value not in allowed:
        listed = ", ".join(str(a) for a in allowed)
        raise BadInput(f"unknown {what} {value!r}; allowed: {listed}")
