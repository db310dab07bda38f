"""How far the defender's clean set alone takes a model: resnet1d trained from
scratch (Adam 2e-3, batch 64, 100 steps) on the 5 % clean subset of a series
data set, with and without the purifiers' series augmentation, tested on the
test split. The level a purifier falls to when it re-fits its model to the
clean set (docs/purification-methods.md, series with a handful of clean samples).

    python benchmarks/purification_scratch.py [ucr:GunPoint ucr:BasicMotions] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

from backdoorguard.config import TrainConfig
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import default_objective, fit, predict
from backdoorguard.data import load_dataset
from backdoorguard.defenses.purification.augment import SeriesAugment, augmented
from backdoorguard.models import create_model
from backdoorguard.pipeline import clean_subset

TRAIN = TrainConfig(epochs=100, batch_size=64, optimizer="adam", lr=2e-3, amp=False)


def main() -> None:
    parser = argparse.ArgumentParser(description="resnet1d from scratch on the clean subset")
    parser.add_argument("datasets", nargs="*", default=["ucr:GunPoint", "ucr:BasicMotions"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runtime = Runtime(seed=args.seed, device="cpu", threads=1, progress=False)
    for name in args.datasets:
        data = load_dataset(name)
        clean = clean_subset(data, 0.05, seed=args.seed)
        for augment in (False, True):
            torch.manual_seed(args.seed)
            model = create_model("resnet1d", data.task)
            objective = default_objective(data.task, TRAIN)
            if augment:
                objective = augmented(objective, SeriesAugment(data.task, seed=args.seed))
            epochs = TRAIN.epochs // clean.num_batches(TRAIN.batch_size)
            fit(model, clean, TRAIN.model_copy(update={"epochs": epochs}), objective=objective,
                runtime=runtime)
            accuracy = float((predict(model, data.test.x).argmax(1) == data.test.y).float().mean())
            print(f"{name}: {len(clean)} clean series, augment {augment}: "
                  f"test accuracy {accuracy:.3f}", flush=True)


if __name__ == "__main__":
    main()
