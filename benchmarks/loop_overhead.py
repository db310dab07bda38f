"""Training-loop overhead: `backdoorguard.core.training.fit` against a bare PyTorch
loop with the same model, data, batch size, optimiser, schedule and seed.

Runs are interleaved (ours, bare, ours, bare, ...) so both see the same machine
load; the result is the median of the per-pair time ratios.

    python benchmarks/loop_overhead.py [--repeats 7] [--threads 1] [--out docs/results/loop_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from backdoorguard.config import TrainConfig
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import fit
from backdoorguard.core.types import ArrayDataset
from backdoorguard.data import load_dataset
from backdoorguard.models import create_model


def bare_loop(model, x, y, config: TrainConfig, seed: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), config.batch_size):
            index = order[i:i + config.batch_size]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
    return time.perf_counter() - start


def ours(model, data: ArrayDataset, config: TrainConfig, seed: int) -> float:
    start = time.perf_counter()
    fit(model, data, config, runtime=Runtime(seed=seed, device="cpu", progress=False))
    return time.perf_counter() - start


def upscaled(data: ArrayDataset, size: int) -> ArrayDataset:
    """Digits resized to `size`×`size`: a heavier per-batch load on the same labels."""
    from dataclasses import replace

    x = F.interpolate(data.x, size=(size, size), mode="bilinear", align_corners=False)
    return ArrayDataset(x, data.y, replace(data.task, input_shape=(1, size, size)))


def measure(data: ArrayDataset, config: TrainConfig, repeats: int) -> dict:
    ratios, times_ours, times_bare = [], [], []
    for repeat in range(repeats):
        torch.manual_seed(repeat)
        model_a = create_model("cnn-small", data.task)
        model_b = create_model("cnn-small", data.task)
        model_b.load_state_dict(model_a.state_dict())
        a = ours(model_a, data, config, seed=repeat)
        b = bare_loop(model_b, data.x, data.y, config, seed=repeat)
        times_ours.append(a)
        times_bare.append(b)
        ratios.append(a / b)
    same = all(torch.allclose(p, q, atol=1e-5) for p, q in
               zip(model_a.state_dict().values(), model_b.state_dict().values()))
    return {"samples": len(data), "input": list(data.task.input_shape),
            "median_ratio": round(statistics.median(ratios), 4),
            "ratios": [round(r, 4) for r in ratios],
            "median_seconds_ours": round(statistics.median(times_ours), 3),
            "median_seconds_bare": round(statistics.median(times_bare), 3),
            "same_final_weights": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/results/loop_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(epochs=args.epochs, batch_size=64, optimizer="adam", lr=2e-3,
                         schedule="cosine")
    train = load_dataset("digits").train
    results = {"threads": args.threads, "config": config.model_dump(),
               "digits 8x8": measure(train, config, args.repeats),
               "digits 28x28": measure(upscaled(train, 28), config, args.repeats)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
