import pytest
import torch

from backdoorguard.core.types import ArrayDataset, PoisonedDataset, TaskSpec
from backdoorguard.errors import BadInput


def test_taskspec_round_trips_through_dict():
    task = TaskSpec("regression", "image", (1, 8, 8), 2, label_range=((-30, 30), (-10, 10)),
                    label_units="deg")
    assert TaskSpec.from_dict(task.to_dict()) == task
    # default tolerance is 10 % of the mean label span
    assert task.tol == pytest.approx(0.1 * (60 + 20) / 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="ranking"), "task kind"),
    (dict(modality="video"), "modality"),
    (dict(num_outputs=1), "too small"),
    (dict(input_range=(1.0, 0.0)), "low < high"),
])
def test_taskspec_rejects_bad_values(kwargs, message):
    args = dict(kind="classification", modality="image", input_shape=(1, 4, 4), num_outputs=3)
    args.update(kwargs)
    with pytest.raises(BadInput, match=message):
        TaskSpec(**args)


def test_dataset_checks_lengths_and_shapes():
    task = TaskSpec("classification", "tabular", (3,), 2)
    with pytest.raises(BadInput, match="samples"):
        ArrayDataset(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), task)
    with pytest.raises(BadInput, match="input_shape"):
        ArrayDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), task)


def test_split_is_seeded_stratified_and_disjoint(digits):
    data = digits.train
    a1, b1 = data.split(0.25, seed=3)
    a2, b2 = data.split(0.25, seed=3)
    a3, _ = data.split(0.25, seed=4)
    assert torch.equal(a1.x, a2.x) and torch.equal(b1.y, b2.y)
    assert not torch.equal(a1.x, a3.x)
    assert len(a1) + len(b1) == len(data)
    for cls in range(10):
        share = (a1.y == cls).float().mean() / (data.y == cls).float().mean()
        assert 0.85 < share < 1.15


def test_batches_cover_every_sample_once(digits):
    data = digits.test
    generator = torch.Generator().manual_seed(0)
    seen = torch.cat([b.index for b in data.batches(64, shuffle=True, generator=generator)])
    assert sorted(seen.tolist()) == list(range(len(data)))
    batch = next(iter(data.batches(64, shuffle=True, generator=generator)))
    assert torch.equal(batch.x, data.x[batch.index]) and torch.equal(batch.y, data.y[batch.index])
    assert data.num_batches(64) == len(list(data.batches(64)))
    assert data.num_batches(64, drop_last=True) == len(list(data.batches(64, drop_last=True)))


def test_poisoned_subset_renumbers_poison_index():
    task = TaskSpec("classification", "tabular", (1,), 2)
    x = torch.arange(10.0).reshape(10, 1)
    data = PoisonedDataset(x, torch.zeros(10, dtype=torch.long), task,
                           poison_index=torch.tensor([2, 7]))
    sub = data.subset(torch.tensor([7, 1, 2, 3]))
    assert sub.poison_index.tolist() == [0, 2]
    assert sub.x[sub.poison_index].flatten().tolist() == [7.0, 2.0]
