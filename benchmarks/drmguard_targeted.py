"""Is a *targeted* collapse costlier on a clean synthgaze model than on a BadNets one?

For the zoo's clean and BadNets models (synthgaze:2500): the BadNets patch itself
on its own model (size, output variance left, share of outputs within 5° of the
target), and a trigger generator (DRMGuard's `TriggerGenerator`, the same Adam
steps) trained to send a model's outputs to a BadNets model's target with the
smallest change: loss = λ · target_residual + size, one run per λ. A clean model
is scored against every BadNets model's target, a BadNets model against its own.
`--landing`: instead, scan every named model with DRMGuard (`--detector`, by default
the displaced collapse: displacement=1, margin=1; scan seed 0) and report where the
reversed outputs land relative to each BadNets model's target.

    PYTHONPATH=src:benchmarks python benchmarks/drmguard_targeted.py [--clean clean0 clean1]
        [--badnets badnets0 badnets1] [--lambdas 0.3 3] [--steps 150] [--epochs 12]
        [--out docs/results/drmguard_targeted.json] [--landing]
        [--dataset synthgaze:2500] [--detector '{"displacement": 1, "margin": 1}']
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from backdoorguard.config import TrainRun
from backdoorguard.core.metrics import distances
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import StepLoss, predict
from backdoorguard.defenses.base import create_defense
from backdoorguard.defenses.detection.common import (Reversal, TriggerGenerator,
                                                     clean_statistics, output_collapse,
                                                     reverse, target_residual)
from backdoorguard.pipeline import clean_subset, resolve
from detection_zoo import attack_of, folder_of, trained, zoo

TOL = 5.0


@torch.no_grad()
def outcome(net, clean_x, reversed_x, stats, target, span) -> dict:
    """Size of the change and where it sends the outputs, on the whole clean set."""
    outputs = net(reversed_x)
    clean_outputs = net(clean_x)
    gap = distances(outputs, target.expand_as(outputs))
    return {"size": float(((reversed_x - clean_x).abs() / span).mean()),
            "collapse": float(output_collapse(outputs, stats["output_var"])),
            "within_tol": float((gap <= TOL).float().mean()),
            "mean_distance": float(gap.mean()),
            "clean_distance": float(distances(clean_outputs, target.expand_as(outputs)).mean())}


def targeted(net, clean, stats, target, lambda_, steps, seed) -> dict:
    span = clean.task.input_range[1] - clean.task.input_range[0]
    torch.manual_seed(seed)
    generator = TriggerGenerator(clean.task)

    def objective(wrapper: Reversal, batch) -> StepLoss:
        reversed_x = wrapper.trigger(batch.x)
        residual = target_residual(wrapper.model(reversed_x), target, stats["output_var"])
        size = ((reversed_x - batch.x).abs() / span).mean()
        return StepLoss(lambda_ * residual + size)

    reverse(Reversal(net, generator), clean, objective, steps=steps, lr=1e-3, batch_size=16,
            runtime=Runtime(seed=seed, device="cpu", threads=1, progress=False))
    reversed_x = predict(generator.eval(), clean.x, batch_size=256, device=torch.device("cpu"))
    return outcome(net, clean.x, reversed_x, stats, target, span)


def landing(models: dict, names: list[str], badnets: list[str], clean, runtime,
            params: dict) -> list[dict]:
    """Where DRMGuard (with `params`) sends each model's outputs, against each
    BadNets model's target."""
    detector = create_defense("drmguard", "detection", **params)
    rows = []
    for name in names:
        net = trained(models[name], runtime)[0].eval()
        found = detector.inspect(net, clean, runtime=runtime)
        with torch.no_grad():
            outputs = net(found.trigger(clean.x))
        for bad in badnets:
            target = torch.tensor(models[bad]["target"])
            gap = distances(outputs, target.expand_as(outputs))
            rows.append({"model": name, "target_of": bad, "how": f"scan {params}",
                         "size": found.evidence["trigger_size"], "score": found.score,
                         "collapse_point": found.target,
                         "within_tol": float((gap <= TOL).float().mean()),
                         "mean_distance": float(gap.mean())})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", nargs="+", default=["clean0", "clean1"])
    parser.add_argument("--badnets", nargs="+", default=["badnets0", "badnets1"])
    parser.add_argument("--lambdas", nargs="+", type=float, default=[0.3, 3.0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("docs/results/drmguard_targeted.json"))
    parser.add_argument("--landing", action="store_true")
    parser.add_argument("--dataset", default="synthgaze:2500")
    parser.add_argument("--detector", type=json.loads,
                        default={"displacement": 1.0, "margin": 1.0},
                        help="DRMGuard's parameters for --landing (JSON)")
    args = parser.parse_args()
    runtime = Runtime(seed=0, device="cpu", threads=1, progress=False).apply()
    dataset = args.dataset
    clean = clean_subset(resolve(TrainRun(dataset=dataset)).data, 0.05, seed=0)
    span = clean.task.input_range[1] - clean.task.input_range[0]
    models = {m["name"]: m for m in zoo(dataset, 0, 10, 4, args.epochs)}
    for name in [*args.clean, *args.badnets]:
        if name not in models or not (folder_of(models[name]) / "metrics.json").exists():
            parser.error(f"model {name!r} is not a trained zoo model ({dataset}, "
                         f"{args.epochs} epochs)")
    if args.landing:
        rows = landing(models, [*args.badnets, *args.clean], args.badnets, clean, runtime,
                       args.detector)
        args.out.write_text(json.dumps({"params": vars(args) | {"out": str(args.out)},
                                        "rows": rows}, indent=1) + "\n")
        return
    rows = []
    for bad in args.badnets:
        model = models[bad]
        net, record = trained(model, runtime)
        net.eval()
        target = torch.tensor(model["target"])
        attack = attack_of(model, clean.task)
        stats = clean_statistics(net, clean.x, torch.device("cpu"))
        row = {"model": bad, "target_of": bad, "how": "planted patch",
               **outcome(net, clean.x, attack.apply(clean.x), stats, target, span)}
        print(row, flush=True)
        rows.append(row)
        for name in [bad, *args.clean]:
            scanned = net if name == bad else trained(models[name], runtime)[0].eval()
            scanned_stats = stats if name == bad else clean_statistics(
                scanned, clean.x, torch.device("cpu"))
            for lambda_ in args.lambdas:
                row = {"model": name, "target_of": bad, "how": f"targeted λ={lambda_:g}",
                       **targeted(scanned, clean, scanned_stats, target, lambda_, args.steps,
                                  seed=0)}
                print(row, flush=True)
                rows.append(row)
    args.out.write_text(json.dumps({"params": vars(args) | {"out": str(args.out)},
                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
