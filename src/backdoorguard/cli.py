"""The `backdoorguard` command: parse, call the Python API, print.

Exit status: 0 success, 2 bad input (one line on stderr, no traceback). `scan`
will add 1 for "backdoor found". `--json` prints exactly one JSON object on
stdout and nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import BadInput

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Find and remove backdoors in deep models.")

# ---------------------------------------------------------------- shared options

Seed = Annotated[int | None, typer.Option(help="Random seed (default 0).")]
Device = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")]
Threads = Annotated[int | None, typer.Option(help="Torch CPU threads (default: torch's choice "
                                                  "or $BACKDOORGUARD_THREADS).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file; flags override it.")]
Overwrite = Annotated[bool, typer.Option(help="Replace a non-empty output directory.")]
RUNTIME_KEYS = ("seed", "device", "threads")


def _runtime(file: dict[str, Any], seed: int | None, device: str | None, threads: int | None,
             as_json: bool):
    from .core.runtime import Runtime, resolve_device

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


def _config_file(path: Path | None) -> dict[str, Any]:
    from .config import load_yaml

    return load_yaml(path) if path is not None else {}


def _key_values(pairs: list[str] | None, flag: str) -> dict[str, Any] | None:
    """`KEY=VALUE` flags to a dict; values are parsed as YAML (numbers, lists, ...)."""
    if not pairs:
        return None
    import yaml

    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"{flag} {pair!r} must look like KEY=VALUE")
        parsed[key] = yaml.safe_load(value)
    return parsed


def _target(text: str | None) -> int | list[float] | None:
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


def _emit(as_json: bool, data: dict[str, Any], render) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, sort_keys=True, allow_nan=True) + "\n")
    else:
        render()


def _console():
    from rich.console import Console

    return Console()


def _metrics_table(columns: dict[str, dict[str, Any]], title: str):
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


# ---------------------------------------------------------------- commands

@app.command("list")
def list_entries(
    kind: Annotated[str | None, typer.Argument(help="datasets, models, attacks or defenses")] = None,
    as_json: Json = False,
) -> None:
    """List what is built in, with the tasks and modalities each entry supports."""
    from . import registry

    kinds = {"datasets": "dataset", "models": "model", "attacks": "attack", "defenses": "defense"}
    if kind is not None and kind not in kinds:
        raise BadInput(f"unknown list {kind!r}; allowed: {', '.join(kinds)}")
    chosen = [kinds[kind]] if kind else list(kinds.values())
    data = {}
    for k in chosen:
        data[k + "s"] = [{"name": e.name, "description": e.description, "tasks": list(e.tasks),
                          "modalities": list(e.modalities),
                          **{key: e.extra[key] for key in ("shape", "size", "units")
                             if key in e.extra}} for e in registry.entries(k)]

    def render() -> None:
        from rich.table import Table

        console = _console()
        for section, rows in data.items():
            table = Table(title=section)
            for column in ("name", "task", "modality", "description"):
                table.add_column(column)
            for row in rows:
                extra = "" if "shape" not in row else (
                    f" (shape {'×'.join(map(str, row['shape']))}, {row['size']} samples, "
                    f"{row['units']})")
                table.add_row(row["name"], "/".join(row["tasks"]), "/".join(row["modalities"]),
                              row["description"] + extra)
            if not rows:
                table.add_row("(none yet)", "", "", "")
            console.print(table)

    _emit(as_json, data, render)


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
    defense: Annotated[str | None, typer.Option(help="Training-time defense.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, adam or adamw.")] = None,
    overwrite: Overwrite = False,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """Train a model, optionally on data poisoned by an attack; write a checkpoint."""
    from .config import TrainRun, merge, validate
    from .core.checkpoint import check_output
    from .pipeline import resolve, train_run, write_train_result

    file = _config_file(config)
    out = out or file.pop("out", None)
    if out is None:
        raise BadInput("--out is required (the directory to write the checkpoint to)")
    check_output(out, overwrite=overwrite)
    runtime = _runtime(file, seed, device, threads, as_json)
    base = {k: v for k, v in file.items() if k not in RUNTIME_KEYS}
    flags: dict[str, Any] = {
        "dataset": dataset, "model": model, "model_args": _key_values(model_arg, "--model-arg"),
        "defense": defense,
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer},
    }
    attack_flags = {"poison_rate": poison_rate, "target": _target(target), "mode": target_mode,
                    "params": _key_values(attack_param, "--attack-param")}
    if attack == "none":
        base.pop("attack", None)
    elif attack is not None:
        flags["attack"] = {"name": attack, **attack_flags}
    elif any(v is not None for v in attack_flags.values()):
        if not isinstance(base.get("attack"), dict):
            raise BadInput("--poison-rate, --target and --attack-param need --attack")
        flags["attack"] = attack_flags
    run = validate(TrainRun, merge(base, flags), "train settings")
    resolved = resolve(run)
    result = train_run(run, runtime, resolved)
    write_train_result(result, out, overwrite=overwrite)
    record = result.record()

    def render() -> None:
        _console().print(_metrics_table({"model": record["metrics"]},
                                        f"{resolved.model_name} on {run.dataset}"
                                        + (f", {run.attack.name} attack" if run.attack else "")))
        _console().print(f"wrote {out}")

    _emit(as_json, {**record, "out": str(out)}, render)


@app.command("evaluate")
def evaluate_command(
    directory: Annotated[Path, typer.Argument(help="Checkpoint directory.")],
    dataset: Annotated[str | None, typer.Option(help="Data set (default: the one it was trained on).")] = None,
    attack: Annotated[str | None, typer.Option(help="Attack (default: the one in the card), or none.")] = None,
    target: Annotated[str | None, typer.Option(help="Target class, or comma-separated vector.")] = None,
    target_mode: Annotated[str | None, typer.Option(help="all-to-one or all-to-all.")] = None,
    attack_param: Annotated[list[str] | None, typer.Option(help="Attack parameter KEY=VALUE.")] = None,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """Metrics of a checkpoint on clean (and triggered) test inputs."""
    from .config import AttackConfig, merge, validate
    from .core.checkpoint import load_model
    from .core.types import TaskSpec
    from .pipeline import evaluate_model

    file = _config_file(config)
    _runtime(file, seed, device, threads, as_json).apply()
    model, card = load_model(directory)
    dataset = dataset or file.get("dataset") or card.get("training", {}).get("dataset")
    if dataset is None:
        raise BadInput("--dataset is required: the model card does not name its data set")
    attack_spec: dict[str, Any] | None = file.get("attack") or card.get("attack")
    if attack == "none":
        attack_spec = None
    else:
        flags = {"target": _target(target), "mode": target_mode,
                 "params": _key_values(attack_param, "--attack-param")}
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
    metrics = evaluate_model(model, dataset, attack_config, TaskSpec.from_dict(card["task"]))
    data = {"directory": str(directory), "dataset": dataset,
            "attack": attack_config.model_dump() if attack_config else None,
            "metrics": metrics.to_dict()}
    title = f"{directory} on {dataset}" + (f", {attack_config.name}" if attack_config else "")
    _emit(as_json, data, lambda: _console().print(_metrics_table({"model": data["metrics"]}, title)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory (replaced if it exists).")] = Path("demo-output"),
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the recipe's).")] = None,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """The embedded default end to end: clean vs BadNets-backdoored model on digits."""
    from .demo import run_demo

    file = _config_file(config)
    runtime = _runtime(file, seed, device, threads, as_json)
    summary = run_demo(out, runtime, epochs=epochs)

    def render() -> None:
        console = _console()
        console.print(_metrics_table(summary["models"],
                                     f"{summary['model']} on {summary['dataset']}, "
                                     f"BadNets at {summary['poison_rate']:.0%} poisoning"))
        console.print(f"wrote {out}/: " + ", ".join(summary["files"]))

    _emit(as_json, summary, render)


# ---------------------------------------------------------------- entry point

def _click_exception_type():
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # typer releases before the vendored click
        from click.exceptions import ClickException
    return ClickException


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2."""
    click_exception = _click_exception_type()
    if argv is None:
        argv = sys.argv[1:]
    if not argv:
        argv = ["--help"]
    try:
        result = app(args=argv, prog_name="backdoorguard", standalone_mode=False)
    except BadInput as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except click_exception as error:
        sys.stderr.write(f"error: {error.format_message()}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
