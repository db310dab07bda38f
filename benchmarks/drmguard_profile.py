"""Where a DRMGuard scan's time goes, measured by component on one model.

Times (medians over repeated calls, one process, side by side) of the pieces of
one optimisation step on a batch of clean inputs: the generator's forward pass,
the model's forward pass and the loss terms, the backward pass through both, the
Adam step, and MTR's extra saliency backward pass; then the per-run measurement
on the whole clean set and the clean statistics; then one full default scan,
timed, with its passes over the clean set.

    PYTHONPATH=src python benchmarks/drmguard_profile.py [MODEL_DIR] [--dataset synthgaze:2500]
        [--threads 1] [--repeats 30] [--batch-size 32] [--width 16]
        [--scan NAME=JSON ...]

Without MODEL_DIR an untrained model of the data set's recipe is profiled (the
cost of a step does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from backdoorguard.config import TrainRun
from backdoorguard.core.checkpoint import load_model
from backdoorguard.core.runtime import Runtime
from backdoorguard.defenses.base import create_defense
from backdoorguard.defenses.detection.common import TriggerGenerator, clean_statistics
from backdoorguard.defenses.detection.drmguard import DRMGuard, drmguard_terms
from backdoorguard.models import create_model
from backdoorguard.pipeline import clean_subset, resolve


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--dataset", default="synthgaze:2500")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16, help="the generator's width")
    parser.add_argument("--scan", action="append", default=[], metavar="NAME=JSON",
                        help="also time one full scan with these detector parameters, e.g. "
                             "'old={\"batch_size\": 32, \"probe_steps\": 0}' or 'new={}' "
                             "(repeatable; scans run one after the other in this process)")
    args = parser.parse_args()
    runtime = Runtime(seed=0, device="auto", threads=args.threads, progress=False).apply()
    device = runtime.torch_device
    resolved = resolve(TrainRun(dataset=args.dataset))
    clean = clean_subset(resolved.data, 0.05, seed=0).to(device)
    if args.model:
        model, _ = load_model(args.model)
    else:
        torch.manual_seed(0)
        model = create_model(resolved.model_name, clean.task, **resolved.model_args)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    detector = DRMGuard(batch_size=args.batch_size, width=args.width)
    stats = clean_statistics(model, clean.x, device)
    span = clean.task.input_range[1] - clean.task.input_range[0]
    generator = TriggerGenerator(clean.task, detector.width).to(device)
    optimizer = torch.optim.Adam(generator.parameters(), lr=detector.lr)
    x = clean.x[:detector.batch_size]
    weight = torch.rand(clean.task.input_shape[-2:], device=device)

    def loss_of(reversed_x):
        terms = drmguard_terms(model, x, reversed_x, stats, span, 1 + detector.kappa * weight)
        return terms, 2.0 * terms["collapse"] + terms["size"] + 0.2 * terms["angle"]

    def generator_forward():
        with torch.no_grad():
            generator(x)

    def model_forward():
        with torch.no_grad():
            loss_of(x)

    def forward():
        loss_of(generator(x))

    def forward_backward():
        optimizer.zero_grad()
        loss_of(generator(x))[1].backward()

    def step():
        forward_backward()
        optimizer.step()

    def step_with_saliency():
        optimizer.zero_grad()
        reversed_x = generator(x)
        terms, loss = loss_of(reversed_x)
        torch.autograd.grad(terms["collapse"], reversed_x, retain_graph=True)
        loss.backward()
        optimizer.step()

    def model_backward_only():
        # the model's forward and backward to its input, no generator
        x_in = x.clone().requires_grad_(True)
        terms, loss = loss_of(x_in)
        loss.backward()

    def measure():
        DRMGuard.measure(model, generator, clean, stats, device)

    def statistics_pass():
        clean_statistics(model, clean.x, device)

    rows = {name: timed(fn, args.repeats) for name, fn in [
        ("generator forward (no grad)", generator_forward),
        ("model forward + terms (no grad)", model_forward),
        ("generator + model forward (grad)", forward),
        ("model forward + backward to the input", model_backward_only),
        ("forward + backward (generator + model)", forward_backward),
        ("one step (forward, backward, Adam)", step),
        ("one step with MTR saliency", step_with_saliency),
        (f"measure on the clean set ({len(clean)} inputs)", measure),
        ("clean statistics (one pass)", statistics_pass),
    ]}
    print(f"{args.dataset}, batch {detector.batch_size}, {len(clean)} clean inputs, "
          f"{args.threads} thread(s), medians of {args.repeats}:")
    for name, seconds in rows.items():
        print(f"  {name:45s} {1000 * seconds:8.1f} ms")
    for item in args.scan:
        name, params = item.split("=", 1)
        params = json.loads(params)
        found = create_defense("drmguard", "detection", **params).inspect(model, clean,
                                                                          runtime=runtime)
        counters = {k: round(v, 1) for k, v in found.cost.counters.items()}
        print(f"scan {name} {params}: {found.cost.seconds:.1f} s, {found.cost.passes:.1f} "
              f"passes, {counters}, score {found.score:.4g}, runs "
              f"{[[round(s['effective_size'], 4) for s in r['stages']] for r in found.evidence['runs']]}",
              flush=True)

if __name__ == "__main__":
    main()
