"""Thresholds from models known to be clean.

A detector's score has no universal bound: DRMGuard's trigger size depends on
the data and the model (the paper's ε = 0.03 held at one setting only in our
prototypes). `calibrate` scans a few models the user knows to be clean and puts
the threshold just above the most suspicious of them:

    threshold = max(s) + margin · (max(s) − min(s))      (margin 0.1 by default)

when all clean scores are equal (or there is one), the spread is replaced by
|max(s)| (or 1 when that is 0), so the threshold always lies above them.
So every known-clean model passes, and the margin keeps a re-scan of one of them
(scores vary with the scan's seed) from landing right on the line. With many
clean models, `quantile=q` instead takes their q-quantile (it accepts a share
1 − q of false alarms on clean models). The result records the rule, the clean
scores and the detector's parameters, and is stored with each verdict. A
detector with a `fit_clean(detections)` method first learns from the clean
models' scans how to scale its score (the ensemble its members', Neural Cleanse
on a classifier each class's), then returns their scores under it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ...core.checkpoint import read_json, sha256
from ...core.runtime import Runtime
from ...core.types import ArrayDataset
from ...errors import BadInput
from ..base import Detector


@dataclass(frozen=True)
class Calibration:
    """A threshold and how it was set."""

    method: str
    threshold: float
    clean_scores: dict[str, float]
    rule: str
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        data = read_json(Path(path), "calibration file")
        where = f"calibration file {str(path)!r}"
        if not isinstance(data, dict):
            raise BadInput(f"{where} must hold a JSON object, not {type(data).__name__}")
        missing = [k for k in ("method", "threshold", "clean_scores", "rule") if k not in data]
        if missing:
            raise BadInput(f"{where} lacks {', '.join(missing)} (it needs method, threshold, "
                           "clean_scores and rule; `backdoorguard calibrate` writes them)")
        threshold = data["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise BadInput(f"{where}: threshold {threshold!r} must be a number")
        scores = data["clean_scores"]
        if not isinstance(scores, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
            raise BadInput(f"{where}: clean_scores must map model names to numbers")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise BadInput(f"{where}: params must be a mapping, not {type(params).__name__}")
        return cls(method=str(data["method"]), threshold=float(threshold),
                   clean_scores={str(k): float(v) for k, v in scores.items()},
                   rule=str(data["rule"]), params=dict(params))


def threshold_from(scores: Sequence[float], margin: float = 0.1,
                   quantile: float | None = None) -> tuple[float, str]:
    """The threshold for clean `scores` and the rule that gave it (see module doc)."""
    values = np.asarray(list(scores), dtype=float)
    if values.size == 0 or not np.isfinite(values).all():
        raise BadInput("calibration needs at least one clean model with a finite score")
    if quantile is not None:
        if not 0 < quantile <= 1:
            raise BadInput(f"calibration quantile {quantile!r} must lie in (0, 1]")
        return float(np.quantile(values, quantile)), f"{quantile:g}-quantile of clean scores"
    if margin < 0:
        raise BadInput(f"calibration margin {margin!r} must be ≥ 0")
    top = float(values.max())
    spread = float(values.max() - values.min()) or abs(top) or 1.0
    return top + margin * spread, f"max clean score + {margin:g} × spread"


def calibrate(detector: Detector, clean_models: Mapping[str, nn.Module] | Sequence[nn.Module],
              clean: ArrayDataset, *, runtime: Runtime = Runtime(), margin: float = 0.1,
              quantile: float | None = None) -> Calibration:
    """Scan `clean_models` (known to be clean) with `detector`, set its threshold
    from their scores, and return the calibration (also applied to `detector`)."""
    if not isinstance(clean_models, Mapping):
        clean_models = {f"model{i}": m for i, m in enumerate(clean_models)}
    if not clean_models:
        raise BadInput("calibration needs at least one clean model")
    detections = {name: detector.inspect(model, clean, runtime=runtime)
                  for name, model in clean_models.items()}
    # a detector that scales its score by clean models (ensemble, NC) learns that here
    fit_clean = getattr(detector, "fit_clean", None)
    scores = (fit_clean(detections) if fit_clean is not None
              else {name: d.score for name, d in detections.items()})
    threshold, rule = threshold_from(list(scores.values()), margin, quantile)
    detector.threshold = threshold
    params = detector.params() if hasattr(detector, "params") else {}
    return Calibration(detector.name, threshold, scores, rule, params)


def calibration_record(path: str | Path, calibration: Calibration) -> dict[str, Any]:
    """What a verdict stores about the calibration file its threshold came from."""
    return {"file": str(path), "sha256": sha256(Path(path)), **calibration.to_dict()}
