"""The purification step end to end, shared by `backdoorguard purify`, the demo
and the benchmark: take the defender's clean data, purify, evaluate before and
after, write the new checkpoint and `purify.json` atomically.

DER (defense effectiveness rate) for classification is the usual
[max(0, ASR_b − ASR_a) − max(0, ACC_b − ACC_a) + 1] / 2. For regression
**(ours)** ASR is `asr_at_tol` and the accuracy loss is the relative rise of the
clean MAE, capped at 1: [max(0, ASR_b − ASR_a) − min(1, max(0, MAE_a / MAE_b − 1)) + 1] / 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import nn

from ...core.checkpoint import atomic_output, save_model, write_json
from ...core.metrics import Metrics, der, evaluate
from ...core.runtime import Runtime
from ...core.types import Splits, TaskSpec
from ..base import create_defense

PURIFY_JSON = "purify.json"
ATTACK_STATE = "attack.safetensors"


def defense_effectiveness(before: Metrics, after: Metrics) -> float | None:
    """DER of a purification (see module doc); None without attack metrics."""
    if before.attack_metric is None or after.attack_metric is None:
        return None
    if before.kind == "classification":
        return der(before.clean_acc, after.clean_acc, before.asr, after.asr)
    rise = min(1.0, max(0.0, after.clean_mae / max(before.clean_mae, 1e-12) - 1.0))
    return (max(0.0, before.asr_at_tol - after.asr_at_tol) - rise + 1.0) / 2.0


def attack_of(card: dict[str, Any], task: TaskSpec, directory: str | Path | None = None):
    """The attack a checkpoint's card records (with its learnt trigger, if saved
    beside it), as `backdoorguard evaluate` builds it; None for a clean model."""
    from ...config import AttackConfig, validate
    from ...pipeline import build_attack

    spec = card.get("attack")
    if not spec:
        return None
    config = validate(AttackConfig, {k: v for k, v in spec.items()
                                     if k in AttackConfig.model_fields}, "attack")
    state = spec.get("state")
    path = Path(directory) / state if state and directory is not None else None
    return build_attack(config, task, path)


def purify_step(model: nn.Module, data: Splits, attack, directory: str | Path,
                method: str = "d3", runtime: Runtime = Runtime(), *,
                clean_fraction: float = 0.05, params: dict[str, Any] | None = None,
                card: dict[str, Any] | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Purify `model` with `method` on the defender's clean data (`clean_fraction`
    of the clean training split, `pipeline.clean_subset`), evaluate it before and
    after on the test split (triggered too when `attack` is given), and write
    `model.safetensors`, `model.json` and `purify.json` (plus the attack's learnt
    trigger, if any) into `directory`, atomically. Returns the summary written
    to purify.json. `card` (the original checkpoint's) carries its training and
    attack sections over, so `evaluate` works on the new checkpoint."""
    from ...pipeline import clean_subset

    purifier = create_defense(method, "purification", **(params or {}))
    purifier.check_task(data.task)
    clean = clean_subset(data, clean_fraction, seed=runtime.seed)
    before = evaluate(model, data.test, attack)
    purified = purifier.purify(model, clean, runtime=runtime)
    start = time.perf_counter()
    after = evaluate(purified.model, data.test, attack)
    evaluate_seconds = time.perf_counter() - start
    result = purified.to_dict()
    summary = {
        "method": method, "params": {k: v if isinstance(v, (bool, int, float, str, list, dict, type(None)))
                   else repr(v) for k, v in (params or {}).items()},
        "dataset": data.name, "seed": runtime.seed,
        "clean_fraction": clean_fraction, "clean_size": len(clean),
        "attack": attack.spec() if attack is not None else None,
        "before": before.to_dict(), "after": after.to_dict(),
        "der": defense_effectiveness(before, after),
        "changes": result["changes"],
        "cost": {**result["cost"], "evaluate_seconds": round(evaluate_seconds, 3)},
    }
    card = dict(card or {})
    attack_section = card.get("attack") or (attack.spec() if attack is not None else None)
    with atomic_output(directory, overwrite=overwrite) as tmp:
        if attack is not None and attack.tensors():
            from safetensors.torch import save_file

            save_file(attack.tensors(), str(tmp / ATTACK_STATE))
            attack_section = {**attack_section, "state": ATTACK_STATE}
        training = card.get("training") or {"dataset": data.name}
        save_model(purified.model, tmp, data.task, card={
            "training": training, "attack": attack_section, "metrics": after.to_dict(),
            "purification": {k: summary[k] for k in ("method", "params", "clean_fraction",
                                                     "clean_size", "seed")}})
        write_json(tmp / PURIFY_JSON, summary)
    return summary
