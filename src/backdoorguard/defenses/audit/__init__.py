"""Data audits: which training samples or input regions are suspicious?"""

from . import error_maximizers  # noqa: F401  (registers)
from .error_maximizers import ErrorMaximizers

__all__ = ["ErrorMaximizers"]
