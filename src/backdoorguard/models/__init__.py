"""Model zoo. Every model follows the convention in `models.base`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import registry
from ..core.types import TaskSpec
from ..errors import BadInput
from . import cnn, mlp, preact_resnet, resnet1d  # noqa: F401  (registers)
from .base import Backbone, check_convention, has_convention, skip_connections

__all__ = ["Backbone", "check_convention", "create_model", "has_convention",
           "skip_connections"]


def create_model(name: str, task: TaskSpec, **args: Any) -> nn.Module:
    """Build a registered model for `task`; checks it accepts the task's inputs."""
    entry = registry.get("model", name)
    entry.check_supports(task)
    try:
        model = entry.factory(task, **args)
    except TypeError as error:
        raise BadInput(f"model {name!r}: bad arguments {args}: {error}") from None
    model.model_spec = {"name": name, "args": dict(args)}
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *task.input_shape))
    except RuntimeError as error:
        raise BadInput(f"model {name!r} cannot take inputs of shape {task.input_shape}: "
                       f"{str(error).splitlines()[0]}") from None
    if tuple(out.shape) != (2, task.num_outputs):
        raise BadInput(f"model {name!r} gives outputs of shape {tuple(out.shape[1:])}, "
                       f"expected ({task.num_outputs},)")
    return model
