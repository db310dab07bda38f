"""`mlp`: a multilayer perceptron for tabular inputs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..core.types import TaskSpec
from ..errors import BadInput, one_of
from ..registry import register
from .base import Backbone

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@register("model", "mlp", "multilayer perceptron (hidden layers are its stages)",
          modalities=("tabular",))
def mlp(task: TaskSpec, hidden: Sequence[int] = (128, 128, 128), activation: str = "silu") -> nn.Module:
    """Each hidden layer (linear + activation) is one stage; the last hidden layer
    is the feature vector. SiLU by default: smooth, so gradients of the output
    with respect to the input (used by the regression audit) are well behaved."""
    if len(task.input_shape) != 1:
        raise BadInput(f"mlp takes flat feature vectors, not inputs of shape {task.input_shape}")
    one_of("activation", activation, ACTIVATIONS)
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise BadInput(f"mlp hidden sizes {hidden} must be a non-empty list of positive sizes")
    stages, c_in = [], task.input_shape[0]
    for size in hidden:
        stages.append(nn.Sequential(nn.Linear(c_in, size), ACTIVATIONS[activation]()))
        c_in = size
    return Backbone(nn.Identity(), stages, nn.Identity(), c_in, task)
