"""Defenses, grouped by what they need and return: detection, audit,
training-time, post-training purification."""

from . import audit  # noqa: F401,E402  (registers)
from . import detection  # noqa: F401,E402  (registers)
from . import purification  # noqa: F401,E402  (registers)
from . import training  # noqa: F401,E402  (registers)
