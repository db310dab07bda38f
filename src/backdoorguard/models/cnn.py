"""`cnn-small`: a compact CNN for small images (digits, MNIST, eye patches)."""

from __future__ import annotations

from torch import nn

from ..core.types import TaskSpec
from ..errors import BadInput
from ..registry import register
from .base import Backbone


def conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
              nn.ReLU(inplace=True),
              nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
              nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register("model", "cnn-small", "two conv stages (2 convs each), pooled to a small grid, "
          "a 128-d feature layer and a linear head", modalities=("image",))
def cnn_small(task: TaskSpec, width: int = 32, features: int = 128, grid: int | None = None) -> nn.Module:
    """Stage 1: 2×conv(width) + max-pool; stage 2: 2×conv(2·width) + max-pool;
    adaptive average pooling to a `grid`×`grid` map (2 for inputs under 24 px,
    else 3, keeping where things are: gaze needs the iris position), then a
    `features`-d ReLU layer and the head."""
    if len(task.input_shape) != 3:
        raise BadInput(f"cnn-small takes C×H×W images, not inputs of shape {task.input_shape}")
    channels, height, width_px = task.input_shape
    if min(height, width_px) < 4:
        raise BadInput(f"cnn-small needs images of at least 4×4 pixels, not {height}×{width_px}")
    if width < 1 or features < 1:
        raise BadInput(f"cnn-small width {width} and features {features} must be positive")
    grid = grid or (2 if min(height, width_px) < 24 else 3)
    stages = [conv_block(channels, width, pool=True), conv_block(width, 2 * width, pool=True)]
    neck = nn.Sequential(nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
                         nn.Linear(2 * width * grid * grid, features), nn.ReLU(inplace=True))
    return Backbone(nn.Identity(), stages, neck, features, task)
