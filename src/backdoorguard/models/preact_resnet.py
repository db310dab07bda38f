"""`preact-resnet18`: pre-activation ResNet-18 (He et al., 2016), as used across the
backdoor literature for CIFAR-scale images; `width` 64 is the standard model,
16 the CPU-friendly default."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.types import TaskSpec
from ..errors import BadInput
from ..registry import register
from .base import Backbone, SkipScale


class PreActBlock(SkipScale, nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv; out = residual + skip_scale * shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        self.init_skip_scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.skip_scale * shortcut


@register("model", "preact-resnet18", "pre-activation ResNet-18 (4 stages × 2 blocks); "
          "width 16 by default, 64 is the standard", modalities=("image",))
def preact_resnet18(task: TaskSpec, width: int = 16) -> nn.Module:
    if len(task.input_shape) != 3:
        raise BadInput(f"preact-resnet18 takes C×H×W images, not inputs of shape {task.input_shape}")
    if width < 1:
        raise BadInput(f"preact-resnet18 width {width} must be positive")
    channels = task.input_shape[0]
    stem = nn.Conv2d(channels, width, 3, padding=1, bias=False)
    stages, c_in = [], width
    for i, mult in enumerate((1, 2, 4, 8)):
        c_out = width * mult
        stride = 1 if i == 0 else 2
        stages.append(nn.Sequential(PreActBlock(c_in, c_out, stride), PreActBlock(c_out, c_out)))
        c_in = c_out
    neck = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(stem, stages, neck, c_in, task)
