"""Cheap stand-ins for the audit tests: an analytic oracle and hand-made surrogates
whose errors are known, so no training is needed."""

import math

import numpy as np
import torch
from torch import nn

from backdoorguard.core.oracle import Oracle
from backdoorguard.core.types import ArrayDataset, TaskSpec

DIM = 3
TASK = TaskSpec("regression", "tabular", (DIM,), 1, (0.0, 1.0), label_range=((-1.0, 3.0),))


def truth(x):
    x = torch.as_tensor(x, dtype=torch.float64)
    return (torch.sin(3 * x[:, 0]) + x[:, 1] ** 2 + 0.5 * x[:, 2])[:, None]


def analytic_oracle(budget=None, low=0.0, high=1.0):
    """`truth` on the box [low, high]^3 (rescaled to [0, 1]^3 first)."""
    return Oracle(lambda x: truth((x - low) / (high - low)).numpy()[:, 0], low, high, dim=DIM,
                  budget=budget, name="analytic")


class Surrogate(nn.Module):
    """truth + Gaussian bumps (height, centre, width) + a small smooth wobble."""

    def __init__(self, bumps=(), wobble=0.002):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.bumps = [(h, torch.tensor(c, dtype=torch.float32), w) for h, c, w in bumps]
        self.wobble = wobble

    def forward(self, x):
        out = truth(x).float() * self.scale
        out = out + self.wobble * torch.sin(7 * x.sum(1, keepdim=True))
        for height, centre, width in self.bumps:
            distance = (x - centre).pow(2).sum(1, keepdim=True)
            out = out + height * torch.exp(-distance / (2 * width ** 2))
        return out


def training_data(n=3000, clusters=(), seed=0):
    """Inputs dense in the middle of the box and thin at its corners (a Beta(3, 3)
    law, a tenth uniform) plus dense clusters (centre, radius, count), labelled by truth."""
    generator = torch.Generator().manual_seed(seed)
    beta = torch.distributions.Beta(3.0, 3.0)
    torch.manual_seed(seed)
    parts = [beta.sample((n - n // 10, DIM)), torch.rand(n // 10, DIM, generator=generator)]
    for centre, radius, count in clusters:
        offset = torch.randn(count, DIM, generator=generator)
        offset = offset / offset.norm(dim=1, keepdim=True) * radius * torch.rand(
            count, 1, generator=generator) ** (1 / DIM)
        parts.append((torch.tensor(centre) + offset).clamp(0, 1))
    x = torch.cat(parts)
    return ArrayDataset(x, truth(x).float(), TASK)
