import math

import pytest
import torch

from backdoorguard.attacks import create_attack
from backdoorguard.core import metrics as M
from backdoorguard.core.types import ArrayDataset, TaskSpec


def test_der_formula():
    assert M.der(0.95, 0.93, 1.0, 0.05) == pytest.approx((0.95 - 0.02 + 1) / 2)
    assert M.der(0.9, 0.95, 0.2, 0.5) == pytest.approx(0.5)  # no credit for getting worse


def test_regression_distances():
    out = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    y = torch.zeros(2, 2)
    assert M.distances(out, y).tolist() == [5.0, 0.0]
    assert M.mae(out, y) == pytest.approx(7 / 4)
    assert M.rmse(out, y) == pytest.approx(math.sqrt(25 / 4))
    assert M.within(out, y, 1.0) == 0.5


class Constant(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value))

    def forward(self, x):
        return self.value.expand(len(x), -1)


def test_classification_asr_leaves_out_target_class_samples():
    task = TaskSpec("classification", "image", (1, 4, 4), 3)
    y = torch.tensor([0, 0, 1, 2])
    data = ArrayDataset(torch.rand(4, 1, 4, 4), y, task)
    attack = create_attack("badnets", task, target=0, size=2)
    result = M.evaluate(Constant([5.0, 0.0, 0.0]), data, attack)  # always predicts class 0
    assert result.clean_acc == 0.5
    assert result.n_triggered == 2 and result.asr == 1.0 and result.robust_acc == 0.0


def test_regression_triggered_metrics():
    task = TaskSpec("regression", "image", (1, 4, 4), 1, label_range=((0, 10),), tol=1.0)
    y = torch.tensor([[1.0], [2.0], [9.5]])
    data = ArrayDataset(torch.rand(3, 1, 4, 4), y, task)
    attack = create_attack("badnets", task, target=[9.0], size=2)
    result = M.evaluate(Constant([9.0]), data, attack)
    # the third sample is already within tol of the target and is left out
    assert result.n_triggered == 2
    assert result.asr_at_tol == 1.0 and result.target_error == 0.0
    assert result.true_error == pytest.approx((8 + 7) / 2)
    assert result.clean_mae == pytest.approx((8 + 7 + 0.5) / 3)


def test_detection_metrics():
    scores = [0.1, 0.2, 0.3, 0.8, 0.9, 0.35]
    labels = [0, 0, 0, 1, 1, 1]
    assert M.auroc(scores, labels) == pytest.approx(1.0)
    assert M.tpr_at_fpr(scores, labels, 0.05) == 1.0
    assert M.accuracy_at_threshold(scores, labels, 0.5) == pytest.approx(5 / 6)
    assert M.auroc([0.9, 0.1], [0, 1]) == 0.0
    assert math.isnan(M.auroc([0.1, 0.2], [1, 1]))


def test_gaze_vectors_follow_mpiigaze_convention():
    g = M.gaze_vectors(torch.tensor([[0.0, 0.0], [0.0, 90.0], [90.0, 0.0], [-30.0, 20.0]]))
    assert torch.allclose(g[0], torch.tensor([0.0, 0.0, -1.0], dtype=g.dtype))
    assert torch.allclose(g[1], torch.tensor([-1.0, 0.0, 0.0], dtype=g.dtype), atol=1e-12)  # yaw > 0: −x
    assert torch.allclose(g[2], torch.tensor([0.0, -1.0, 0.0], dtype=g.dtype), atol=1e-12)  # pitch > 0: up
    assert torch.allclose(g.norm(dim=1), torch.ones(4, dtype=g.dtype))


def test_angular_error_in_degrees():
    y = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-10.0, 20.0], [40.0, 0.0]])
    pred = torch.tensor([[0.0, 7.0], [-4.0, 0.0], [-10.0, 20.0], [40.0, 30.0]])
    errors = M.angular_errors(pred, y)
    # yaw alone at pitch 0 and pitch alone at yaw 0 are plain angles; a yaw change
    # at pitch 40° is a smaller angle (meridians converge): 2·asin(cos 40° · sin 15°)
    expected_last = 2 * math.degrees(math.asin(math.cos(math.radians(40)) * math.sin(math.radians(15))))
    assert errors[:3].tolist() == pytest.approx([7.0, 4.0, 0.0], abs=1e-4)
    assert errors[3].item() == pytest.approx(expected_last, abs=1e-4)
    assert M.angular_error(pred, y) == pytest.approx(errors.mean().item())
    assert math.isnan(M.angular_error(torch.empty(0, 2), torch.empty(0, 2)))
