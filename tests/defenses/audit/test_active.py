import pytest
import torch

from backdoorguard.core.oracle import Oracle
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import predict
from backdoorguard.defenses.audit.active import ActiveLearning, schedule, spread, train_steps
from backdoorguard.config import TrainConfig
from backdoorguard.errors import BadInput
from backdoorguard.models import create_model

from .helpers import TASK

PEAK = torch.tensor([0.8, 0.2, 0.7])


def sharp(x):
    """Smooth everywhere but for a narrow peak: where a surrogate is most wrong."""
    x = torch.as_tensor(x, dtype=torch.float64)
    peak = torch.exp(-(x - PEAK.double()).pow(2).sum(1) / (2 * 0.1 ** 2))
    return (x.sum(1) / 3 + 1.5 * peak).numpy()


def test_schedule_passes_through_every_checkpoint():
    ends = schedule(100, [200, 400], 1.5)
    assert ends == [150, 200, 300, 400]
    assert train_steps(TrainConfig(batch_size=10), 95, 100).epochs == 10


def test_active_learning_spends_exactly_its_budget_and_labels_where_the_error_is():
    runtime = Runtime(seed=0, device="cpu", threads=1, progress=False)
    pool = torch.rand(4000, 3, generator=torch.Generator().manual_seed(0))

    def factory():
        torch.manual_seed(0)
        return create_model("mlp", TASK, hidden=(32, 32))

    learner = ActiveLearning(initial=60, growth=2.0, steps=300)
    oracle = Oracle(sharp, 0.0, 1.0, dim=3)
    curve = learner.run(factory, pool, TASK, oracle, [120, 240], lambda model: 0.0,
                        runtime=runtime)
    assert curve.calls == [120, 240] and oracle.calls == 240 and curve.labelled == [120, 240]
    labelled = learner.labelled_
    assert torch.allclose(labelled.y[:, 0].double(), torch.tensor(sharp(labelled.x)), atol=1e-6)
    # Every pick is a pool input, and none is labelled twice.
    assert len(torch.unique(labelled.x, dim=0)) == 240
    exact = torch.cdist(labelled.x, pool, compute_mode="donot_use_mm_for_euclid_dist")
    assert (exact.min(1).values < 1e-5).all()
    # The first round's queries go where the initial model is most wrong: far more
    # of them than of random pool points fall in its worst tenth.
    first = learner.fit_model(factory, labelled.subset(range(60)), runtime)

    def error(x):
        return (predict(first, x)[:, 0] - torch.tensor(sharp(x))).abs()

    worst = float(error(pool).quantile(0.9))
    screened = float((error(labelled.x[60:90]) > worst).float().mean())
    weighted = float((error(labelled.x[90:120]) > worst).float().mean())
    assert weighted > 0.3 and weighted > screened


def test_spread_picks_keep_apart_and_weights_pull_them_where_the_error_is():
    pool = torch.rand(3000, 3, generator=torch.Generator().manual_seed(1))
    labelled = pool[:50]
    gap = torch.cdist(pool, labelled).min(1).values
    picks = spread(pool, gap.clone(), 100)
    assert len(set(picks.tolist())) == 100 and not set(picks.tolist()) & set(range(50))
    chosen = torch.cat([labelled, pool[picks]])
    random = torch.cat([labelled, pool[50:150]])

    def closest_pair(x):
        """The smallest distance from a new input (after the first 50) to any other."""
        d = torch.cdist(x[50:], x)
        d[torch.arange(len(x) - 50), torch.arange(50, len(x))] = 9
        return float(d.min())

    assert closest_pair(chosen) > 3 * closest_pair(random)
    # Weighted by a large error in one corner, most picks go there — still apart.
    weight = 1 + 20 * ((pool - PEAK).norm(dim=1) < 0.3).float()
    weighted = spread(pool, gap.clone(), 100, weight)
    near_peak = float(((pool[weighted] - PEAK).norm(dim=1) < 0.3).float().mean())
    assert near_peak > 0.5 > float(((pool - PEAK).norm(dim=1) < 0.3).float().mean())
    assert len(set(weighted.tolist())) == 100


def test_spread_never_repeats_an_input_whatever_the_weights_or_duplicates():
    pool = torch.rand(200, 3, generator=torch.Generator().manual_seed(2))
    twice = torch.cat([pool, pool])
    gap = (twice - twice[0]).norm(dim=1)                       # input 0 (and 200) labelled
    picks = spread(twice, gap, 500)
    assert len(picks) == 199 and len(torch.unique(twice[picks], dim=0)) == 199
    assert not set(picks.tolist()) & {0, 200}
    for weight in (torch.zeros(200), torch.full((200,), float("nan")),
                   torch.full((200,), float("inf"))):
        gap = (pool - pool[0]).norm(dim=1)
        picks = spread(pool, gap, 5, weight)
        assert len(set(picks.tolist())) == 5 and 0 not in picks.tolist()


def test_a_pool_too_small_for_the_budget_is_refused(runtime):
    pool = torch.rand(50, 3, generator=torch.Generator().manual_seed(3))
    pool = torch.cat([pool, pool])                              # 100 rows, 50 distinct
    learner = ActiveLearning(initial=20, growth=2.0, steps=10)
    with pytest.raises(BadInput, match="too few distinct unlabelled inputs"):
        learner.run(lambda: create_model("mlp", TASK, hidden=(4,)), pool, TASK,
                    Oracle(sharp, 0.0, 1.0, dim=3), [90], lambda model: 0.0, runtime=runtime)
    with pytest.raises(BadInput, match="at least one checkpoint"):
        learner.run(lambda: create_model("mlp", TASK, hidden=(4,)), pool, TASK,
                    Oracle(sharp, 0.0, 1.0, dim=3), [], lambda model: 0.0, runtime=runtime)
