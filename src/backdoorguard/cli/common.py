"""Shared pieces of the command line: common options, config merging, output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import BadInput

# ---------------------------------------------------------------- shared options

Seed = Annotated[int | None, typer.Option(help="Random seed (default 0).")]
Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")]
Threads = Annotated[int | None, typer.Option(help="Torch CPU threads (default: torch's choice "
                                                  "or $BACKDOORGUARD_THREADS).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file; flags override it.")]
Overwrite = Annotated[bool, typer.Option(help="Replace a non-empty output directory.")]
ModelFactory = Annotated[str | None, typer.Option(
    help="Your own model: package.module:function returning a torch.nn.Module.")]
Weights = Annotated[Path | None, typer.Option(help="Weights for --model-factory (safetensors).")]
ModelArgs = Annotated[list[str] | None, typer.Option("--model-arg",
                                                     help="Argument for --model-factory, KEY=VALUE.")]
TrustPickle = Annotated[bool, typer.Option(
    help="Allow a .pt/.pth weights file (read with torch.load(weights_only=True)); "
         "only for files you trust.")]
RUNTIME_KEYS = ("seed", "device", "threads")


def load_cli_model(directory: Path | None, factory: str | None, weights: Path | None,
                   model_args: list[str] | None, trust_pickle: bool, dataset: str | None):
    """(model, card) from a checkpoint directory or a user factory + weights."""
    from ..pipeline import load_checkpoint_or_user_model

    return load_checkpoint_or_user_model(directory, factory=factory, weights=weights,
                                         args=key_values(model_args, "--model-arg"),
                                         trust_pickle=trust_pickle, dataset=dataset)


def card_dataset(card: dict[str, Any], dataset: str | None) -> str:
    """The data set a command works on: `dataset`, else the one the model card names."""
    dataset = dataset or card.get("training", {}).get("dataset")
    if dataset is None:
        raise BadInput("--dataset is required: the model card does not name its data set")
    return dataset


def card_data(card: dict[str, Any], dataset: str | None):
    """(data set name, data) for a model's card: `card_dataset`, loaded and checked
    against the task the card records (when it records one)."""
    from ..core.types import TaskSpec
    from ..data import load_dataset
    from ..pipeline import check_same_task

    dataset = card_dataset(card, dataset)
    data = load_dataset(dataset)
    if "task" in card:
        check_same_task(TaskSpec.from_dict(card["task"]), data, dataset)
    return dataset, data


def checkpoint_and_data(directory: Path, dataset: str | None):
    """(model, card, data set name, data) for commands that work on a checkpoint and a data set:
    the data set defaults to the one in the card and must fit the model's task."""
    from ..core.checkpoint import load_model

    model, card = load_model(directory)
    return (model, card, *card_data(card, dataset))


def runtime_from(file: dict[str, Any], seed: int | None, device: str | None, threads: int | None,
             as_json: bool):
    from ..core.runtime import Runtime, resolve_device

    settings = {"seed": 0, "device": "auto", "threads": None}
    settings.update({k: file[k] for k in RUNTIME_KEYS if k in file})
    for key, value in (("seed", seed), ("device", device), ("threads", threads)):
        if value is not None:
            settings[key] = value
    if not isinstance(settings["seed"], int) or settings["seed"] < 0:
        raise BadInput(f"seed {settings['seed']!r} must be a non-negative integer")
    resolve_device(settings["device"])
    return Runtime(seed=settings["seed"], device=settings["device"], threads=settings["threads"],
                   progress=False if as_json else None)


def config_file(path: Path | None) -> dict[str, Any]:
    from ..config import load_yaml

    return load_yaml(path) if path is not None else {}


DEFENSE_FILE_KEYS = ("dataset", "method", "params", "clean_fraction", "out", *RUNTIME_KEYS)


def defense_config_file(path: Path | None) -> dict[str, Any]:
    """`--config` of `scan`, `calibrate` and `purify`: only the keys they read,
    `params` a mapping and `clean_fraction` a number (else one-line `BadInput`)."""
    file = config_file(path)
    unknown = sorted(set(file) - set(DEFENSE_FILE_KEYS))
    if unknown:
        raise BadInput(f"config {str(path)!r}: unknown key(s) {', '.join(unknown)}; "
                       f"allowed: {', '.join(DEFENSE_FILE_KEYS)}")
    if file.get("params") is not None and not isinstance(file["params"], dict):
        raise BadInput(f"config {str(path)!r}: params {file['params']!r} must be a mapping "
                       "of parameter names to values")
    fraction = file.get("clean_fraction")
    if fraction is not None and (isinstance(fraction, bool)
                                 or not isinstance(fraction, (int, float))):
        raise BadInput(f"config {str(path)!r}: clean_fraction {fraction!r} must be a number "
                       "strictly between 0 and 1")
    return file


def key_values(pairs: list[str] | None, flag: str) -> dict[str, Any] | None:
    """`KEY=VALUE` flags to a dict; values are parsed as YAML (numbers, lists, ...)."""
    if not pairs:
        return None
    from ..config import parse_yaml

    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"{flag} {pair!r} must look like KEY=VALUE")
        parsed[key] = parse_yaml(value)
    return parsed


def parse_target(text: str | None) -> int | list[float] | None:
    """`--target 3` (a class) or `--target 20,-5` (a regression vector)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInput(f"target {text!r} must be a class index or comma-separated numbers") from None


def emit(as_json: bool, data: dict[str, Any], render) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, sort_keys=True, allow_nan=True) + "\n")
    else:
        render()


def console():
    from rich.console import Console

    return Console()


def metrics_table(columns: dict[str, dict[str, Any]], title: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    keys = []
    for values in columns.values():
        keys += [k for k in values if k not in keys and k != "kind"]
    for key in keys:
        cells = []
        for values in columns.values():
            value = values.get(key)
            cells.append("" if value is None else f"{value:.4f}" if isinstance(value, float)
                         else str(value))
        table.add_row(key, *cells)
    return table


