"""`audit`: a regression surrogate against its oracle (local error maximisers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInput
from . import app
from .common import (ConfigFile, Device, Json, Overwrite, Seed, Threads, checkpoint_and_data,
                     config_file, console, emit, key_values, runtime_from)


def _oracle(dataset: str, factory: str | None):
    """The user's oracle (`package.module:function` returning an Oracle) or the data set's."""
    from .. import registry
    from ..core.checkpoint import import_factory
    from ..core.oracle import Oracle

    if factory is not None:
        oracle = import_factory(factory)()
        if not isinstance(oracle, Oracle):
            raise BadInput(f"oracle factory {factory!r} returned {type(oracle).__name__}, "
                           "not a backdoorguard Oracle")
        return oracle
    build = registry.get("dataset", dataset).extra.get("oracle")
    if build is None:
        known = ", ".join(e.name for e in registry.entries("dataset") if "oracle" in e.extra)
        raise BadInput(f"data set {dataset!r} has no oracle; pass --oracle package.module:function "
                       f"(data sets with one: {known or 'none'})")
    return build()


@app.command("audit")
def audit_command(
    directory: Annotated[Path, typer.Argument(help="Checkpoint directory of the surrogate.")],
    out: Annotated[Path | None, typer.Option(help="Report directory to write.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set (default: the one it was trained on).")] = None,
    budget: Annotated[int | None, typer.Option(help="Oracle calls for the audit (default 2000).")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Also write a repaired checkpoint.")] = False,
    repair_mode: Annotated[str | None, typer.Option(help="relabel or drop (default relabel).")] = None,
    repair_budget: Annotated[int | None, typer.Option(help="Oracle calls for the repair (default 2000).")] = None,
    repair_epochs: Annotated[int | None, typer.Option(
        help="Fine-tuning epochs of the repair (default 80); `repair_train` in --config "
             "sets its other training settings.")] = None,
    slice_grid: Annotated[int | None, typer.Option(help="Points per side of each picture slice (0: no picture; default 15).")] = None,
    oracle: Annotated[str | None, typer.Option(help="Your oracle: package.module:function returning an Oracle.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Audit parameter KEY=VALUE.")] = None,
    overwrite: Overwrite = False,
    seed: Seed = None, device: Device = None, threads: Threads = None, as_json: Json = False,
    config: ConfigFile = None,
) -> int:
    """Search the surrogate's largest errors against the oracle; flag those where
    training data are dense (exit 1 when a region is flagged, as scanners do)."""
    from .. import registry
    from ..core.checkpoint import check_output
    from ..defenses.base import create_defense
    from ..defenses.audit.repair import Repair
    from ..defenses.audit.report import write_audit_report
    from ..pipeline import training_set

    file = config_file(config)
    out = out or file.get("out")
    if out is None:
        raise BadInput("--out is required (the directory to write the report to)")
    check_output(out, overwrite=overwrite)
    runtime = runtime_from(file, seed, device, threads, as_json).apply()
    settings = _settings(file, budget=budget, repair_mode=repair_mode,
                         repair_budget=repair_budget, repair_epochs=repair_epochs,
                         slice_grid=slice_grid)
    params = {**file.get("params", {}), **(key_values(param, "--param") or {})}
    auditor = create_defense("error-maximizers", "audit", budget=settings["budget"], **params)
    repairer = Repair(mode=settings["repair_mode"], budget=settings["repair_budget"],
                      train=settings["repair_train"]) if (repair or file.get("repair")) else None
    model, card, dataset, data = checkpoint_and_data(directory, dataset or file.get("dataset"))
    summary = write_audit_report(
        model.to(runtime.torch_device), training_set(card, data), _oracle(dataset, oracle), out,
        auditor=auditor, repair=repairer, test=data.test, slice_grid=settings["slice_grid"],
        feature_names=registry.get("dataset", dataset).extra.get("features"),
        raw_box=registry.get("dataset", dataset).extra.get("raw_box") if oracle is None else None,
        card=card,
        runtime=runtime, overwrite=overwrite)
    summary = {"directory": str(directory), "dataset": dataset, "out": str(out), **summary}
    emit(as_json, summary, lambda: _render(summary))
    return 1 if summary["suspicious_regions"] else 0


def _settings(file: dict, **flags) -> dict:
    """Defaults, then the config file, then the flags; checked. The repair's
    fine-tuning settings (`repair_train` in the file, `repair_epochs` over it) are
    checked where every training setting is, when the repair is built."""
    settings = {"budget": 2000, "repair_mode": "relabel", "repair_budget": 2000,
                "repair_train": {}, "repair_epochs": None, "slice_grid": 15}
    settings.update({k: file[k] for k in settings if k in file})
    settings.update({k: v for k, v in flags.items() if v is not None})
    grid = settings["slice_grid"]
    if not isinstance(grid, int) or grid < 0 or grid == 1:
        raise BadInput(f"slice grid {grid!r} must be 0 (no picture) or ≥ 2")
    train = settings["repair_train"]
    if not isinstance(train, dict):
        raise BadInput(f"repair_train {train!r} must be a mapping of training settings "
                       "(epochs, lr, batch_size, ...)")
    if settings["repair_epochs"] is not None:
        settings["repair_train"] = {**train, "epochs": settings["repair_epochs"]}
    return settings


def _render(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"audit of {summary['directory']} against {summary['oracle']['name']}")
    for column in ("region", "error", "× typical", "density", "× median", "verdict"):
        table.add_column(column, justify="right")
    for i, region in enumerate(summary["audit"]["regions"]):
        table.add_row(str(i), f"{region['error']:.4g}", f"{region['error_ratio']:.1f}",
                      str(region["density"]), f"{region['density_ratio']:.2f}",
                      "SUSPICIOUS" if region["suspicious"] else "ok")
    out = console()
    out.print(table)
    calls = summary["oracle"]
    out.print(f"oracle calls: audit {calls['audit_calls']}, picture {calls['picture_calls']}"
              + (f", repair {calls['repair_calls']}" if "repair_calls" in calls else ""))
    if "repair" in summary:
        changes = summary["repair"]["changes"]
        out.print(f"repair ({summary['repair']['mode']}): {changes['disagreed']} training labels "
                  f"disagreed with the oracle, {changes['added']} points added")
    out.print(f"wrote {summary['out']}")
