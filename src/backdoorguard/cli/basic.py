"""`list`, `train`, `evaluate`, `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import BadInput
from . import app
from .common import (RUNTIME_KEYS, ConfigFile, Device, Json, ModelArgs, ModelFactory, Overwrite,
                     Seed, Threads, TrustPickle, Weights, card_dataset, config_file, load_cli_model,
                     console, emit, key_values, metrics_table, runtime_from, parse_target)

# ---------------------------------------------------------------- commands

@app.command("list")
def list_entries(
    kind: Annotated[str | None, typer.Argument(help="datasets, models, attacks or defenses")] = None,
    as_json: Json = False,
) -> None:
    """List what is built in, with the tasks and modalities each entry supports."""
    from .. import registry

    kinds = {"datasets": "dataset", "models": "model", "attacks": "attack", "defenses": "defense"}
    if kind is not None and kind not in kinds:
        raise BadInput(f"unknown list {kind!r}; allowed: {', '.join(kinds)}")
    chosen = [kinds[kind]] if kind else list(kinds.values())
    data = {}
    for k in chosen:
        data[k + "s"] = [{"name": e.name, "description": e.description, "tasks": list(e.tasks),
                          "modalities": list(e.modalities),
                          **{key: e.extra[key] for key in ("shape", "size", "units", "family")
                             if key in e.extra}} for e in registry.entries(k)]

    def render() -> None:
        from rich.table import Table

        out_console = console()
        for section, rows in data.items():
            table = Table(title=section)
            for column in ("name", "task", "modality", "description"):
                table.add_column(column)
            for row in rows:
                family = f"{row['family']}: " if "family" in row else ""
                extra = "" if "shape" not in row else (
                    f" (shape {'×'.join(map(str, row['shape']))}, {row['size']} samples, "
                    f"{row['units']})")
                table.add_row(row["name"], "/".join(row["tasks"]), "/".join(row["modalities"]),
                              family + row["description"] + extra)
            if not rows:
                table.add_row("(none yet)", "", "", "")
            out_console.print(table)

    emit(as_json, data, render)


@app.command()
def train(
    out: Annotated[Path | None, typer.Option(help="Output directory for the checkpoint.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set name (default digits).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (default: the data set's).")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(help="Model argument KEY=VALUE.")] = None,
    attack: Annotated[str | None, typer.Option(help="Attack name, or none.")] = None,
    poison_rate: Annotated[float | None, typer.Option(help="Share of training samples poisoned.")] = None,
    target: Annotated[str | None, typer.Option(help="Target class, or comma-separated vector.")] = None,
    target_mode: Annotated[str | None, typer.Option(help="all-to-one or all-to-all.")] = None,
    attack_param: Annotated[list[str] | None, typer.Option(help="Attack parameter KEY=VALUE.")] = None,
    defense: Annotated[str | None, typer.Option(help="Training-time defense (abl, e2abl), or none.")] = None,
    defense_param: Annotated[list[str] | None, typer.Option(help="Defense parameter KEY=VALUE.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, adam or adamw.")] = None,
    overwrite: Overwrite = False,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """Train a model, optionally on data poisoned by an attack and with a training-time
    defense (which also writes isolation.json: the samples it flagged); write a checkpoint."""
    from ..config import TrainRun, merge, validate
    from ..core.checkpoint import check_output
    from ..pipeline import resolve, train_run, write_train_result

    file = config_file(config)
    out = out or file.pop("out", None)
    if out is None:
        raise BadInput("--out is required (the directory to write the checkpoint to)")
    check_output(out, overwrite=overwrite)
    runtime = runtime_from(file, seed, device, threads, as_json)
    base = {k: v for k, v in file.items() if k not in RUNTIME_KEYS}
    flags: dict[str, Any] = {
        "dataset": dataset, "model": model, "model_args": key_values(model_arg, "--model-arg"),
        "defense": None if defense == "none" else defense,
        "defense_args": key_values(defense_param, "--defense-param"),
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer},
    }
    attack_flags = {"poison_rate": poison_rate, "target": parse_target(target), "mode": target_mode,
                    "params": key_values(attack_param, "--attack-param")}
    if attack == "none":
        base.pop("attack", None)
    elif attack is not None:
        flags["attack"] = {"name": attack, **attack_flags}
    elif any(v is not None for v in attack_flags.values()):
        if not isinstance(base.get("attack"), dict):
            raise BadInput("--poison-rate, --target and --attack-param need --attack")
        flags["attack"] = attack_flags
    if defense == "none":
        base.pop("defense", None)
        base.pop("defense_args", None)
    run = validate(TrainRun, merge(base, flags), "train settings")
    if run.defense_args and not run.defense:
        raise BadInput("--defense-param needs --defense")
    resolved = resolve(run)
    result = train_run(run, runtime, resolved)
    write_train_result(result, out, overwrite=overwrite)
    record = result.record()

    def render() -> None:
        console().print(metrics_table({"model": record["metrics"]},
                                        f"{resolved.model_name} on {run.dataset}"
                                        + (f", {run.attack.name} attack" if run.attack else "")))
        console().print(f"wrote {out}")

    emit(as_json, {**record, "out": str(out)}, render)


@app.command("evaluate")
def evaluate_command(
    directory: Annotated[Path | None, typer.Argument(help="Checkpoint directory.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set (default: the one it was trained on).")] = None,
    attack: Annotated[str | None, typer.Option(help="Attack (default: the one in the card), or none.")] = None,
    target: Annotated[str | None, typer.Option(help="Target class, or comma-separated vector.")] = None,
    target_mode: Annotated[str | None, typer.Option(help="all-to-one or all-to-all.")] = None,
    attack_param: Annotated[list[str] | None, typer.Option(help="Attack parameter KEY=VALUE.")] = None,
    model_factory: ModelFactory = None, weights: Weights = None, model_arg: ModelArgs = None,
    trust_pickle: TrustPickle = False,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """Metrics of a checkpoint (or of your own model) on clean and triggered test inputs."""
    from ..config import AttackConfig, merge, validate
    from ..core.types import TaskSpec
    from ..pipeline import evaluate_model

    file = config_file(config)
    runtime_from(file, seed, device, threads, as_json).apply()
    dataset = dataset or file.get("dataset")
    model, card = load_cli_model(directory, model_factory, weights, model_arg, trust_pickle, dataset)
    dataset = card_dataset(card, dataset)
    attack_spec: dict[str, Any] | None = file.get("attack") or card.get("attack")
    # a learnt trigger stored with the checkpoint applies when the card's attack is used
    state = None
    if attack in (None, (card.get("attack") or {}).get("name")) and not file.get("attack"):
        state_file = (card.get("attack") or {}).get("state")
        state = directory / state_file if state_file and directory else None
    if attack == "none":
        attack_spec = None
    else:
        flags = {"target": parse_target(target), "mode": target_mode,
                 "params": key_values(attack_param, "--attack-param")}
        if attack is not None:
            attack_spec = merge({"name": attack}, flags)
        elif attack_spec is not None:
            attack_spec = merge(attack_spec, flags)
        elif any(v is not None for v in flags.values()):
            raise BadInput("--target and --attack-param need --attack")
    attack_config = None
    if attack_spec is not None:
        attack_config = validate(AttackConfig, {k: v for k, v in attack_spec.items()
                                                if k in AttackConfig.model_fields}, "attack")
    metrics = evaluate_model(model, dataset, attack_config, TaskSpec.from_dict(card["task"]), state)
    data = {"model": str(directory) if directory else card["model"], "dataset": dataset,
            "attack": attack_config.model_dump() if attack_config else None,
            "metrics": metrics.to_dict()}
    title = f"{directory or model_factory} on {dataset}" + (f", {attack_config.name}" if attack_config else "")
    emit(as_json, data, lambda: console().print(metrics_table({"model": data["metrics"]}, title)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory (replaced if it exists).")] = Path("demo-output"),
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the recipe's).")] = None,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """The embedded default end to end: clean vs BadNets-backdoored model on digits,
    both scanned, the backdoored one purified."""
    from ..demo import run_demo

    file = config_file(config)
    runtime = runtime_from(file, seed, device, threads, as_json)
    summary = run_demo(out, runtime, epochs=epochs)

    def render() -> None:
        out_console = console()
        out_console.print(metrics_table(summary["models"],
                                     f"{summary['model']} on {summary['dataset']}, "
                                     f"BadNets at {summary['poison_rate']:.0%} poisoning"))
        for name, scan in summary["scan"].items():
            verdict = "backdoor found" if scan["backdoored"] else "no backdoor found"
            out_console.print(f"scan {name} model ({scan['method']}): {verdict} (score "
                              f"{scan['score']:.2f}, threshold {scan['threshold']:.2f})")
        purify = summary["purify"]
        out_console.print(f"purify backdoored model ({purify['method']}, {purify['clean_size']} "
                          f"clean samples, {purify['seconds']:.0f} s): DER {purify['der']:.3f}")
        out_console.print(f"wrote {out}/: " + ", ".join(summary["files"]))

    emit(as_json, summary, render)


