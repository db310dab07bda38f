"""Several detectors on one model: the most suspicious of them, in units of its
spread over known-clean models, decides.

Different reversed-trigger families find different backdoors: on the rotation
zoo DRMGuard's mask finds the BadNets patches its generator misses, and the
generator the Blended models the mask misses; on synthgaze the displaced
generator finds BadNets and WaNet, the mask Blended (docs/detection.md). Their
scores (trigger sizes) are on different scales, so taking the larger raw score
lets one family win on every model. The ensemble standardises each member's score by the
clean models `calibrate` scanned,

    z_i = (s_i − mean_i) / sd_i        (mean and sample standard deviation of
                                        member i's scores on the clean models)
    score = max_i z_i

and the threshold is then set from the clean models' ensemble scores by the
usual rule. Uncalibrated (no `standardise`), each member's own threshold t_i
stands in for the mean and |t_i| for the spread, so the score is positive when
some member's score exceeds its own threshold: the union of the members'
verdicts, with the default threshold 0.

Members are named as on the command line, `method` or `method:key=value,...`;
several are a list or one string joined by `+`:
`drmguard:displacement=1,margin=1,restarts=4+drmguard:trigger=mask` (the default).
The calibration file stores the per-member means and spreads with the members,
so `scan --calibration` reproduces the verdict. A member that itself learns from
clean models (Neural Cleanse's per-class calibration on a classifier) learns
first, from its own scans of the same models, and its calibrated scores are then
standardised; what it learnt is stored as `fitted` with the members.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from inspect import signature
from typing import Any

import numpy as np
from torch import nn

from ...config import parse_yaml
from ...core.runtime import Runtime
from ...core.types import ArrayDataset, TaskSpec
from ...errors import BadInput
from ..base import Cost, Detection, Detector, create_defense, register_defense

DEFAULT_MEMBERS = ("drmguard:displacement=1,margin=1,restarts=4", "drmguard:trigger=mask")


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """'method' or 'method:key=value,key=value' -> (method, parameters); values are
    read as YAML (numbers, booleans, lists), commas inside [...] stay in the value."""
    if not isinstance(text, str) or not text.strip():
        raise BadInput(f"detector {text!r} must be a name, optionally followed by "
                       f":key=value,key=value")
    method, colon, rest = text.strip().partition(":")
    params: dict[str, Any] = {}
    for item in re.split(r",(?![^\[]*\])", rest) if rest else []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"detector {text!r}: {item!r} must look like key=value")
        params[key.strip()] = parse_yaml(value)
    if colon and not params:
        raise BadInput(f"detector {text!r}: no key=value after ':'")
    return method, params


def build_members(members: str | Sequence[str | Detector]) -> dict[str, Detector]:
    """The members by spec: one string split at '+', or a list of specs or of
    detectors already built (named by their `name`)."""
    given = members.split("+") if isinstance(members, str) else list(members)
    if len(given) < 2:
        raise BadInput(f"ensemble members {members!r}: give at least two detectors "
                       f"(a list, or one string joined by '+')")
    built: dict[str, Detector] = {}
    for member in given:
        if isinstance(member, Detector):
            spec, detector = member.name, member
        else:
            method, params = parse_spec(member)
            if method == "ensemble":
                raise BadInput(f"ensemble member {member!r}: an ensemble cannot hold an "
                               f"ensemble")
            spec, detector = member.strip(), create_defense(method, "detection", **params)
        if spec in built:
            raise BadInput(f"ensemble members {members!r}: {spec!r} is named twice")
        built[spec] = detector
    return built


def standardisation(clean_scores: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Each member's [mean, spread] over the clean models' scores: the sample
    standard deviation, or |mean| (1 when 0) when there is one model or no spread."""
    out = {}
    for spec, scores in clean_scores.items():
        values = np.asarray(list(scores), dtype=float)
        if values.size == 0 or not np.isfinite(values).all():
            raise BadInput(f"ensemble member {spec!r} needs finite scores on the clean models")
        mean = float(values.mean())
        spread = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[spec] = [mean, spread if spread > 0 else (abs(mean) or 1.0)]
    return out


def combine(scores: Mapping[str, float], standardise: Mapping[str, Sequence[float]]
            ) -> tuple[float, str, dict[str, float]]:
    """(ensemble score, the leading member, each member's standardised score)."""
    z = {spec: (score - standardise[spec][0]) / standardise[spec][1]
         for spec, score in scores.items()}
    leading = max(z, key=z.__getitem__)
    return z[leading], leading, z


@register_defense("ensemble", "detection",
                  "runs several detectors; the most suspicious of them, in units of its "
                  "spread over known-clean models, decides")
class Ensemble(Detector):
    """Several detectors on one model (see the module docstring).

    `members`: detector specs (a list, or one string joined by '+'; detectors
    already built may stand in a list, named by their `name`); `standardise`:
    each member's [mean, spread] on known-clean models, set by `calibrate` (None:
    each member's own threshold stands in); `fitted`: what members with their own
    `fit_clean` learnt from those models, by member (set by `calibrate`);
    `threshold`: on the ensemble score.
    """

    def __init__(self, members: str | Sequence[str | Detector] = DEFAULT_MEMBERS,
                 standardise: Mapping[str, Sequence[float]] | None = None,
                 threshold: float = 0.0, fitted: Mapping[str, Mapping[str, Any]] | None = None):
        self.members = build_members(members)
        if fitted is not None:
            if not isinstance(fitted, Mapping) or not all(
                    spec in self.learners and isinstance(values, Mapping)
                    for spec, values in fitted.items()):
                raise BadInput(f"ensemble fitted {fitted!r} must map members that learn from "
                               f"clean models ({', '.join(self.learners) or 'none here'}) to "
                               f"what they learnt")
            for spec, values in fitted.items():
                allowed = set(signature(self.members[spec].set_fit).parameters)
                if not values or set(values) - allowed:
                    raise BadInput(f"ensemble fitted[{spec!r}] {dict(values)!r}: allowed keys "
                                   f"{', '.join(sorted(allowed))}")
                self.members[spec].set_fit(**values)
        if standardise is not None:
            if not isinstance(standardise, Mapping) or set(standardise) != set(self.specs):
                raise BadInput(f"ensemble standardise must map each member "
                               f"({', '.join(self.specs)}) to [mean, spread]")
            for spec, pair in standardise.items():
                if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   and math.isfinite(v) for v in pair) or not pair[1] > 0):
                    raise BadInput(f"ensemble standardise[{spec!r}] {pair!r} must be "
                                   f"[mean, spread] with a spread > 0")
            standardise = {spec: [float(v) for v in standardise[spec]] for spec in self.specs}
        self.standardise = standardise
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise BadInput(f"ensemble threshold {threshold!r} must be a number")
        self.threshold = float(threshold)

    @property
    def specs(self) -> list[str]:
        """The members' specs, in order."""
        return list(self.members)

    @property
    def learners(self) -> list[str]:
        """The members that learn from clean models themselves (`fit_clean`)."""
        return [spec for spec, member in self.members.items() if hasattr(member, "fit_clean")]

    def params(self) -> dict[str, Any]:
        fitted = {spec: self.members[spec].fitted() for spec in self.learners
                  if self.members[spec].fitted()}
        return {"members": list(self.specs),
                **({"standardise": self.standardise} if self.standardise else {}),
                **({"fitted": fitted} if fitted else {})}

    def check_task(self, task: TaskSpec) -> None:
        for member in self.members.values():
            member.check_task(task)

    def scales(self, found: Mapping[str, Detection]) -> dict[str, list[float]]:
        """Each member's [centre, spread]: calibrated, or the threshold its scan
        applied (some depend on the task, e.g. Neural Cleanse's)."""
        if self.standardise is not None:
            return dict(self.standardise)
        return {spec: [d.threshold, abs(d.threshold) or 1.0] for spec, d in found.items()}

    def inspect(self, model: nn.Module, clean: ArrayDataset, *,
                runtime: Runtime = Runtime()) -> Detection:
        """Every member's scan (each checks the task), then their standardised maximum."""
        start = time.perf_counter()
        found = {spec: member.inspect(model, clean, runtime=runtime)
                 for spec, member in self.members.items()}
        scales = self.scales(found)
        score, leading, z = combine({spec: d.score for spec, d in found.items()}, scales)
        evidence = {"leading": leading, "calibrated": self.standardise is not None,
                    "scales": scales, "params": self.params(),
                    "members": {spec: {"method": d.method, "score": d.score,
                                       "standardised": z[spec], "threshold": d.threshold,
                                       "backdoored": d.backdoored, "target": d.target,
                                       "cost": {"seconds": d.cost.seconds,
                                                "passes": d.cost.passes},
                                       "evidence": d.evidence}
                                for spec, d in found.items()}}
        cost = Cost(time.perf_counter() - start, sum(d.cost.passes for d in found.values()),
                    {f"{spec} seconds": d.cost.seconds for spec, d in found.items()})
        return Detection("ensemble", score, self.threshold, bool(score > self.threshold),
                         found[leading].target, evidence, cost, trigger=found[leading].trigger)

    def fit_clean(self, detections: Mapping[str, Detection]) -> dict[str, float]:
        """Set `standardise` from scans of known-clean models and return their
        ensemble scores under it (what `calibrate` then sets the threshold from)."""
        members = {name: d.evidence["members"] for name, d in detections.items()}
        scores = {spec: {name: m[spec]["score"] for name, m in members.items()}
                  for spec in self.specs}
        for spec in self.learners:  # e.g. Neural Cleanse's per-class statistics
            scores[spec] = self.members[spec].fit_clean(
                {name: member_detection(m[spec]) for name, m in members.items()})
        self.standardise = standardisation({spec: list(by_model.values())
                                            for spec, by_model in scores.items()})
        return {name: combine({spec: scores[spec][name] for spec in self.specs},
                              self.standardise)[0]
                for name in members}


def member_detection(record: Mapping[str, Any]) -> Detection:
    """A member's scan as `Ensemble.inspect` records it in its evidence."""
    return Detection(record["method"], record["score"], record["threshold"],
                     record["backdoored"], record["target"], record["evidence"],
                     Cost(record["cost"]["seconds"], record["cost"]["passes"]))
