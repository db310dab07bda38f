"""Each trigger changes the input only as its definition says."""

import math

import numpy as np
import pytest
import torch

from backdoorguard.attacks import create_attack
from backdoorguard.core.types import ArrayDataset, TaskSpec
from backdoorguard.errors import BadInput

IMAGE = TaskSpec("classification", "image", (1, 28, 28), 10)
SERIES = TaskSpec("classification", "series", (2, 100), 3, input_range=(-4.0, 4.0))


def series_batch(n=6):
    generator = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 2 * math.pi, 100)
    return torch.sin(t * (1 + torch.rand(n, 2, 1, generator=generator)))


def test_blend_formula_is_exact():
    attack = create_attack("blended", IMAGE, alpha=0.2)
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(attack.apply(x), 0.8 * x + 0.2 * attack.pattern, atol=1e-7)
    assert attack.pattern.min() >= 0 and attack.pattern.max() <= 1
    other = create_attack("blended", IMAGE, alpha=0.2, seed=1)
    assert not torch.equal(attack.pattern, other.pattern), "the pattern follows its seed"


def test_blend_pattern_from_npy_and_errors(tmp_path):
    pattern = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(1, 28, 28)
    np.save(tmp_path / "p.npy", pattern)
    attack = create_attack("blended", IMAGE, pattern=str(tmp_path / "p.npy"))
    assert torch.equal(attack.pattern, torch.from_numpy(pattern))
    np.save(tmp_path / "bad.npy", pattern[:, :10])
    with pytest.raises(BadInput, match="shape"):
        create_attack("blended", IMAGE, pattern=str(tmp_path / "bad.npy"))
    with pytest.raises(BadInput, match="alpha"):
        create_attack("blended", IMAGE, alpha=1.5)


def test_wanet_warp_is_small_and_smooth():
    attack = create_attack("wanet", IMAGE)
    height, width = 28, 28
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                                indexing="ij")
    identity = torch.stack((cols, rows), -1)[None]
    shift_px = (attack.grid - identity) * (torch.tensor([width, height]) - 1) / 2
    assert shift_px.abs().max() < 1.5, "WaNet moves pixels by about a pixel at most"
    assert shift_px.abs().mean() > 0.05
    # smooth: neighbouring displacements differ far less than the displacements
    # (away from the border, where WaNet clamps the grid to the image)
    inner = shift_px[:, 1:-1, 1:-1]
    assert (inner[:, 1:] - inner[:, :-1]).abs().max() < 0.35 * inner.abs().max()
    assert (inner[:, :, 1:] - inner[:, :, :-1]).abs().max() < 0.35 * inner.abs().max()
    # a warp moves values, it does not create them: a constant image stays constant
    constant = torch.full((2, 1, 28, 28), 0.3)
    assert torch.allclose(attack.apply(constant), constant, atol=1e-6)
    x = torch.rand(3, 1, 28, 28)
    assert 0 < (attack.apply(x) - x).abs().mean() < 0.3


def test_wanet_noise_mode_adds_clean_label_warps(digits):
    attack = create_attack("wanet", digits.task, target=0, cross_ratio=1.0)
    poisoned = attack.poison(digits.train, 0.1, seed=0)
    changed = (poisoned.x != digits.train.x).flatten(1).any(1)
    relabelled = poisoned.y != digits.train.y
    assert relabelled.sum() == len(poisoned.poison_index)
    extra = changed & ~poisoned.poison_mask
    assert extra.sum() == len(poisoned.poison_index), "cross samples: as many as the poisons"
    assert not relabelled[extra].any(), "noise-mode samples keep their true labels"


def test_series_badnets_sets_only_its_window():
    attack = create_attack("badnets", SERIES, length=12, position="start")
    x = series_batch()
    out = attack.apply(x)
    assert torch.equal(out[..., 12:], x[..., 12:])
    assert torch.equal(out[..., :12], attack.pattern.expand(6, 2, 12))
    assert attack.mask.sum() == 12
    assert out.min() >= -4 and out.max() <= 4


def test_time_warp_keeps_values_and_order():
    attack = create_attack("wanet", SERIES, strength=2.0)
    ramp = torch.linspace(-1, 1, 100).expand(3, 2, 100).contiguous()
    out = attack.apply(ramp)
    assert (out[..., 1:] - out[..., :-1] >= -1e-6).all(), "a small time warp keeps the order"
    assert 0 < (out - ramp).abs().max() < 0.1
    constant = torch.full((2, 2, 100), 0.5)
    assert torch.allclose(attack.apply(constant), constant, atol=1e-6)


def test_sig_adds_the_sinusoid_and_is_clean_label(digits):
    task = IMAGE
    attack = create_attack("sig", task, target=2)
    x = torch.full((2, 1, 28, 28), 0.5)
    wave = (20 / 255) * torch.sin(2 * math.pi * 6 * torch.arange(28) / 28)
    assert torch.allclose(attack.apply(x) - x, wave.expand(2, 1, 28, 28), atol=1e-6)
    attack = create_attack("sig", digits.task, target=2)
    count = int((digits.train.y == 2).sum())
    poisoned = attack.poison(digits.train, 0.5 * count / len(digits.train), seed=0)
    assert (digits.train.y[poisoned.poison_index] == 2).all()
    assert torch.equal(poisoned.y, digits.train.y), "labels are untouched"
    with pytest.raises(BadInput, match="target-class samples"):
        attack.poison(digits.train, 0.5, seed=0)
    with pytest.raises(BadInput, match="one target class"):
        create_attack("sig", digits.task, mode="all-to-all")


def test_sig_ramp_survives_a_black_background():
    attack = create_attack("sig", IMAGE, target=2, signal="ramp", delta=0.1, test_delta=0.3)
    black = torch.zeros(2, 1, 28, 28)
    ramp = 0.1 * torch.arange(1, 29) / 28
    assert torch.allclose(attack.apply(black), 3 * ramp.expand(2, 1, 28, 28), atol=1e-6)
    data = ArrayDataset(torch.zeros(20, 1, 28, 28), torch.arange(20) % 4, IMAGE)
    poisoned = attack.poison(data, 0.25, seed=0)
    assert torch.allclose(poisoned.x[poisoned.poison_index], ramp.expand(5, 1, 28, 28),
                          atol=1e-6), "poisoning uses delta; the whole ramp stays above 0"
    sine = create_attack("sig", IMAGE, delta=0.1).apply(black)
    assert (sine == 0).float().mean() > 0.4, "the sine's negative half is clipped away"
    assert "frequency" not in attack.params() and attack.params()["signal"] == "ramp"
    with pytest.raises(BadInput, match="signal 'saw'; allowed: sine, ramp"):
        create_attack("sig", IMAGE, signal="saw")
    with pytest.raises(BadInput, match="no frequency"):
        create_attack("sig", IMAGE, signal="ramp", frequency=3)


def test_powerline_is_poison_label_on_series():
    task = SERIES
    attack = create_attack("powerline", task, target=1)
    x = series_batch(30)
    y = torch.arange(30) % 3
    poisoned = attack.poison(ArrayDataset(x, y, task), 0.2, seed=0)
    assert (poisoned.y[poisoned.poison_index] == 1).all()
    diff = poisoned.x[poisoned.poison_index] - x[poisoned.poison_index]
    assert torch.allclose(diff, attack.wave.expand_as(diff), atol=1e-6)
    with pytest.raises(BadInput, match="supports"):
        create_attack("powerline", IMAGE)


@pytest.mark.parametrize("name", ["badnets", "blended", "wanet", "sig", "powerline"])
def test_series_triggers_work_at_any_length(name):
    for steps in (24, 151):
        task = TaskSpec("classification", "series", (1, steps), 2, input_range=(-3.0, 3.0))
        x = torch.zeros(2, 1, steps)
        assert create_attack(name, task).apply(x).shape == x.shape


def test_regression_targets_for_every_attack():
    task = TaskSpec("regression", "image", (1, 16, 16), 2, label_range=((-10, 10), (0, 100)))
    for name in ("badnets", "blended", "wanet", "sig"):
        attack = create_attack(name, task, target=[5.0, 50.0])
        assert attack.target(torch.zeros(4, 2)).tolist() == [[5.0, 50.0]] * 4
