"""Training-time defenses: train a clean model on possibly poisoned data."""

from . import abl, e2abl  # noqa: F401  (registers)
from .abl import ABL
from .e2abl import E2ABL

__all__ = ["ABL", "E2ABL"]
