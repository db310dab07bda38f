"""`backdoorguard demo`: the embedded default end to end, in well under a minute.

Trains a clean and a BadNets-backdoored `cnn-small` on `digits`, evaluates both
on clean and triggered test inputs, prints a side-by-side table and writes
`demo.json`, `examples.png` and both checkpoints to the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import AttackConfig, TrainRun
from .core.checkpoint import atomic_output, write_json
from .core.metrics import evaluate
from .core.runtime import Runtime
from .pipeline import resolve, train_run, write_train_files
from .plots import examples_figure

DATASET = "digits"
ATTACK = AttackConfig(name="badnets", poison_rate=0.1, target=0)


def run_demo(out: str | Path, runtime: Runtime = Runtime(), *, epochs: int | None = None,
             overwrite: bool = True) -> dict[str, Any]:
    """Run the demo and write its folder; returns the summary written to demo.json."""
    train = {"epochs": epochs} if epochs is not None else {}
    clean_run = TrainRun(dataset=DATASET, train=train)
    backdoor_run = TrainRun(dataset=DATASET, attack=ATTACK, train=train)
    resolved = resolve(clean_run)
    with atomic_output(out, overwrite=overwrite) as tmp:
        clean = train_run(clean_run, runtime, resolved)
        backdoored = train_run(backdoor_run, runtime)
        attack = backdoored.attack
        test = resolved.data.test
        # The clean model is measured against the same trigger: its ASR is the
        # floor a defense can hope to reach.
        models = {"clean": evaluate(clean.model, test, attack),
                  "backdoored": evaluate(backdoored.model, test, attack)}
        for name, result in (("clean", clean), ("backdoored", backdoored)):
            (tmp / name).mkdir()
            write_train_files(result, tmp / name)
        examples = test.x[:8]
        examples_figure(examples, attack.apply(examples), test.task, tmp / "examples.png")
        summary = {
            "dataset": DATASET, "model": resolved.model_name, "attack": attack.spec(),
            "poison_rate": ATTACK.poison_rate, "seed": runtime.seed,
            "models": {name: metrics.to_dict() for name, metrics in models.items()},
            "train_seconds": {"clean": round(clean.history.seconds, 3),
                              "backdoored": round(backdoored.history.seconds, 3)},
            "files": ["demo.json", "examples.png", "clean/", "backdoored/"],
        }
        write_json(tmp / "demo.json", summary)
    return summary
