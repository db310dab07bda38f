"""`resnet1d`: the residual network baseline for time-series classification
(Wang, Yan & Oates, 2017; Ismail Fawaz et al., 2019): three residual blocks of
three convolutions (kernels 8, 5, 3), global average pooling, a linear head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.types import TaskSpec
from ..errors import BadInput
from ..registry import register
from .base import Backbone, SkipScale


class ResidualBlock1d(SkipScale, nn.Module):
    """conv8-BN-ReLU, conv5-BN-ReLU, conv3-BN; out = ReLU(residual + skip_scale · shortcut)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        layers = []
        for i, kernel in enumerate((8, 5, 3)):
            # "same" padding, split unevenly for even kernels (as Keras does)
            layers += [nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0),
                       nn.Conv1d(c_in if i == 0 else c_out, c_out, kernel, bias=False),
                       nn.BatchNorm1d(c_out)]
            if i < 2:
                layers.append(nn.ReLU())
        self.residual = nn.Sequential(*layers)
        if c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out))
        else:
            self.shortcut = nn.BatchNorm1d(c_out)
        self.init_skip_scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x) + self.skip_scale * self.shortcut(x))


@register("model", "resnet1d", "1-D ResNet for series: 3 residual blocks (kernels 8/5/3), "
          "global average pooling", modalities=("series",))
def resnet1d(task: TaskSpec, width: int = 64) -> nn.Module:
    """Channels `width`, 2·`width`, 2·`width` (64, 128, 128 in the original)."""
    if len(task.input_shape) != 2:
        raise BadInput(f"resnet1d takes C×T series, not inputs of shape {task.input_shape}")
    if width < 1:
        raise BadInput(f"resnet1d width {width} must be positive")
    channels = task.input_shape[0]
    sizes = (width, 2 * width, 2 * width)
    stages, c_in = [], channels
    for c_out in sizes:
        stages.append(ResidualBlock1d(c_in, c_out))
        c_in = c_out
    neck = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())
    return Backbone(nn.Identity(), stages, neck, c_in, task)
