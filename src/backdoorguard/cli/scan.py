"""`scan`: is this model backdoored? and `calibrate`: a threshold from known-clean models.

`scan` exits 0 when no backdoor is found, 1 when one is, 2 on error, as virus
scanners do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import BadInput
from . import app
from .common import (ConfigFile, Device, Json, ModelArgs, ModelFactory, Overwrite, Seed, Threads,
                     TrustPickle, Weights, card_data, defense_config_file, console, emit, key_values,
                     load_cli_model, runtime_from)

Method = Annotated[str | None, typer.Option(
    help="drmguard, nc, featurere or ensemble (several of them: --param "
         "members=drmguard+drmguard:trigger=mask; default: drmguard for regression images, "
         "else nc).")]
CleanFraction = Annotated[float | None, typer.Option(
    help="Share of the training split the defender holds as clean data (default 0.05).")]
Param = Annotated[list[str] | None, typer.Option("--param", help="Detector parameter KEY=VALUE.")]


def _defender_data(model_card: dict[str, Any], dataset: str | None, clean_fraction: float,
                   seed: int):
    """(data set name, its splits, the defender's clean subset) for a model's card."""
    from ..pipeline import clean_subset

    dataset, data = card_data(model_card, dataset)
    return dataset, data, clean_subset(data, clean_fraction, seed=seed)


@app.command("scan")
def scan_command(
    directory: Annotated[Path | None, typer.Argument(help="Checkpoint directory.")] = None,
    out: Annotated[Path | None, typer.Option(help="Report directory to write.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set (default: the one it was trained on).")] = None,
    method: Method = None, clean_fraction: CleanFraction = None, param: Param = None,
    threshold: Annotated[float | None, typer.Option(help="Decision threshold on the score.")] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="Threshold file written by `calibrate` (for the same method).")] = None,
    model_factory: ModelFactory = None, weights: Weights = None, model_arg: ModelArgs = None,
    trust_pickle: TrustPickle = False, overwrite: Overwrite = False,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> int:
    """Is the model backdoored? Writes detection.json, trigger.png and collapse.png;
    exits 0 (no backdoor found), 1 (backdoor found) or 2 (error)."""
    from ..core.checkpoint import atomic_output, check_output
    from ..defenses.detection import build_detector
    from ..defenses.detection.calibration import Calibration, calibration_record
    from ..defenses.detection.report import write_detection

    file = defense_config_file(config)
    out = out or file.get("out")
    if out is None:
        raise BadInput("--out is required (the directory to write the report to)")
    check_output(out, overwrite=overwrite)
    if threshold is not None and calibration is not None:
        raise BadInput("give --threshold or --calibration, not both")
    runtime = runtime_from(file, seed, device, threads, as_json).apply()
    method = method or file.get("method")
    params = {**file.get("params", {}), **(key_values(param, "--param") or {})}
    fraction = clean_fraction if clean_fraction is not None else file.get("clean_fraction", 0.05)
    model, card = load_cli_model(directory, model_factory, weights, model_arg, trust_pickle,
                                 dataset or file.get("dataset"))
    dataset, _, clean = _defender_data(card, dataset or file.get("dataset"), fraction,
                                       runtime.seed)
    source: dict[str, Any] = {"kind": "given" if threshold is not None else "default"}
    if calibration is not None:
        calibrated = Calibration.read(calibration)
        method = method or calibrated.method
        if calibrated.method != method:
            raise BadInput(f"calibration file {str(calibration)!r} is for method "
                           f"{calibrated.method!r}, not {method!r}")
        params = {**calibrated.params, **params}
        threshold = calibrated.threshold
        source = {"kind": "calibration", **calibration_record(calibration, calibrated)}
    detector = build_detector(clean.task, method, params, threshold)
    detection = detector.inspect(model.to(runtime.torch_device), clean, runtime=runtime)
    extra = {"model": str(directory) if directory else card.get("model"), "dataset": dataset,
             "clean_fraction": fraction, "clean_samples": len(clean), "seed": runtime.seed,
             "threshold_source": source}
    with atomic_output(out, overwrite=overwrite) as tmp:
        files = write_detection(detection, model, clean, tmp, extra)
    summary = {**detection.to_dict(), **extra, "out": str(out), "files": files}
    emit(as_json, summary, lambda: _render(summary))
    return 1 if detection.backdoored else 0


def _render(summary: dict[str, Any]) -> None:
    out = console()
    verdict = "[bold red]BACKDOOR FOUND[/]" if summary["backdoored"] else "[green]no backdoor found[/]"
    out.print(f"{summary['model']}: {verdict} ({summary['method']}: score "
              f"{summary['score']:.4g}, threshold {summary['threshold']:.4g}, "
              f"{summary['threshold_source']['kind']})")
    if summary["backdoored"] and summary["target"] is not None:
        out.print(f"estimated target: {summary['target']}")
    cost = summary["cost"]
    out.print(f"{cost['seconds']:.1f} s, {cost['passes']:.0f} passes over "
              f"{summary['clean_samples']} clean samples; wrote {summary['out']}")


@app.command("calibrate")
def calibrate_command(
    directories: Annotated[list[Path], typer.Argument(help="Checkpoints known to be clean.")],
    out: Annotated[Path | None, typer.Option(help="Threshold file (JSON) to write.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set (default: the first model's).")] = None,
    method: Method = None, clean_fraction: CleanFraction = None, param: Param = None,
    margin: Annotated[float, typer.Option(help="Threshold = max clean score + margin × spread.")] = 0.1,
    quantile: Annotated[float | None, typer.Option(help="Use this quantile of the clean scores instead.")] = None,
    overwrite: Overwrite = False,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> None:
    """Set a detector's threshold from models you know to be clean; `scan
    --calibration FILE` then uses it."""
    from ..core.checkpoint import load_model, write_json_atomic
    from ..core.types import TaskSpec
    from ..defenses.detection import build_detector, calibrate
    from ..pipeline import check_same_task

    file = defense_config_file(config)
    out = out or file.get("out")
    if out is None:
        raise BadInput("--out is required (the threshold file to write)")
    out = Path(out)
    if out.exists() and not overwrite:
        raise BadInput(f"{str(out)!r} exists; pass --overwrite to replace it")
    if not out.resolve().parent.is_dir():
        raise BadInput(f"folder {str(out.resolve().parent)!r} of {str(out)!r} does not exist")
    runtime = runtime_from(file, seed, device, threads, as_json).apply()
    loaded = {str(d): load_model(d) for d in directories}
    first_card = next(iter(loaded.values()))[1]
    fraction = clean_fraction if clean_fraction is not None else file.get("clean_fraction", 0.05)
    dataset, data, clean = _defender_data(first_card, dataset or file.get("dataset"), fraction,
                                          runtime.seed)
    for _, card in loaded.values():
        check_same_task(TaskSpec.from_dict(card["task"]), data, dataset)
    params = {**file.get("params", {}), **(key_values(param, "--param") or {})}
    detector = build_detector(clean.task, method or file.get("method"), params)
    result = calibrate(detector, {name: m for name, (m, _) in loaded.items()}, clean,
                       runtime=runtime, margin=margin, quantile=quantile)
    record = {**result.to_dict(), "dataset": dataset, "clean_fraction": fraction,
              "seed": runtime.seed}
    write_json_atomic(out, record)
    emit(as_json, {**record, "out": str(out)},
         lambda: console().print(f"{result.method}: threshold {result.threshold:.4g} "
                                 f"({result.rule}) from {len(loaded)} clean models; wrote {out}"))
