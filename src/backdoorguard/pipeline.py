"""End-to-end steps shared by the command line, the demo and the benchmarks:
resolve a run's configuration, train (optionally on poisoned data), evaluate,
write the checkpoint and its metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attacks import Attack, create_attack
from .config import AttackConfig, TrainConfig, TrainRun, merge, validate
from .core.checkpoint import atomic_output, save_model, write_json
from .core.metrics import Metrics, evaluate, isolation
from .core.runtime import Runtime
from .core.training import History, fit
from .core.types import ArrayDataset, PoisonedDataset, Splits, TaskSpec
from .data import load_dataset, recipe
from .defenses.base import Trained
from .errors import BadInput
from .models import create_model


@dataclass(frozen=True)
class Resolved:
    """A `TrainRun` with the data set's recipe filled in."""

    run: TrainRun
    data: Splits
    model_name: str
    train: TrainConfig
    model_args: dict[str, Any] = field(default_factory=dict)


def resolve(run: TrainRun) -> Resolved:
    """Load the data and fill unset model and training settings from the data
    set's recipe. Raises `BadInput` before any training on a bad setting.

    The recipe's `model_args` apply only to the recipe's own model (the run's
    `model_args` override them); another model starts from its own defaults.
    """
    defaults = recipe(run.dataset)
    model_name = run.model or defaults.get("model")
    if model_name is None:
        raise BadInput(f"data set {run.dataset!r} has no default model; pass --model")
    model_args = dict(run.model_args)
    if model_name == defaults.get("model"):
        model_args = {**defaults.get("model_args", {}), **model_args}
    train = validate(TrainConfig, merge(defaults.get("train", {}), run.train), "train")
    if train.epochs < 1:
        raise BadInput(f"train: epochs {train.epochs} would train nothing; allowed: an integer ≥ 1")
    return Resolved(run, load_dataset(run.dataset), model_name, train, model_args)


ATTACK_STATE = "attack.safetensors"


def build_attack(config: AttackConfig, task: TaskSpec, state: Path | None = None) -> Attack:
    """The attack a config describes; `state` loads a learnt trigger (input-aware)."""
    attack = create_attack(config.name, task, target=config.target, mode=config.mode,
                           **config.params)
    if state is not None:
        from .core.checkpoint import read_weights

        attack.load_tensors(read_weights(state))
    return attack


@dataclass
class TrainResult:
    """A trained model with everything needed to write and report it."""

    model: nn.Module
    resolved: Resolved
    metrics: Metrics
    history: History
    attack: Attack | None
    train_data: ArrayDataset | PoisonedDataset
    runtime: Runtime
    trained: Trained | None = None

    @property
    def task(self) -> TaskSpec:
        return self.resolved.data.task

    def record(self) -> dict[str, Any]:
        """The run's record (metrics.json): deterministic except the `cost` section."""
        run = self.resolved.run
        attack = None
        if self.attack is not None:
            poison_index = getattr(self.train_data, "poison_index", None)
            attack = {**self.attack.spec(), "poison_rate": run.attack.poison_rate,
                      "poisoned": None if poison_index is None else int(len(poison_index))}
        defense = None if self.trained is None else {
            "name": run.defense, "params": run.defense_args,
            "isolated": len(self.trained.isolated)}
        return {
            "dataset": run.dataset,
            "model": {"name": self.resolved.model_name, "args": self.resolved.model_args},
            "attack": attack,
            "defense": defense,
            "seed": self.runtime.seed,
            "train": self.resolved.train.model_dump(),
            "metrics": self.metrics.to_dict(),
            "history": self.history.epochs,
            "cost": {"train_seconds": round(self.history.seconds, 3),
                     "passes": self.history.passes, "steps": self.history.steps},
        }


def train_run(run: TrainRun, runtime: Runtime = Runtime(),
              resolved: Resolved | None = None) -> TrainResult:
    """Train one model as `run` describes: poison the training set if an attack is
    given, train, evaluate on the clean test set (and triggered, with the attack)."""
    resolved = resolved or resolve(run)
    task = resolved.data.task
    attack = build_attack(run.attack, task) if run.attack else None
    runtime.apply()
    model = create_model(resolved.model_name, task, **resolved.model_args)
    train_data: ArrayDataset = resolved.data.train
    trained = None
    if run.defense:
        trained, train_data = train_with_defense(run, resolved, model, attack, runtime)
        history = History(trained.details.get("history", []), trained.cost.seconds,
                          int(trained.cost.counters.get("steps", 0)),
                          round(trained.cost.passes * len(train_data)))
    elif attack is not None:
        history, train_data = attack.train_model(model, train_data, resolved.train,
                                                 run.attack.poison_rate, runtime)
    else:
        history = fit(model, train_data, resolved.train, runtime=runtime,
                      description=f"train {resolved.model_name} on {run.dataset}")
    metrics = evaluate(model, resolved.data.test, attack)
    return TrainResult(model, resolved, metrics, history, attack, train_data, runtime, trained)


def train_with_defense(run: TrainRun, resolved: Resolved, model: nn.Module, attack: Attack | None,
                       runtime: Runtime) -> tuple[Trained, ArrayDataset]:
    """Train `model` with the run's training-time defense on the (poisoned) training
    set. The defense trains with the run's settings unless its own parameters
    carry `train`."""
    from .defenses.base import create_defense

    # the run's own parameters first, so a bad one is named before `train`
    params = dict(run.defense_args)
    params.setdefault("train", resolved.train)
    defense = create_defense(run.defense, "training", **params)
    defense.check_task(resolved.data.task)
    data = resolved.data.train
    if attack is not None:
        if type(attack).train_model is not Attack.train_model:
            raise BadInput(f"attack {attack.name!r} learns its trigger while the model trains; "
                           f"a training-time defense needs a fixed poisoned training set")
        data = attack.poison(data, run.attack.poison_rate, seed=runtime.seed)
    return defense.fit(model, data, runtime=runtime), data


def isolation_record(result: TrainResult) -> dict[str, Any]:
    """isolation.json: the samples the defense flagged (indices into the training
    split) and, when the training set was poisoned here, their precision and
    recall against the true poison."""
    trained = result.trained
    assert trained is not None
    poison_index = getattr(result.train_data, "poison_index", None)
    return {"method": trained.method, "params": result.resolved.run.defense_args,
            "n_samples": len(result.train_data), "n_flagged": len(trained.isolated),
            "poisoned": None if poison_index is None else int(len(poison_index)),
            **isolation(trained.isolated, result.train_data),
            "flagged": trained.isolated,
            "details": {k: v for k, v in trained.to_dict()["details"].items() if k != "history"}}


def write_train_files(result: TrainResult, directory: Path) -> None:
    """Checkpoint (model.safetensors + model.json) and metrics.json into `directory`."""
    record = result.record()
    card = {"training": {"dataset": record["dataset"], "config": record["train"],
                         "seed": record["seed"]},
            "attack": record["attack"], "metrics": record["metrics"]}
    if result.attack is not None and result.attack.tensors():
        # a learnt trigger (input-aware) travels with the model it was trained with
        from safetensors.torch import save_file

        save_file(result.attack.tensors(), str(directory / ATTACK_STATE))
        card["attack"] = {**card["attack"], "state": ATTACK_STATE}
    if record["defense"] is not None:
        card["training"]["defense"] = {k: record["defense"][k] for k in ("name", "params")}
    save_model(result.model, directory, result.task, card=card)
    write_json(directory / "metrics.json", record)
    if result.trained is not None:
        write_json(directory / "isolation.json", isolation_record(result))


def write_train_result(result: TrainResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """`write_train_files` into a new folder `out`, atomically."""
    with atomic_output(out, overwrite=overwrite) as tmp:
        write_train_files(result, tmp)
    return Path(out)


def training_set(card: dict[str, Any], data: Splits) -> ArrayDataset:
    """The training set a checkpoint learnt from: the data set's training split,
    poisoned again as its card records (same attack, rate and seed; attacks are
    deterministic given their spec and seed)."""
    spec = card.get("attack")
    if not spec:
        return data.train
    config = validate(AttackConfig, {k: v for k, v in spec.items()
                                     if k in AttackConfig.model_fields}, "attack")
    seed = int(card.get("training", {}).get("seed", 0))
    return build_attack(config, data.task).poison(data.train, config.poison_rate, seed=seed)


def check_same_task(card_task: TaskSpec, data: Splits, dataset: str) -> None:
    """`BadInput` unless a model trained for `card_task` can take `dataset`."""
    task = data.task
    if (card_task.input_shape != task.input_shape or card_task.num_outputs != task.num_outputs
            or card_task.kind != task.kind):
        raise BadInput(f"the model was trained for {card_task.kind} on inputs "
                       f"{card_task.input_shape} with {card_task.num_outputs} outputs; data set "
                       f"{dataset!r} is {task.kind} on {task.input_shape} with "
                       f"{task.num_outputs}")


def load_checkpoint_or_user_model(directory: str | Path | None = None, *,
                                  factory: str | None = None, weights: str | Path | None = None,
                                  args: dict[str, Any] | None = None, trust_pickle: bool = False,
                                  dataset: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A model and its card: from a checkpoint directory, or from a user's
    `package.module:function` factory plus a weights file (its card then holds
    only what is known: the model spec and, with `dataset`, the task)."""
    from .core.checkpoint import load_model, load_user_model

    if directory is not None:
        if factory is not None or weights is not None:
            raise BadInput("give either a checkpoint directory or --model-factory with --weights, "
                           "not both")
        return load_model(directory)
    if factory is None or weights is None:
        raise BadInput("a model is needed: a checkpoint directory, or --model-factory "
                       "package.module:function with --weights FILE")
    model = load_user_model(factory, weights, args=args, trust_pickle=trust_pickle)
    card: dict[str, Any] = {"model": model.model_spec, "attack": None,
                            "training": {"dataset": dataset}}
    if dataset is not None:
        card["task"] = load_dataset(dataset).task.to_dict()
    return model, card


def clean_subset(data: Splits, fraction: float = 0.05, seed: int = 0) -> ArrayDataset:
    """The defender's clean data: a seeded, stratified `fraction` of the clean
    training split (5 % by default, as post-training defenses assume).

    For classification the defender holds at least one sample of every class: 5 %
    of BasicMotions (40 series, 10 per class) would otherwise be no data at all."""
    if not 0.0 < fraction < 1.0:
        raise BadInput(f"clean fraction {fraction} must lie strictly between 0 and 1")
    train = data.train
    if train.task.is_classification and len(train):
        smallest = int(torch.bincount(train.y)[torch.unique(train.y)].min())
        # a class of n samples gets round(fraction · n) of them; at least one
        fraction = min(max(fraction, 0.51 / smallest), 0.99)
    subset, _ = train.split(fraction, seed=seed)
    return subset


def evaluate_model(model: nn.Module, dataset: str, attack: AttackConfig | dict | None,
                   card_task: TaskSpec | None = None, attack_state: Path | None = None) -> Metrics:
    """Metrics of `model` on a data set's test split, with an optional attack."""
    data = load_dataset(dataset)
    if card_task is not None:
        check_same_task(card_task, data, dataset)
    if isinstance(attack, dict):
        attack = validate(AttackConfig, {k: v for k, v in attack.items()
                                         if k in AttackConfig.model_fields}, "attack")
    built = build_attack(attack, data.task, attack_state) if attack is not None else None
    return evaluate(model, data.test, built)
