"""`preview`: a picture of a data set's samples, optionally with an attack's trigger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInput, one_of
from . import app
from .common import Json, Overwrite, Seed, console, emit, key_values, parse_target


@app.command()
def preview(
    out: Annotated[Path, typer.Option(help="Picture to write (.png, .pdf, .svg, ...).")],
    name: Annotated[str | None, typer.Argument(metavar="DATASET",
                                               help="Data set name (see `list datasets`).")] = None,
    dataset: Annotated[str | None, typer.Option(help="The data set, as an option (as in train and scan).")] = None,
    attack: Annotated[str | None, typer.Option(help="Attack whose trigger to show.")] = None,
    attack_param: Annotated[list[str] | None, typer.Option(help="Attack parameter KEY=VALUE.")] = None,
    target: Annotated[str | None, typer.Option(help="Target class, or comma-separated vector.")] = None,
    target_mode: Annotated[str | None, typer.Option(help="all-to-one or all-to-all.")] = None,
    count: Annotated[int, typer.Option(help="Number of samples.")] = 8,
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    overwrite: Overwrite = False,
    seed: Seed = None, as_json: Json = False,
) -> None:
    """Save a picture of samples (series as line plots); with --attack, clean vs triggered."""
    from ..attacks import create_attack
    from ..data import load_dataset
    from ..plots import preview as draw_preview

    if name is not None and dataset is not None and name != dataset:
        raise BadInput(f"two data sets given: {name!r} and --dataset {dataset!r}; give one")
    dataset = dataset or name
    if dataset is None:
        raise BadInput("no data set given: name one, e.g. `preview digits` or `preview --dataset digits`")
    one_of("split", split, ("train", "test"))
    if out.exists() and not overwrite:
        raise BadInput(f"output {str(out)!r} exists; pass --overwrite to replace it")
    params = key_values(attack_param, "--attack-param") or {}
    if attack is None and (params or target is not None or target_mode is not None):
        raise BadInput("--attack-param, --target and --target-mode need --attack")
    data = load_dataset(dataset)
    built = None
    if attack is not None:
        built = create_attack(attack, data.task, target=parse_target(target),
                              mode=target_mode or "all-to-one", **params)
    part = data.train if split == "train" else data.test
    draw_preview(part, out, attack=built, count=count, seed=seed or 0)
    record = {"dataset": dataset, "split": split, "count": count, "out": str(out),
              "attack": built.spec() if built is not None else None}
    emit(as_json, record, lambda: console().print(f"wrote {out}"))
