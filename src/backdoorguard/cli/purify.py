"""`purify`: a cleaner copy of a checkpoint from a little clean data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInput
from . import app
from .common import (ConfigFile, Device, Json, Overwrite, Seed, Threads, checkpoint_and_data,
                     defense_config_file, console, emit, key_values, metrics_table, runtime_from)


@app.command()
def purify(
    directory: Annotated[Path, typer.Argument(help="Checkpoint directory of the model to purify.")],
    method: Annotated[str | None, typer.Option(
        help="Purification defense: any registered one (`backdoorguard list defenses`).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory for the purified checkpoint.")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Data set the clean data comes from (default: the one in the card).")] = None,
    clean_fraction: Annotated[float | None, typer.Option(
        help="Share of the clean training split the defender holds (default 0.05).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        help="Parameter of the method, KEY=VALUE (values read as YAML).")] = None,
    overwrite: Overwrite = False,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """Purify a (possibly backdoored) model with the defender's clean data; writes the
    new checkpoint and purify.json (metrics before and after, DER, what changed, cost)."""
    from ..config import merge
    from ..core.checkpoint import check_output
    from ..defenses.base import create_defense
    from ..defenses.purification.run import attack_of, purify_step

    file = defense_config_file(config)
    method = method or file.get("method")
    out = out or file.get("out")
    if method is None:
        raise BadInput("--method is required (a purification defense, e.g. d3 or sms)")
    if out is None:
        raise BadInput("--out is required (the directory to write the purified checkpoint to)")
    params = merge(file.get("params") or {}, key_values(param, "--param") or {})
    # unknown names and bad parameters fail before any work
    create_defense(method, "purification", **params)
    check_output(out, overwrite=overwrite)
    runtime = runtime_from(file, seed, device, threads, as_json)
    model, card, dataset, data = checkpoint_and_data(directory, dataset or file.get("dataset"))
    attack = attack_of(card, data.task, directory)
    fraction = clean_fraction if clean_fraction is not None else file.get("clean_fraction", 0.05)
    summary = purify_step(model, data, attack, out, method=method, runtime=runtime,
                          clean_fraction=fraction, params=params, card=card,
                          overwrite=overwrite)
    summary["out"] = str(out)

    def render() -> None:
        out_console = console()
        out_console.print(metrics_table({"before": summary["before"], "after": summary["after"]},
                                        f"{method} on {directory} ({dataset}, "
                                        f"{summary['clean_size']} clean samples)"))
        der = summary["der"]
        out_console.print(("" if der is None else f"DER {der:.3f}; ")
                          + f"{summary['cost']['seconds']:.1f} s; wrote {out}")

    emit(as_json, summary, render)
