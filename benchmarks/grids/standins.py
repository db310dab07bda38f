"""Stand-in defenses for the example grids, until the real ones are merged.

The example grids exercise every path of the benchmark runner with realistic
costs; when the real purifiers and detectors (FT, FP, NAD, D3, SMS; Neural
Cleanse, FeatureRE, DRMGuard) are registered, replace these names in the grids
and drop the `imports:` line. Loaded by grids through `imports: [standins.py]`,
never by the package itself.

- `standin-finetune` (purification): fine-tune every layer on the defender's
  clean data (Adam, lr 1e-3, 10 epochs, batch 32) — the FT baseline's idea.
- `standin-patch-search` (detection): a brute-force trigger search over 3×3
  patches (4 corners × 4 patterns); the score is the largest share of clean
  inputs, not already of that class, that one patch sends to one class. Its
  search space contains BadNets' default patch, so it is an optimistic
  detector for BadNets and blind to other triggers.
"""

from __future__ import annotations

import copy
import time

import torch

from backdoorguard.config import TrainConfig
from backdoorguard.core.training import fit, predict
from backdoorguard.defenses.base import (Cost, Detection, Detector, Purified, Purifier,
                                         register_defense)
from backdoorguard.errors import BadInput


@register_defense("standin-finetune", "purification",
                  "stand-in: fine-tune on the defender's clean data")
class StandinFinetune(Purifier):
    def __init__(self, epochs: int = 10, lr: float = 1e-3) -> None:
        if epochs < 1 or lr <= 0:
            raise BadInput(f"epochs {epochs} must be ≥ 1 and lr {lr} > 0")
        self.epochs, self.lr = epochs, lr

    def purify(self, model, clean, *, runtime):
        start = time.perf_counter()
        model = copy.deepcopy(model)
        history = fit(model, clean, TrainConfig(epochs=self.epochs, batch_size=32, lr=self.lr),
                      runtime=runtime)
        return Purified(self.name, model, {"epochs": self.epochs, "layers": "all"},
                        Cost(time.perf_counter() - start, history.passes))


def _patterns(size: int, lo: float, hi: float) -> dict[str, torch.Tensor]:
    board = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 == 0
    return {"checkerboard": torch.where(board, hi, lo), "inverse": torch.where(board, lo, hi),
            "white": torch.full((size, size), hi), "black": torch.full((size, size), lo)}


@register_defense("standin-patch-search", "detection",
                  "stand-in: brute-force search over small corner patches",
                  modalities=("image",))
class StandinPatchSearch(Detector):
    def __init__(self, size: int = 3, threshold: float = 0.5) -> None:
        self.size, self.threshold = size, threshold

    def inspect(self, model, clean, *, runtime):
        start = time.perf_counter()
        _, height, width = clean.task.input_shape
        lo, hi = clean.task.input_range
        s = self.size
        best = (-1.0, None, None)
        for corner, (row, col) in {"top-left": (0, 0), "top-right": (0, width - s),
                                   "bottom-left": (height - s, 0),
                                   "bottom-right": (height - s, width - s)}.items():
            for name, pattern in _patterns(s, lo, hi).items():
                x = clean.x.clone()
                x[..., row:row + s, col:col + s] = pattern
                predicted = predict(model, x).argmax(1)
                for target in range(clean.task.num_outputs):
                    others = clean.y != target
                    share = float((predicted[others] == target).float().mean())
                    if share > best[0]:
                        best = (share, target, (corner, name, row, col, pattern))
        score, target, (corner, name, row, col, pattern) = best
        mask = torch.zeros(height, width)
        mask[row:row + s, col:col + s] = 1.0
        full = torch.zeros(height, width)
        full[row:row + s, col:col + s] = pattern
        return Detection(self.name, score, self.threshold, score > self.threshold, target,
                         {"corner": corner, "pattern": name}, Cost(time.perf_counter() - start, 16.0),
                         trigger={"mask": mask, "pattern": full})
