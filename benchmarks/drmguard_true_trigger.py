"""DRMGuard's terms for the attack's own trigger on the zoo's backdoored models.

Would the real trigger be a small trigger that collapses the outputs? For every
trained backdoored zoo model: the attack applied to the defender's clean set, its
size (mean |x' − x| on [0, 1]), the output variance and angle variance left (as
fractions of the clean values) and the effective size DRMGuard would score.

    PYTHONPATH=src:benchmarks python benchmarks/drmguard_true_trigger.py [--dataset synthgaze:2500]
        [--epochs 8]
"""

from __future__ import annotations

import argparse
import json

import torch

from backdoorguard.config import TrainRun
from backdoorguard.core.checkpoint import load_model
from backdoorguard.core.runtime import Runtime
from backdoorguard.defenses.detection.common import clean_statistics, effective_size
from backdoorguard.defenses.detection.drmguard import drmguard_terms
from backdoorguard.pipeline import clean_subset, resolve
from detection_zoo import attack_of, folder_of, zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthgaze:2500")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    Runtime(seed=0, device="cpu", threads=1).apply()
    clean = clean_subset(resolve(TrainRun(dataset=args.dataset)).data, 0.05, seed=0)
    span = clean.task.input_range[1] - clean.task.input_range[0]
    for model in zoo(args.dataset, 0, 0, 100, args.epochs):
        folder = folder_of(model)
        if not (folder / "metrics.json").exists():
            continue
        net, _ = load_model(folder)
        attack = attack_of(model, clean.task)
        with torch.no_grad():
            stats = clean_statistics(net.eval(), clean.x, torch.device("cpu"))
            terms = drmguard_terms(net, clean.x, attack.apply(clean.x), stats, span)
        metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
        print(f"{model['name']} {model['params']}: asr@tol {metrics['asr_at_tol']:.2f}, "
              f"target error {metrics['target_error']:.1f}; true trigger size "
              f"{float(terms['size']):.4f}, output variance left {float(terms['collapse']):.3f}, "
              f"angle variance left {float(terms['angle']):.3f}, effective size "
              f"{effective_size(float(terms['size']), float(terms['collapse']), 0.2):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
