from dataclasses import replace

import pytest
import torch

from backdoorguard.config import TrainConfig
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import fit, predict
from backdoorguard.core.types import ArrayDataset
from backdoorguard.defenses.audit import ErrorMaximizers
from backdoorguard.defenses.audit.repair import Repair
from backdoorguard.defenses.base import Audit, Cost
from backdoorguard.errors import BadInput
from backdoorguard.models import create_model

from .helpers import TASK, Surrogate, analytic_oracle, training_data, truth

CENTRE = (0.4, 0.5, 0.5)
RADIUS = 0.12


def poisoned_data(shift=0.3):
    train = training_data(n=2500, clusters=[(CENTRE, RADIUS, 300)])
    inside = (train.x - torch.tensor(CENTRE)).norm(dim=1) <= RADIUS
    y = train.y.clone()
    y[inside] += shift
    return ArrayDataset(train.x, y, TASK), inside


def audit_at(centre, typical=0.01):
    region = {"centre": list(centre), "centre_unit": list(centre), "suspicious": True}
    return Audit("error-maximizers", [], [], [region], Cost(0.0), {"typical_error": typical})


NO_TRAINING = TrainConfig(epochs=0)


@pytest.mark.parametrize("mode", ["relabel", "drop"])
def test_finds_every_wrong_label_from_a_maximiser_off_centre(mode, runtime):
    train, inside = poisoned_data()
    oracle = analytic_oracle()
    off_centre = (CENTRE[0] + 0.08, CENTRE[1], CENTRE[2])        # near the edge of the region
    repaired = Repair(mode=mode, new_points=20, train=NO_TRAINING).repair(
        Surrogate(), train, audit_at(off_centre), oracle, runtime=runtime)
    found = torch.zeros(len(train), dtype=torch.bool)
    found[repaired.changes["indices"]] = True
    assert torch.equal(found, inside)
    # The check stops at the region's edge: far fewer calls than training points.
    assert repaired.changes["checked"] < 3 * int(inside.sum())
    assert oracle.calls == repaired.changes["checked"] + 20
    data = repaired.data
    if mode == "relabel":
        assert len(data) == len(train) + 20
        assert torch.allclose(data.y[:len(train)], truth(train.x).float(), atol=1e-5)
    else:
        assert len(data) == len(train) - int(inside.sum()) + 20
    added = data.x[-20:]
    assert torch.allclose(data.y[-20:], truth(added).float(), atol=1e-5)
    assert ((added - torch.tensor(CENTRE)).norm(dim=1) <= RADIUS + 0.05).all()


def test_nothing_suspicious_changes_nothing_and_budget_is_respected(runtime):
    train, _ = poisoned_data()
    model = Surrogate()
    calm = Audit("error-maximizers", [], [], [], Cost(0.0), {"typical_error": 0.01})
    repaired = Repair().repair(model, train, calm, analytic_oracle(), runtime=runtime)
    assert repaired.changes["disagreed"] == 0 and len(repaired.data) == len(train)
    oracle = analytic_oracle()
    Repair(budget=50, train=NO_TRAINING).repair(model, train, audit_at(CENTRE), oracle,
                                                 runtime=runtime)
    assert oracle.calls <= 50
    with pytest.raises(BadInput, match="repair mode"):
        Repair(mode="erase")


@pytest.mark.parametrize("train, message", [
    ({"epoch": 3}, r"^repair train: epoch: Extra inputs are not permitted"),
    ({"epochs": -1}, r"^repair train: epochs: .*greater than or equal to 0 \(got -1\)"),
    ("fast", r"^repair train 'fast' must be a mapping"),
])
def test_bad_repair_training_settings_are_refused(train, message):
    with pytest.raises(BadInput, match=message):
        Repair(train=train)
    # the settings given are laid over the repair's own fine-tuning defaults
    assert Repair(train={"lr": 1e-3}).train.model_dump() == {
        **Repair().train.model_dump(), "lr": 1e-3}


def test_audit_then_repair_brings_a_small_mlp_back_to_the_truth():
    # Inputs standardised to [−2, 2] (as barrier-option does): a small MLP then
    # learns the poisoned region sharply, as a real surrogate would.
    runtime = Runtime(seed=0, device="cpu", threads=1, progress=False)
    unit, _ = poisoned_data(shift=1.5)
    wide = replace(TASK, input_range=(-2.0, 2.0))
    train = ArrayDataset(4 * unit.x - 2, unit.y, wide)
    torch.manual_seed(0)
    model = create_model("mlp", wide, hidden=(32, 32))
    fit(model, train, TrainConfig(epochs=30, batch_size=128, lr=5e-3), runtime=runtime)
    probe = torch.tensor(CENTRE) + 0.05 * (torch.rand(200, 3) - 0.5)
    before = (predict(model, 4 * probe - 2) - truth(probe)).abs().mean()
    assert before > 0.75                                          # the model learnt the poison
    oracle = analytic_oracle(low=-2.0, high=2.0)
    audit = ErrorMaximizers(budget=500, ascents=4, steps=6).audit(model, train, oracle,
                                                                  runtime=runtime)
    assert any(r["suspicious"] for r in audit.regions)
    repaired = Repair(train=TrainConfig(epochs=10, batch_size=128, lr=2e-3)).repair(
        model, train, audit, oracle, runtime=runtime)
    after = (predict(repaired.model, 4 * probe - 2) - truth(probe)).abs().mean()
    assert after < 0.2 * before
    assert (predict(model, 4 * probe - 2) - truth(probe)).abs().mean() == before  # untouched
