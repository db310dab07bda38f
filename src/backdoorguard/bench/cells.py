"""What a worker runs: train a shared model, or run one cell of one defense family.

Both jobs take plain data (the cell's configuration, the shared model's files
as bytes) and return plain data (metrics, results, cost, timings, files as
bytes), so the same functions run in the driver, in a worker process or in a
Ray task on another machine, and nothing but the driver touches the store.
A job never raises: any error becomes a failed outcome with its text.

Per family (the contracts of `defenses.base`):

    detection      inspect the trained model with the defender's clean data;
                   score, verdict, estimated target, the reversed trigger as a file
    purification   purify the trained model with the defender's clean data, then
                   evaluate the purified model (the driver adds before/after and DER)
    training       train a fresh model on the (poisoned) training set with the
                   defense, evaluate it; isolation precision and recall
    audit          audit the trained model and its training set (with the data
                   set's oracle when it declares one); the audit's numbers

Every job seeds from the cell's seed and pins torch to the cell's threads, so a
cell gives the same numbers in any executor.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

# A checkpoint folder holds at least these; an attack with a learnt trigger
# (input-aware) adds ATTACK_STATE, which travels with the model.
FILES = ("model.safetensors", "model.json", "metrics.json")
ATTACK_STATE = "attack.safetensors"


def failure(error: BaseException) -> dict[str, Any]:
    from ..errors import BadInput

    if isinstance(error, BadInput):
        text = str(error)
    else:
        lines = traceback.format_exception(type(error), error, error.__traceback__)
        text = f"{type(error).__name__}: {error}\n" + "".join(lines[-12:])
    return {"ok": False, "error": text}


def prepare(imports: list[str], threads: int | None) -> None:
    """Per-process set-up: torch threads and the grid's plugin modules."""
    import torch

    from .grid import import_plugins

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    import_plugins(imports)


def run_job(job: dict[str, Any], model_files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Entry point of every executor. `job` = {kind: model|cell, config, imports,
    threads, device}; returns {ok, error | metrics, result, cost, timings, files, versions}."""
    start = time.perf_counter()
    try:
        prepare(job["imports"], job["threads"])
        from ..core.checkpoint import versions
        from ..core.runtime import Runtime

        runtime = Runtime(seed=job["config"]["seed"], device=job["device"],
                          threads=job["threads"], progress=False)
        if job["kind"] == "model":
            outcome = train_model(job["config"], runtime)
        else:
            outcome = run_cell(job["config"], model_files, runtime)
        outcome.update(ok=True, versions=versions())
    except Exception as error:  # noqa: BLE001 - a failing cell must never stop the grid
        outcome = failure(error)
    outcome.setdefault("timings", {})["job"] = time.perf_counter() - start
    return outcome


# ---------------------------------------------------------------- the shared model

def train_model(config: dict[str, Any], runtime) -> dict[str, Any]:
    """Train (on poisoned data when the cell has an attack) and evaluate; the
    checkpoint comes back as the bytes of its files."""
    from ..config import AttackConfig, TrainRun
    from ..pipeline import resolve, train_run, write_train_files

    t0 = time.perf_counter()
    attack = config["attack"]
    run = TrainRun(dataset=config["dataset"], model=config["model"]["name"],
                   model_args=config["model"]["args"],
                   attack=AttackConfig(**attack) if attack else None,
                   train=config["train"], seed=config["seed"])
    resolved = resolve(run)
    t1 = time.perf_counter()
    result = train_run(run, runtime, resolved)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_train_files(result, Path(tmp))
        files = {path.name: path.read_bytes() for path in sorted(Path(tmp).iterdir())}
    # `train` is all of train_run: model creation, poisoning, fitting, evaluation.
    return {"metrics": result.metrics.to_dict(), "files": files,
            "timings": {"setup": t1 - t0, "train": t2 - t1, "write": time.perf_counter() - t2}}


def load_shared_model(files: dict[str, bytes]):
    """Rebuild the trained model from its card and weights (strict, hash checked)."""
    from safetensors.torch import load as load_tensors

    from ..core.checkpoint import build_model, load_weights
    from ..core.types import TaskSpec
    from ..errors import BadInput

    card = json.loads(files["model.json"])
    weights = files["model.safetensors"]
    if hashlib.sha256(weights).hexdigest() != card["weights"]["sha256"]:
        raise BadInput("the cached model's weights do not match its card (SHA-256 differs)")
    model = build_model(card["model"], TaskSpec.from_dict(card["task"]))
    load_weights(model, load_tensors(weights), "the cached model")
    return model.eval()


# ---------------------------------------------------------------- one cell

def run_cell(config: dict[str, Any], model_files: dict[str, bytes] | None,
             runtime) -> dict[str, Any]:
    from ..config import AttackConfig
    from ..data import load_dataset
    from ..defenses.base import create_defense
    from ..pipeline import build_attack

    t0 = time.perf_counter()
    data = load_dataset(config["dataset"])
    attack = (build_attack(AttackConfig(**config["attack"]), data.task)
              if config["attack"] else None)
    if attack is not None and model_files and ATTACK_STATE in model_files:
        from safetensors.torch import load as load_tensors

        attack.load_tensors(load_tensors(model_files[ATTACK_STATE]))
    spec = config["defense"]
    params = dict(spec["params"])
    if spec["family"] == "training":
        params = _with_training_settings(spec["name"], params, config["train"])
    defense = create_defense(spec["name"], spec["family"], **params)
    defense.check_task(data.task)
    model = load_shared_model(model_files) if spec["family"] != "training" else None
    runtime.apply()
    setup = time.perf_counter() - t0
    handler = FAMILY_HANDLERS[spec["family"]]
    outcome = handler(defense, model, data, attack, config, runtime)
    outcome["timings"]["setup"] = setup
    return outcome


def _with_training_settings(name: str, params: dict[str, Any],
                            train: dict[str, Any]) -> dict[str, Any]:
    """A training-time defense whose constructor takes `train` gets the cell's
    training settings (the data set's recipe with the grid's overrides), so it
    trains as long as the plain model it is compared with, unless the grid says
    otherwise."""
    from .. import registry
    from ..config import TrainConfig

    factory = registry.get("defense", name).factory
    if "train" not in params and "train" in inspect.signature(factory).parameters:
        return {**params, "train": TrainConfig(**train)}
    return params


def _clean(data, config: dict[str, Any]):
    from ..pipeline import clean_subset

    return clean_subset(data, config["defense"]["clean_fraction"], seed=config["seed"])


def _training_set(data, attack, config: dict[str, Any]):
    """The training set the shared model saw: poisoned the same seeded way."""
    if attack is None:
        return data.train
    return attack.poison(data.train, config["attack"]["poison_rate"], seed=config["seed"])


def _result(result) -> dict[str, Any]:
    """A result's JSON form; its cost is stored on its own."""
    data = result.to_dict()
    data.pop("cost", None)
    return data


def _cost(cost) -> dict[str, Any]:
    return {"seconds": cost.seconds, "passes": cost.passes, "counters": dict(cost.counters)}


def _evaluated(model, data, attack, outcome: dict[str, Any], work: float) -> dict[str, Any]:
    from ..core.metrics import evaluate

    start = time.perf_counter()
    outcome["metrics"] = {**evaluate(model, data.test, attack).to_dict(),
                          **outcome.get("metrics", {})}
    outcome["timings"] = {"defense": work, "evaluate": time.perf_counter() - start}
    return outcome


def _detect(defense, model, data, attack, config, runtime) -> dict[str, Any]:
    start = time.perf_counter()
    found = defense.inspect(model, _clean(data, config), runtime=runtime)
    work = time.perf_counter() - start
    truth = attack is not None
    metrics = {"score": found.score, "threshold": found.threshold,
               "flagged": float(found.backdoored), "correct": float(found.backdoored == truth)}
    if (truth and found.target is not None and attack.mode == "all-to-one"
            and data.task.is_classification):
        metrics["target_found"] = float(found.target == attack.target_value)
    files = trigger_files(found.trigger)
    return {"metrics": metrics, "result": _result(found), "cost": _cost(found.cost),
            "files": files, "timings": {"defense": work, "evaluate": 0.0}}


def _purify(defense, model, data, attack, config, runtime) -> dict[str, Any]:
    start = time.perf_counter()
    purified = defense.purify(model, _clean(data, config), runtime=runtime)
    work = time.perf_counter() - start
    return _evaluated(purified.model, data, attack,
                      {"result": _result(purified), "cost": _cost(purified.cost)}, work)


def _train(defense, model, data, attack, config, runtime) -> dict[str, Any]:
    from ..core.metrics import isolation
    from ..models import create_model

    model = create_model(config["model"]["name"], data.task, **config["model"]["args"])
    train = _training_set(data, attack, config)
    start = time.perf_counter()
    trained = defense.fit(model, train, runtime=runtime)
    work = time.perf_counter() - start
    outcome = {"result": _result(trained), "cost": _cost(trained.cost),
               "metrics": {"n_isolated": float(len(trained.isolated)),
                           **isolation(trained.isolated, train)}}
    return _evaluated(trained.model, data, attack, outcome, work)


def _audit(defense, model, data, attack, config, runtime) -> dict[str, Any]:
    from .. import registry
    from ..core.metrics import isolation

    train = _training_set(data, attack, config)
    oracle_factory = registry.get("dataset", config["dataset"]).extra.get("oracle")
    oracle = oracle_factory() if callable(oracle_factory) else None
    start = time.perf_counter()
    audit = defense.audit(model, train, oracle, runtime=runtime)
    work = time.perf_counter() - start
    metrics = {"n_flagged": float(len(audit.flagged)), "n_regions": float(len(audit.regions)),
               **isolation(audit.flagged, train), **suspicion_auroc(audit.suspicion, train)}
    metrics.update({f"details.{k}": float(v) for k, v in audit.details.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {"metrics": metrics, "result": _result(audit), "cost": _cost(audit.cost),
            "timings": {"defense": work, "evaluate": 0.0}}


FAMILY_HANDLERS = {"detection": _detect, "purification": _purify, "training": _train,
                   "audit": _audit}


# ---------------------------------------------------------------- helpers

def suspicion_auroc(suspicion: list[float], train) -> dict[str, float]:
    """AUROC of per-sample suspicion against the true poison, when both exist."""
    from ..core.metrics import auroc

    poison = getattr(train, "poison_index", None)
    if poison is None or len(poison) == 0 or len(suspicion) != len(train):
        return {}
    return {"suspicion_auroc": auroc(suspicion, train.poison_mask.numpy())}


def trigger_files(trigger: Any) -> dict[str, bytes]:
    """A reversed trigger (a tensor, or a dict of named tensors such as mask and
    pattern) as a safetensors file; other forms (a generator network) are left out."""
    import torch
    from safetensors.torch import save

    if isinstance(trigger, torch.Tensor):
        tensors = {"trigger": trigger}
    elif isinstance(trigger, dict) and trigger and all(
            isinstance(v, torch.Tensor) for v in trigger.values()):
        tensors = {str(k): v for k, v in trigger.items()}
    else:
        return {}
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}
    return {"trigger.safetensors": save(tensors)}
