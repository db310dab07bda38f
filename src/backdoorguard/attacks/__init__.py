"""Attack zoo: the backdoors defenses are measured against."""

from . import localized, patch  # noqa: F401  (registers)
from .base import Attack, create_attack

__all__ = ["Attack", "create_attack"]
