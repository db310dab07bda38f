"""An audit report folder: `audit.json`, `audit.png` and (optionally) a repaired
checkpoint, written atomically. Shared by `backdoorguard audit` and the Python API.

    REPORT_DIR/
      audit.json     regions (located centre, maximiser, error, density, verdict), flagged
                     samples, oracle calls (audit, picture, repair), parameters
      audit.png      2-D slices of the error landscape with the flagged regions
      repaired/      model.safetensors + model.json (with --repair)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ...core.checkpoint import atomic_output, save_model, write_json
from ...core.oracle import Oracle
from ...core.runtime import Runtime
from ...core.training import predict
from ...core.types import ArrayDataset
from .error_maximizers import ErrorMaximizers
from .figures import error_slices_figure
from .repair import Repair


def test_rmse(model: nn.Module, test: ArrayDataset | None) -> float | None:
    if test is None:
        return None
    return float((predict(model, test.x) - test.y.float()).pow(2).mean().sqrt())


def write_audit_report(model: nn.Module, train: ArrayDataset, oracle: Oracle, out: str | Path, *,
                       auditor: ErrorMaximizers, repair: Repair | None = None,
                       test: ArrayDataset | None = None, slice_grid: int = 15,
                       feature_names: list[str] | None = None,
                       raw_box: tuple[list[float], list[float]] | None = None,
                       card: dict[str, Any] | None = None,
                       runtime: Runtime = Runtime(), overwrite: bool = False) -> dict[str, Any]:
    """Audit `model` against `oracle`, draw the slices, optionally repair; write the
    folder `out` and return the contents of `audit.json`."""
    with atomic_output(out, overwrite=overwrite) as tmp:
        audit = auditor.audit(model, train, oracle, runtime=runtime)
        audit_calls = audit.cost.counters["oracle_calls"]
        picture_calls = error_slices_figure(model, oracle, audit.regions, tmp / "audit.png",
                                            grid=slice_grid, radius=auditor.density_radius,
                                            names=feature_names,
                                            raw_box=raw_box) if slice_grid else 0
        summary: dict[str, Any] = {
            "audit": audit.to_dict(),
            "suspicious_regions": sum(r["suspicious"] for r in audit.regions),
            "oracle": {"name": oracle.name, "audit_calls": audit_calls,
                       "picture_calls": picture_calls,
                       "seconds_per_call": oracle.seconds_per_call},
            "train_samples": len(train), "test_rmse": test_rmse(model, test),
            "files": ["audit.json"] + (["audit.png"] if slice_grid else []),
        }
        if repair is not None:
            repaired = repair.repair(model, train, audit, oracle, runtime=runtime)
            (tmp / "repaired").mkdir()
            repair_card = {"repair": {"mode": repaired.mode, "changes": repaired.changes,
                                      "fine_tune": repair.train.model_dump()}}
            if card:
                repair_card["repaired_from"] = {k: card[k] for k in ("training", "attack", "model")
                                                if k in card}
            save_model(repaired.model, tmp / "repaired", train.task, card=repair_card)
            summary["repair"] = {"mode": repaired.mode, "changes": repaired.changes,
                                 "cost": repaired.to_dict()["cost"],
                                 "test_rmse": test_rmse(repaired.model, test)}
            summary["oracle"]["repair_calls"] = repaired.cost.counters["oracle_calls"]
            summary["files"].append("repaired/")
        write_json(tmp / "audit.json", summary)
    return summary
