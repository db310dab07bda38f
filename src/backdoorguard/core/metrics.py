"""Task-aware metrics: pure functions of outputs and labels, and `evaluate` that
computes the set that applies to a task.

Classification
    clean_acc   accuracy on the clean test set
    asr         share of triggered test inputs, whose true label is not the target,
                predicted as the target
    robust_acc  accuracy on those triggered inputs against their true labels
    der         defense effectiveness rate (see `der`)

Regression, in the label's own units (distances are Euclidean over the outputs)
    clean_mae, clean_rmse   on the clean test set (over all output elements)
    target_error            mean distance of triggered outputs to the attacker's target
    true_error              mean distance of triggered outputs to the true labels
    asr_at_tol              share of triggered outputs within `tol` of the target

Gaze (pitch, yaw in degrees)
    angular_error           mean angle between predicted and true 3-D gaze directions,
                            the figure gaze-estimation papers report (`gaze_vectors`)

As with classification, triggered metrics leave out test samples that already
satisfy the attack (true label is the target class; for regression, within `tol`
of the target vector), so they measure what the trigger does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .training import predict
from .types import ArrayDataset, TaskSpec

if TYPE_CHECKING:
    from ..attacks.base import Attack


# ---------------------------------------------------------------- classification

def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return int((outputs.argmax(1) == y).sum()) / len(y)


def attack_success_rate(outputs: torch.Tensor, y_target: torch.Tensor) -> float:
    """Share of (triggered, non-target) outputs predicted as their target."""
    return accuracy(outputs, y_target)


def der(acc_before: float, acc_after: float, asr_before: float, asr_after: float) -> float:
    """Defense effectiveness rate:
    [max(0, ASR_before − ASR_after) − max(0, ACC_before − ACC_after) + 1] / 2."""
    return (max(0.0, asr_before - asr_after) - max(0.0, acc_before - acc_after) + 1.0) / 2.0


# ---------------------------------------------------------------- regression

def mae(outputs: torch.Tensor, y: torch.Tensor) -> float:
    return (outputs - y).abs().mean().item()


def rmse(outputs: torch.Tensor, y: torch.Tensor) -> float:
    return (outputs - y).pow(2).mean().sqrt().item()


def distances(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per sample over the output dimensions."""
    return (outputs - y).flatten(1).norm(dim=1)


def within(outputs: torch.Tensor, y: torch.Tensor, tol: float) -> float:
    """Share of samples whose output lies within `tol` of `y`."""
    if len(y) == 0:
        return float("nan")
    return int((distances(outputs, y) <= tol).sum()) / len(y)


# ---------------------------------------------------------------- gaze

def gaze_vectors(pitch_yaw: torch.Tensor) -> torch.Tensor:
    """Unit 3-D gaze directions [N, 3] from (pitch, yaw) in degrees [N, 2].

    MPIIGaze's convention (Zhang et al., CVPR 2015), in camera coordinates with x
    to the right, y down and z into the scene:
    g = (−cos p · sin y, −sin p, −cos p · cos y). Pitch 0, yaw 0 looks straight
    into the camera; positive pitch looks up, positive yaw towards the image's left.
    """
    radians = torch.deg2rad(pitch_yaw.double())
    pitch, yaw = radians[:, 0], radians[:, 1]
    return torch.stack((-pitch.cos() * yaw.sin(), -pitch.sin(), -pitch.cos() * yaw.cos()), 1)


def angular_errors(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample angle in degrees between the gaze directions of `pred` and `y`,
    both (pitch, yaw) in degrees [N, 2]."""
    a, b = gaze_vectors(pred), gaze_vectors(y)
    # atan2(|a×b|, a·b) stays accurate for tiny angles, where arccos of a dot product does not
    sine = torch.linalg.cross(a, b).norm(dim=1)
    return torch.rad2deg(torch.atan2(sine, (a * b).sum(1))).float()


def angular_error(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean angular error in degrees between predicted and true gaze (pitch, yaw
    in degrees): the figure gaze papers report (5° is DRMGuard's tolerance)."""
    if len(y) == 0:
        return float("nan")
    return angular_errors(pred, y).mean().item()


# ---------------------------------------------------------------- detection

def auroc(scores: np.ndarray | list[float], backdoored: np.ndarray | list[bool]) -> float:
    """Area under the ROC curve; higher score = more likely backdoored."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(backdoored, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=float)))


def tpr_at_fpr(scores: np.ndarray | list[float], backdoored: np.ndarray | list[bool],
               fpr: float = 0.05) -> float:
    """Highest true-positive rate reachable with false-positive rate ≤ `fpr`."""
    from sklearn.metrics import roc_curve

    labels = np.asarray(backdoored, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    fprs, tprs, _ = roc_curve(labels, np.asarray(scores, dtype=float))
    return float(tprs[fprs <= fpr + 1e-12].max())


def accuracy_at_threshold(scores, backdoored, threshold: float) -> float:
    """Identification accuracy when `score > threshold` means backdoored."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(backdoored, dtype=bool)
    return float(((scores > threshold) == labels).mean())


# ---------------------------------------------------------------- the task-aware set

@dataclass(frozen=True)
class Metrics:
    """The metrics that apply to one evaluation; unset fields do not apply."""

    kind: str
    n_test: int
    clean_acc: float | None = None
    asr: float | None = None
    robust_acc: float | None = None
    clean_mae: float | None = None
    clean_rmse: float | None = None
    target_error: float | None = None
    true_error: float | None = None
    asr_at_tol: float | None = None
    tol: float | None = None
    n_triggered: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def attack_metric(self) -> float | None:
        """ASR for classification, asr_at_tol for regression."""
        return self.asr if self.kind == "classification" else self.asr_at_tol


def triggered_subset(test: ArrayDataset, attack: Attack) -> tuple[torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]:
    """(triggered inputs, true labels, targets) the attack is measured on
    (`Attack.triggered`)."""
    return attack.triggered(test)


def evaluate(model: nn.Module, test: ArrayDataset, attack: Attack | None = None,
             *, batch_size: int = 512, tol: float | None = None) -> Metrics:
    """Clean metrics, plus triggered metrics when an attack is given."""
    task: TaskSpec = test.task
    outputs = predict(model, test.x, batch_size=batch_size)
    y = test.y.cpu()
    if task.is_classification:
        values: dict[str, Any] = {"clean_acc": accuracy(outputs, y)}
    else:
        values = {"clean_mae": mae(outputs, y), "clean_rmse": rmse(outputs, y)}
    if attack is not None:
        x_trig, y_true, y_target = triggered_subset(test, attack)
        trig_out = predict(model, x_trig, batch_size=batch_size)
        values["n_triggered"] = len(y_true)
        if task.is_classification:
            values["asr"] = attack_success_rate(trig_out, y_target.cpu())
            values["robust_acc"] = accuracy(trig_out, y_true.cpu())
        else:
            tol = tol if tol is not None else task.tol
            values["target_error"] = distances(trig_out, y_target.cpu()).mean().item()
            values["true_error"] = distances(trig_out, y_true.cpu()).mean().item()
            values["asr_at_tol"] = within(trig_out, y_target.cpu(), tol)
            values["tol"] = tol
    return Metrics(kind=task.kind, n_test=len(test), **values)


def isolation(flagged: list[int], train) -> dict[str, float]:
    """Precision and recall of flagged training samples against the true poison
    (only when the training set was poisoned)."""
    poison = getattr(train, "poison_index", None)
    if poison is None or len(poison) == 0:
        return {}
    truth = set(int(i) for i in poison)
    chosen = set(int(i) for i in flagged)
    hits = len(truth & chosen)
    return {"precision": hits / len(chosen) if chosen else 0.0, "recall": hits / len(truth)}
