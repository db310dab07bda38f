import pytest
import torch

from backdoorguard.attacks import create_attack
from backdoorguard.core.types import TaskSpec
from backdoorguard.errors import BadInput

TASK = TaskSpec("classification", "image", (3, 28, 28), 10)


def test_patch_changes_only_its_pixels():
    attack = create_attack("badnets", TASK, size=4, position="top-left", margin=2)
    x = torch.rand(5, 3, 28, 28)
    out = attack.apply(x)
    changed = (out != x).any(dim=(0, 1))
    assert changed.sum() > 0
    assert not changed[~attack.mask].any(), "pixels outside the patch changed"
    assert attack.mask[2:6, 2:6].all() and attack.mask.sum() == 16
    assert torch.equal(out[:, :, 2:6, 2:6], attack.pattern.expand(5, -1, -1, -1))
    assert torch.equal(x, x.clone()), "apply must not modify its input"
    assert out.min() >= 0 and out.max() <= 1


def test_default_patch_is_a_checkerboard_in_the_corner():
    attack = create_attack("badnets", TASK)
    assert attack.size == 3 and (attack.row, attack.col) == (25, 25)
    patch = attack.pattern[0]
    assert patch[0, 0] == 1 and patch[0, 1] == 0 and patch[1, 1] == 1


def test_poison_picks_the_requested_share_with_a_seed(digits):
    attack = create_attack("badnets", digits.task, target=3)
    train = digits.train
    p1 = attack.poison(train, 0.1, seed=5)
    p2 = attack.poison(train, 0.1, seed=5)
    p3 = attack.poison(train, 0.1, seed=6)
    assert len(p1.poison_index) == round(0.1 * len(train))
    assert torch.equal(p1.poison_index, p2.poison_index)
    assert not torch.equal(p1.poison_index, p3.poison_index)
    assert (p1.y[p1.poison_index] == 3).all()
    assert (p1.clean_y[p1.poison_index] != 3).all(), "all-to-one poisons non-target samples"
    untouched = ~p1.poison_mask
    assert torch.equal(p1.x[untouched], train.x[untouched])
    assert torch.equal(p1.y[untouched], train.y[untouched])
    assert torch.equal(p1.x[p1.poison_index], attack.apply(train.x[p1.poison_index]))


def test_all_to_all_targets_the_next_class():
    attack = create_attack("badnets", TASK, mode="all-to-all")
    assert attack.target(torch.tensor([0, 4, 9])).tolist() == [1, 5, 0]


def test_regression_target_defaults_near_the_edge():
    task = TaskSpec("regression", "image", (1, 8, 8), 2, label_range=((-20, 20), (0, 10)))
    attack = create_attack("badnets", task)
    assert attack.target(torch.zeros(3, 2)).tolist() == [[16.0, 9.0]] * 3
    with pytest.raises(BadInput, match="2 values"):
        create_attack("badnets", task, target=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(target=10), "outside the label set"),
    (dict(target=-1), "outside the label set"),
    (dict(size=40), "patch size"),
    (dict(position="middle"), "patch position"),
    (dict(pattern="stripes"), "patch pattern"),
    (dict(mode="some-to-one"), "target mode"),
])
def test_bad_parameters_are_one_clear_error(kwargs, message):
    with pytest.raises(BadInput, match=message):
        create_attack("badnets", TASK, **kwargs)


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, 1.5])
def test_poison_rate_outside_zero_one(digits, rate):
    attack = create_attack("badnets", digits.task)
    with pytest.raises(BadInput, match="poison rate"):
        attack.poison(digits.train, rate, seed=0)


def test_unknown_attack_lists_known_ones():
    with pytest.raises(BadInput, match="known: .*badnets"):
        create_attack("trojannn", TASK)
