"""`rotation`: a regression task on images. mnist5k digits rotated by an angle
drawn uniformly from [−60°, 60°]; the label is that angle in degrees (positive =
counter-clockwise as the picture is viewed).

Each digit of mnist5k's fixed train/test split appears once, at its own seeded
angle (a fixed seed per split, independent of the run's seed). The rotation is a
bilinear resampling about the image centre (`affine_grid` + `grid_sample`); pixels
that come from outside the picture are black, as MNIST's background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.types import ArrayDataset, Splits, TaskSpec
from ..registry import register
from .mnist import mnist5k_arrays

MAX_ANGLE = 60.0
TOLERANCE = 5.0          # degrees: an output this close to the attacker's target hits it
ANGLE_SEEDS = {"train": 10, "test": 11}


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each N×C×H×W image counter-clockwise (as viewed) by its angle in degrees."""
    radians = degrees.to(images.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    # affine_grid maps output to input coordinates (x right, y down): the inverse
    # of the picture's counter-clockwise turn.
    theta = torch.stack([torch.stack([cos, -sin, zero], -1),
                         torch.stack([sin, cos, zero], -1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False).clamp(0.0, 1.0)


def _rotated(images: torch.Tensor, seed: int, task: TaskSpec) -> ArrayDataset:
    generator = torch.Generator().manual_seed(seed)
    angles = (torch.rand(len(images), generator=generator) * 2 - 1) * MAX_ANGLE
    return ArrayDataset(rotate(images, angles), angles.reshape(-1, 1), task)


@register("dataset", "rotation", "mnist5k digits rotated by a seeded angle in [-60°, 60°]; "
          "label = the angle", tasks=("regression",), modalities=("image",),
          shape=(1, 28, 28), size=5000, units="degrees", source="mnist5k, rotated here",
          recipe={"model": "cnn-small",
                  "train": {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 2e-3}})
def load_rotation() -> Splits:
    """4,000 training and 1,000 test digits (mnist5k's split), one angle each."""
    x_train, _, x_test, _ = mnist5k_arrays()
    task = TaskSpec("regression", "image", (1, 28, 28), 1, (0.0, 1.0),
                    label_names=("angle",), label_units="degrees",
                    label_range=((-MAX_ANGLE, MAX_ANGLE),), tol=TOLERANCE)
    return Splits("rotation", _rotated(x_train, ANGLE_SEEDS["train"], task),
                  _rotated(x_test, ANGLE_SEEDS["test"], task))
