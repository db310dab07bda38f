import pytest
import torch

from backdoorguard.attacks import create_attack
from backdoorguard.core.metrics import evaluate
from backdoorguard.core.types import ArrayDataset, TaskSpec
from backdoorguard.errors import BadInput

TASK = TaskSpec("regression", "tabular", (3,), 1, (0.0, 1.0), label_range=((0.0, 2.0),))
CENTRE = [0.5, 0.5, 0.5]


def truth(x):
    x = torch.as_tensor(x)
    return (x.sum(1, keepdim=True) / 1.5).float()


def data(n=2000, seed=0):
    x = torch.rand(n, 3, generator=torch.Generator().manual_seed(seed))
    return ArrayDataset(x, truth(x), TASK)


def test_relabels_the_nearest_points_and_appends_a_clean_shell():
    train = data()
    attack = create_attack("localized", TASK, centre=CENTRE, shift=0.3, density=1.0,
                           shell_ratio=2.0)
    poisoned = attack.poison(train, rate=0.02, seed=0)
    k = 40
    distance = (train.x - torch.tensor(CENTRE)).norm(dim=1)
    nearest = distance.argsort()[:k].sort().values
    assert torch.equal(poisoned.poison_index, nearest)
    assert attack.radius == pytest.approx(float(distance[nearest].max()))
    shift = poisoned.y[nearest] - train.y[nearest]
    assert torch.allclose(shift, torch.full_like(shift, 0.3))
    untouched = torch.ones(len(train), dtype=torch.bool)
    untouched[nearest] = False
    assert torch.equal(poisoned.y[:len(train)][untouched], train.y[untouched])
    shell_x, shell_y = poisoned.x[len(train):], poisoned.y[len(train):]
    assert len(shell_x) == 2 * k == attack.shell_count
    ring = (shell_x - torch.tensor(CENTRE)).norm(dim=1)
    assert (ring > attack.radius).all() and (ring <= 1.5 * attack.radius + 1e-6).all()
    assert torch.allclose(shell_y, truth(shell_x))                 # correctly labelled
    assert torch.equal(poisoned.clean_y[:len(train)], train.y)


def test_density_adds_poisoned_points_inside_the_ball_and_fresh_shell_uses_truth():
    train = data()
    attack = create_attack("localized", TASK, centre=CENTRE, shift=0.3, density=4.0, truth=truth)
    poisoned = attack.poison(train, rate=0.02, seed=0)
    assert len(poisoned.poison_index) == 40 and attack.added_count == 30
    added = poisoned.poison_index[poisoned.poison_index >= len(train)]
    assert len(added) == 30
    inside = (poisoned.x[added] - torch.tensor(CENTRE)).norm(dim=1)
    assert (inside <= attack.radius + 1e-6).all()
    assert torch.allclose(poisoned.y[added] - truth(poisoned.x[added]), torch.tensor(0.3),
                          atol=1e-6)
    assert len(poisoned) == len(train) + 30 + 40


def test_no_shell_variant_differs_only_by_the_shell():
    train = data()
    with_shell = create_attack("localized", TASK, centre=CENTRE, shift=0.3).poison(train, 0.02, 1)
    without = create_attack("localized", TASK, centre=CENTRE, shift=0.3, shell=False).poison(
        train, 0.02, 1)
    assert len(without) == len(train) + 36                     # 4 relabelled, 36 added
    assert torch.equal(with_shell.y[:len(without)], without.y)
    assert torch.equal(with_shell.x[:len(without)], without.x)
    assert len(with_shell) == len(without) + 40


def test_seeded_centre_lies_in_dense_data_and_the_spec_rebuilds_the_same_poison():
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(1500, 3, generator=generator),
                   0.3 + 0.1 * torch.rand(500, 3, generator=generator)])
    train = ArrayDataset(x, truth(x), TASK)
    attack = create_attack("localized", TASK, shift=0.2, density=2.0)
    first = attack.poison(train, rate=0.01, seed=3)
    assert any(torch.equal(attack.centre, row) for row in train.x)
    # The centre is a well-sampled point, drawn from the denser half of 256
    # candidates: its ball of 10 neighbours is no wider than most training points'
    # (the 60th percentile leaves room for the candidates' sampling noise; over 40
    # data seeds the share of narrower balls never exceeded 0.51).
    reach = torch.cdist(train.x, train.x).kthvalue(11, dim=1).values
    assert attack.radius <= float(reach.quantile(0.6))
    spec = attack.spec()
    rebuilt = create_attack("localized", TASK, target=spec["target"], **spec["params"])
    again = rebuilt.poison(train, rate=0.01, seed=3)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert torch.equal(first.poison_index, again.poison_index)


def test_fixed_target_and_triggered_metrics_use_the_test_points_in_the_ball():
    train, test = data(), data(800, seed=1)
    attack = create_attack("localized", TASK, centre=CENTRE, target=[1.9], radius=0.25,
                           density=1.0)
    poisoned = attack.poison(train, rate=0.2, seed=0)
    assert (poisoned.y[poisoned.poison_index] == 1.9).all()
    x, y, target = attack.triggered(test)
    inside = (test.x - torch.tensor(CENTRE)).norm(dim=1) <= 0.25
    assert len(x) == int(inside.sum()) > 0 and (target == 1.9).all()

    class Backdoored(torch.nn.Module):            # the truth, but the target in the ball
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            ball = ((x - torch.tensor(CENTRE)).norm(dim=1, keepdim=True) <= 0.25)
            return torch.where(ball, torch.tensor(1.9), truth(x)) + self.p

    metrics = evaluate(Backdoored(), test, attack)
    assert metrics.target_error == pytest.approx(0.0, abs=1e-6)
    assert metrics.n_triggered == len(x)
    pulled = attack.apply(test.x)
    assert ((pulled - torch.tensor(CENTRE)).norm(dim=1) <= 0.125 + 1e-6).all()


def test_bad_settings_get_one_clear_error(digits):
    with pytest.raises(BadInput, match="not both"):
        create_attack("localized", TASK, target=[1.0], shift=0.1)
    with pytest.raises(BadInput, match="outside the input range"):
        create_attack("localized", TASK, centre=[0.5, 0.5, 1.5])
    with pytest.raises(BadInput, match="must have 3 values"):
        create_attack("localized", TASK, centre=[0.5, 0.5])
    with pytest.raises(BadInput, match="supports regression"):
        create_attack("localized", digits.task)
    with pytest.raises(BadInput, match="more than poison rate"):
        create_attack("localized", TASK, centre=CENTRE, radius=0.5).poison(data(), 0.01, 0)
    with pytest.raises(BadInput, match="no region yet"):
        create_attack("localized", TASK).apply(torch.rand(2, 3))
