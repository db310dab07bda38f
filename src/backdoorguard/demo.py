"""`backdoorguard demo`: the embedded default end to end, in well under a minute.

Trains a clean and a BadNets-backdoored `cnn-small` on `digits`, evaluates both
on clean and triggered test inputs, scans both with the default detector (is
this model backdoored?), purifies the backdoored one with D3 on 5 % clean data
(give me a clean model), prints the results and writes `demo.json`,
`examples.png`, both checkpoints, the scan reports and the purified checkpoint
to the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import AttackConfig, TrainRun
from .core.checkpoint import atomic_output, read_card, write_json
from .core.metrics import evaluate
from .core.runtime import Runtime
from .defenses.detection.report import scan_models
from .defenses.purification.run import purify_step
from .pipeline import clean_subset, resolve, train_run, write_train_files
from .plots import examples_figure

DATASET = "digits"
ATTACK = AttackConfig(name="badnets", poison_rate=0.1, target=0)
PURIFIER = "d3"


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
        # floor a defense can hope to reach. train_run measured the backdoored one.
        models = {"clean": evaluate(clean.model, test, attack), "backdoored": backdoored.metrics}
        for name, result in (("clean", clean), ("backdoored", backdoored)):
            (tmp / name).mkdir()
            write_train_files(result, tmp / name)
        # The defender's view: 5 % of the clean training data, no knowledge of the attack.
        scans = scan_models({"clean": clean.model, "backdoored": backdoored.model},
                            clean_subset(resolved.data, seed=runtime.seed), runtime=runtime,
                            out=tmp / "scan")
        purified = purify_step(backdoored.model, resolved.data, attack, tmp / "purified",
                               PURIFIER, runtime, card=read_card(tmp / "backdoored"))
        examples = test.x[:8]
        examples_figure(examples, attack.apply(examples), test.task, tmp / "examples.png")
        summary = {
            "dataset": DATASET, "model": resolved.model_name, "attack": attack.spec(),
            "poison_rate": ATTACK.poison_rate, "seed": runtime.seed,
            "models": {**{name: metrics.to_dict() for name, metrics in models.items()},
                       f"purified ({PURIFIER})": purified["after"]},
            "scan": {name: {k: scan[k] for k in ("method", "backdoored", "score", "threshold",
                                                 "target", "seconds")}
                     for name, scan in scans.items()},
            "purify": {k: purified[k] for k in ("method", "clean_size", "der", "changes")}
                      | {"seconds": purified["cost"]["seconds"]},
            "train_seconds": {"clean": round(clean.history.seconds, 3),
                              "backdoored": round(backdoored.history.seconds, 3)},
            "files": ["demo.json", "examples.png", "clean/", "backdoored/", "scan/", "purified/"],
        }
        write_json(tmp / "demo.json", summary)
    return summary
