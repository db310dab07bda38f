"""A small DRMGuard probe: do its scores separate clean from backdoored synthgaze
models when the backdoor took and the models are trained as long as the recipe says?

Trains (and caches under benchmarks/.cache/drmguard_probe/, gitignored) a few clean,
Blended (noise pattern, α 0.2) and BadNets (large checkerboard patch) models on
synthgaze:2500 at 20 % poisoning with targets near an edge of the gaze range, then
scans each with DRMGuard under one or more parameter settings and records, per
model, the score's pieces (trigger size, output variance and angle variance left,
every run's numbers), where the reversed trigger sends the outputs compared with the
planted target, how much the reversed perturbation looks like the attack's own, and
DRMGuard's terms for the attack's own trigger.

    PYTHONPATH=src:benchmarks python benchmarks/drmguard_probe.py [--epochs 12]
        [--clean 3] [--blended 3] [--badnets 2] [--train-only]
        [--scan NAME=JSON ...] [--threads 1] [--out docs/results/drmguard_probe.json]

`--scan default={}` (the default) scans with DRMGuard's defaults; more settings can be
compared side by side on the same models, e.g. `--scan 'l05={"lambdas": [0.5]}'`;
the probe-only key "bias_scale" makes the generator's bias map move that many
times faster under Adam (`ScaledBiasGenerator`).
Scans are cached per model, parameters and seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.metrics import auroc
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import predict
from backdoorguard.defenses.detection.common import (TriggerGenerator, clean_statistics,
                                                     effective_size)
from backdoorguard.defenses.detection.drmguard import (DRMGuard, MomentumMap, TriggerRun,
                                                       drmguard_terms)
from backdoorguard.errors import BadInput
from backdoorguard.pipeline import build_attack, clean_subset, resolve
from detection_zoo import folder_of, key_of, target_for, trained

DATASET = "synthgaze:2500"
CACHE = Path("benchmarks/.cache/drmguard_probe")
POISON_RATE = 0.2
TOL = 5.0  # degrees: DRMGuard's and the attacks benchmark's tolerance
CORNERS = ["bottom-right", "top-left"]


def probe_zoo(task, n_clean: int, n_blended: int, n_badnets: int, epochs: int) -> list[dict]:
    """The probe's models, interleaved clean / blended / badnets so that a run
    stopped early leaves a balanced set."""
    patch = round(0.3 * min(task.input_shape[1:]))
    kinds = {"clean": [{"name": f"clean{i}", "attack": None, "seed": 200 + i}
                       for i in range(n_clean)],
             "blended": [{"name": f"blended{i}", "attack": "blended", "seed": 210 + i,
                          "target": target_for(task, i), "params": {"alpha": 0.2, "seed": i}}
                         for i in range(n_blended)],
             "badnets": [{"name": f"badnets{i}", "attack": "badnets", "seed": 220 + i,
                          "target": target_for(task, i),
                          "params": {"size": patch, "position": CORNERS[i % 2], "seed": i}}
                         for i in range(n_badnets)]}
    models = [group[i] for i in range(max(map(len, kinds.values())))
              for group in kinds.values() if i < len(group)]
    for model in models:
        attack = None if model["attack"] is None else AttackConfig(
            name=model["attack"], poison_rate=POISON_RATE, target=model["target"],
            params=model["params"])
        model["run"] = TrainRun(dataset=DATASET, attack=attack, train={"epochs": epochs})
        model["folder"] = folder_of(model, CACHE)
    return models


@torch.no_grad()
def trigger_evidence(net, generator, attack, clean, target) -> dict:
    """Where the reversed trigger sends the outputs (vs the planted target), and how
    the reversed perturbation compares with the attack's own on the same inputs."""
    device = torch.device("cpu")
    reversed_x = predict(generator, clean.x, batch_size=256, device=device)
    outputs = net(reversed_x)
    out = {"reversed_mean_output": outputs.mean(0).tolist(),
           "reversed_output_sd": float(outputs.std(0).norm())}
    delta = (reversed_x - clean.x).mean(0).flatten()
    span = clean.task.input_range[1] - clean.task.input_range[0]
    absolute = (reversed_x - clean.x).abs().mean((0, 1)).flatten()
    top = absolute.sort(descending=True).values
    out["share_in_top10pct_pixels"] = float(top[:max(1, len(top) // 10)].sum() / top.sum())
    if target is not None:
        goal = torch.tensor(target)
        out["reversed_to_target"] = float((outputs.mean(0) - goal).norm())
        out["reversed_within_tol"] = float(((outputs - goal).norm(dim=1) <= TOL).float().mean())
        out["clean_mean_to_target"] = float((net(clean.x).mean(0) - goal).norm())
    if attack is not None:
        own = (attack.apply(clean.x) - clean.x).mean(0).flatten()
        out["cosine_with_attack_perturbation"] = float(torch.nn.functional.cosine_similarity(
            delta, own, dim=0))
        own_abs = (attack.apply(clean.x) - clean.x).abs().mean((0, 1)).flatten()
        out["cosine_of_abs_maps"] = float(torch.nn.functional.cosine_similarity(
            absolute, own_abs, dim=0))
    out["mean_abs_perturbation"] = float(absolute.mean() / span)
    return out


@torch.no_grad()
def true_trigger(net, attack, clean, target) -> dict:
    """DRMGuard's terms for the attack's own trigger on the defender's clean set, and
    for the trigger scaled down (x + s · (attack(x) − x)): how small can the planted
    backdoor's own trigger get and still collapse the outputs onto the target?"""
    span = clean.task.input_range[1] - clean.task.input_range[0]
    stats = clean_statistics(net.eval(), clean.x, torch.device("cpu"))
    triggered = attack.apply(clean.x)
    out = {}
    for scale in (1.0, 0.75, 0.5, 0.25):
        terms = drmguard_terms(net, clean.x, clean.x + scale * (triggered - clean.x), stats, span)
        size, collapse = float(terms["size"]), float(terms["collapse"])
        within = float(((terms["outputs"] - torch.tensor(target)).norm(dim=1) <= TOL)
                       .float().mean())
        entry = {"size": size, "collapse": collapse, "angle": float(terms["angle"]),
                 "effective_size": effective_size(size, collapse, 0.2), "within_tol": within}
        if scale == 1.0:
            out.update(entry)
        else:
            out[f"scaled_{scale}"] = entry
    return out


def corner_saliency(net, clean, size: int) -> dict:
    """Share of the output-collapse term's saliency |∂ collapse / ∂x| at the clean
    inputs (MTR's map at its first step) that falls inside each patch corner used
    by the probe's BadNets models, and the share of pixels those corners hold."""
    x = clean.x.clone().requires_grad_(True)
    stats = clean_statistics(net.eval(), clean.x, torch.device("cpu"))
    terms = drmguard_terms(net, clean.x, x, stats, 1.0)
    saliency, = torch.autograd.grad(terms["collapse"], x)
    saliency = saliency.abs().mean((0, 1))
    height, width = saliency.shape
    corners = {"bottom-right": (slice(height - size, height), slice(width - size, width)),
               "top-left": (slice(0, size), slice(0, size))}
    out = {name: float(saliency[rows, cols].sum() / saliency.sum())
           for name, (rows, cols) in corners.items()}
    out["pixel_share"] = size * size / (height * width)
    return out


class ScaledBiasGenerator(TriggerGenerator):
    """The trigger generator with its free bias map used as `scale` · b: Adam moves
    every parameter by about lr per step whatever its gradient, so b (from zero)
    can reach at most ≈ lr · steps (0.15 after 150 steps at 1e-3) per pixel; the
    scale lets it move `scale`× faster. A probe-only experiment."""

    def __init__(self, task, width: int, scale: float):
        super().__init__(task, width)
        self.scale = scale

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        span = self.high - self.low
        inputs = torch.cat([(x - self.low) / span, self.coords.expand(len(x), -1, -1, -1)], 1)
        near = self.encode(inputs)
        far = F.interpolate(self.down(near), size=x.shape[-2:], mode="nearest")
        return span * (self.decode(torch.cat([near, far], 1)) + self.scale * self.bias)


class ScaledBiasDRMGuard(DRMGuard):
    """DRMGuard whose generators are `ScaledBiasGenerator`s (`--scan` key "bias_scale")."""

    def __init__(self, bias_scale: float, **params):
        super().__init__(**params)
        if not isinstance(bias_scale, (int, float)) or not bias_scale > 0:
            raise BadInput(f"bias_scale {bias_scale!r} must be a positive number")
        self.bias_scale = float(bias_scale)

    def params(self) -> dict:
        return {**super().params(), "bias_scale": self.bias_scale}

    def start_run(self, clean, lambda1, seed, device) -> TriggerRun:
        torch.manual_seed(seed)
        return TriggerRun(lambda1, seed,
                          ScaledBiasGenerator(clean.task, self.width, self.bias_scale).to(device),
                          MomentumMap(clean.task.input_shape[-2:], self.beta, self.mtr_every,
                                      device))


def detector_for(params: dict) -> DRMGuard:
    return ScaledBiasDRMGuard(**params) if "bias_scale" in params else DRMGuard(**params)


def scanned(model: dict, net, clean, name: str, params: dict, runtime: Runtime) -> dict:
    detector = detector_for(params)
    path = CACHE / "scans" / f"{key_of(model['folder'].name, detector.params(), runtime.seed)}.json"
    if path.exists():
        return json.loads(path.read_text())
    found = detector.inspect(net, clean, runtime=runtime)
    attack = None if model["attack"] is None else build_attack(model["run"].attack, clean.task)
    evidence = found.evidence
    record = {"score": found.score, "seconds": found.cost.seconds, "passes": found.cost.passes,
              "collapsed": evidence["collapsed"], "trigger_size": evidence["trigger_size"],
              "collapse": evidence["collapse"], "angle": evidence["angle_variance"],
              "lambda1": evidence["lambda1"], "runs": evidence["runs"],
              "trigger": trigger_evidence(net.eval(), found.trigger, attack, clean,
                                          model.get("target"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    print(f"    {name} {model['name']}: score {found.score:.4f} "
          f"(size {record['trigger_size']:.4f}, collapse {record['collapse']:.3f}, "
          f"λ1 {record['lambda1']}; {found.cost.seconds:.0f} s)", flush=True)
    return record


def parse_scans(items: list[str]) -> dict[str, dict]:
    scans = {}
    for item in items:
        name, _, text = item.partition("=")
        try:
            params = json.loads(text or "{}")
        except json.JSONDecodeError:
            raise BadInput(f"--scan {item!r} must be NAME=JSON, e.g. 'l05={{\"lambdas\": [0.5]}}'")
        if not name or not isinstance(params, dict):
            raise BadInput(f"--scan {item!r} must be NAME=JSON with a JSON object")
        try:
            detector_for(params)  # bad parameters fail before any training
        except TypeError:
            allowed = ", ".join([*DRMGuard().params(), "bias_scale"])
            raise BadInput(f"--scan {item!r}: unknown DRMGuard parameter; allowed: {allowed}")
        scans[name] = params
    return scans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (recipe: 12)")
    parser.add_argument("--clean", type=int, default=3)
    parser.add_argument("--blended", type=int, default=3)
    parser.add_argument("--badnets", type=int, default=2)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--trained-only", action="store_true",
                        help="scan only the models already trained")
    parser.add_argument("--scan", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/results/drmguard_probe.json")
    args = parser.parse_args()
    try:
        if args.epochs < 1:
            raise BadInput(f"--epochs {args.epochs} must be a whole number ≥ 1")
        scans = parse_scans(args.scan or ["default={}"])
    except BadInput as error:
        parser.exit(2, f"drmguard_probe: {error}\n")
    runtime = Runtime(seed=args.seed, device="cpu", threads=args.threads, progress=False).apply()
    data = resolve(TrainRun(dataset=DATASET)).data
    task = data.task
    models = probe_zoo(task, args.clean, args.blended, args.badnets, args.epochs)
    if args.trained_only:
        models = [m for m in models if (m["folder"] / "metrics.json").exists()]
    nets = {}
    for model in models:
        net, record = trained(model, runtime, CACHE)
        nets[model["name"]] = (net, record["metrics"])
    if args.train_only:
        return
    clean = clean_subset(data, 0.05, seed=args.seed)
    rows = []
    for model in models:
        net, metrics = nets[model["name"]]
        attack = None if model["attack"] is None else build_attack(model["run"].attack, task)
        row = {"name": model["name"], "attack": model["attack"], "target": model.get("target"),
               "params": model.get("params"), "metrics": metrics,
               "true_trigger": None if attack is None else true_trigger(net, attack, clean, model["target"]),
               "corner_saliency": corner_saliency(net, clean,
                                                  round(0.3 * min(task.input_shape[1:]))),
               "scans": {}}
        for name, params in scans.items():
            row["scans"][name] = scanned(model, net, clean, name, params, runtime)
        rows.append(row)
    summary = {}
    for name in scans:
        scores = [row["scans"][name]["score"] for row in rows]
        truth = [row["attack"] is not None for row in rows]
        summary[name] = {"params": scans[name],
                         "auroc": auroc(scores, truth) if 0 < sum(truth) < len(truth) else None}
        print(f"{name}: AUROC {summary[name]['auroc']}", flush=True)
        for row in rows:
            scan = row["scans"][name]
            print(f"  {row['name']:9s} mae {row['metrics']['clean_mae']:.2f} "
                  f"asr {row['metrics'].get('asr_at_tol') or 0:.2f} score {scan['score']:.4f} "
                  f"coll {scan['collapse']:.3f} λ1 {scan['lambda1']} "
                  f"to-target {scan['trigger'].get('reversed_to_target', float('nan')):.1f}",
                  flush=True)
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    result = {"dataset": DATASET, "epochs": args.epochs, "poison_rate": POISON_RATE,
              "clean_samples": len(clean), "seed": args.seed,
              "rows": rows, "summary": {**previous.get("summary", {}), **summary}}
    if previous.get("epochs") == args.epochs:  # keep scans of other settings
        old = {row["name"]: row for row in previous.get("rows", [])}
        for row in rows:
            row["scans"] = {**old.get(row["name"], {}).get("scans", {}), **row["scans"]}
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
