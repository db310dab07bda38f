"""The model convention every defense relies on (after timm).

    forward_features(x) -> [B, D]   penultimate features
    head                             the last nn.Linear (D -> num_outputs)
    forward(x) = head(forward_features(x))
    stages                           nn.ModuleList of the trunk's stages, in order
    forward_stages(x) -> list        each stage's output (for shallow heads, NAD, FP)
    residual blocks                  carry a `skip_scale` buffer (1.0 = plain), found
                                     by `skip_connections(model)`

`Backbone` implements this for our models; a user's model only needs
`forward_features` and `head` for most defenses.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.types import TaskSpec
from ..errors import BadInput


class Backbone(nn.Module):
    """stem -> stages -> neck (pooling to the feature vector) -> head."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module], neck: nn.Module,
                 feature_dim: int, task: TaskSpec):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.neck = neck
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, task.num_outputs)
        init_head(self.head, task)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.neck(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def init_head(head: nn.Linear, task: TaskSpec) -> None:
    """Regression heads start at the centre of the label range, so training in the
    label's own units (degrees, prices) does not begin far off."""
    if task.kind == "regression" and task.label_range:
        with torch.no_grad():
            centres = torch.tensor([(lo + hi) / 2 for lo, hi in task.label_range])
            head.bias.copy_(centres)


class SkipScale(nn.Module):
    """Mixin for residual blocks: out = residual(x) + skip_scale * shortcut(x).

    `skip_scale` is a buffer (saved in checkpoints); 1.0 multiplies exactly, so
    outputs equal those of the unscaled block bit for bit.
    """

    def init_skip_scale(self) -> None:
        self.register_buffer("skip_scale", torch.ones(()))


def skip_connections(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, block) of every residual block with a `skip_scale` buffer, in order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(getattr(module, "skip_scale", None), torch.Tensor)]


def has_convention(model: nn.Module) -> bool:
    return callable(getattr(model, "forward_features", None)) and isinstance(
        getattr(model, "head", None), nn.Linear)


def check_convention(model: nn.Module, method: str) -> None:
    """`BadInput` unless `model` has `forward_features(x)` and a linear `head`:
    `method` reads features and the head through this convention, never through
    our own classes."""
    if has_convention(model):
        return
    missing = ("no forward_features" if not callable(getattr(model, "forward_features", None))
               else "no nn.Linear head")
    raise BadInput(f"{method} needs a model with forward_features(x) and a linear `head` "
                   f"(the timm convention); {type(model).__name__} has {missing}")
