import pytest
import torch

from backdoorguard.defenses.base import create_defense
from backdoorguard.defenses.audit import ErrorMaximizers
from backdoorguard.defenses.audit.error_maximizers import greedy_merge
from backdoorguard.errors import BadInput

from .helpers import Surrogate, analytic_oracle, training_data

DENSE = (0.3, 0.6, 0.5)
SPARSE = (0.92, 0.08, 0.92)
SMALL = dict(budget=600, ascents=4, steps=8)


def near(region, centre, radius=0.1):
    return float((torch.tensor(region["centre_unit"]) - torch.tensor(centre)).norm()) <= radius


def test_a_bump_where_data_are_dense_is_flagged_and_one_where_they_are_sparse_is_not(runtime):
    train = training_data(clusters=[(DENSE, 0.12, 600)])
    model = Surrogate(bumps=[(0.2, DENSE, 0.05), (0.2, SPARSE, 0.05)])
    oracle = analytic_oracle()
    audit = ErrorMaximizers(**SMALL, dense_seeds_only=False).audit(model, train, oracle,
                                                                   runtime=runtime)
    suspicious = [r for r in audit.regions if r["suspicious"]]
    assert len(suspicious) == 1 and near(suspicious[0], DENSE)
    # The sparse bump is found as a large error but not flagged.
    assert any(near(r, SPARSE) and not r["suspicious"] and r["error_ratio"] > 10
               and r["centre_unit"] == r["maximiser_unit"] for r in audit.regions)
    assert audit.cost.counters["oracle_calls"] <= 600 and oracle.calls <= 600
    flagged = train.x[audit.flagged]
    assert len(flagged) > 100 and ((flagged - torch.tensor(DENSE)).norm(dim=1) <= 0.2).all()


def test_by_default_the_search_stays_where_data_are_dense(runtime):
    # A larger error sits in sparse data next to the dense bump: the default audit
    # neither starts nor ends an ascent there.
    train = training_data(clusters=[(DENSE, 0.12, 600)])
    model = Surrogate(bumps=[(0.1, DENSE, 0.05), (0.4, SPARSE, 0.1)])
    audit = ErrorMaximizers(**SMALL).audit(model, train, analytic_oracle(), runtime=runtime)
    assert all(r["density_ratio"] >= 1.0 for r in audit.regions)
    assert any(near(r, DENSE) and r["suspicious"] for r in audit.regions)


def test_ascent_climbs_from_the_seed_towards_the_peak(runtime):
    # A narrow bump that screening seeds only graze: the maximiser must end
    # closer to its centre, and with a larger error, than the best seed.
    train = training_data(clusters=[(DENSE, 0.15, 800)])
    model = Surrogate(bumps=[(0.3, DENSE, 0.04)])
    auditor = ErrorMaximizers(budget=400, ascents=2, steps=12)
    audit = auditor.audit(model, train, analytic_oracle(), runtime=runtime)
    queries = auditor.queries_
    seeds = audit.details["seeds"]
    best_seed = float(queries.error[:seeds].max())
    top = max(audit.regions, key=lambda r: r["error"])
    assert top["error"] > best_seed
    assert float((torch.tensor(top["maximiser_unit"]) - torch.tensor(DENSE)).norm()) <= 0.03


def test_rim_maximisers_are_located_at_the_dense_data_and_merge(runtime):
    # A planted cluster whose learnt error peaks on two opposite points of its rim
    # (as a poisoned MLP's does): two maximisers, one region, centred on the cluster.
    train = training_data(clusters=[(DENSE, 0.05, 800)])
    rims = [(DENSE[0] - 0.09, *DENSE[1:]), (DENSE[0] + 0.09, *DENSE[1:])]
    model = Surrogate(bumps=[(0.2, rims[0], 0.03), (0.2, rims[1], 0.03)])

    def suspicious(refine):
        audit = ErrorMaximizers(**SMALL, refine=refine).audit(model, train, analytic_oracle(),
                                                              runtime=runtime)
        return [r for r in audit.regions if r["suspicious"]]

    apart = suspicious(False)
    assert len(apart) == 2 and all(r["centre_unit"] == r["maximiser_unit"] for r in apart)
    assert sorted(near(r, rim, 0.04) for r in apart for rim in rims).count(True) == 2
    located = suspicious(True)
    assert len(located) == 1
    centre, maximiser = (torch.tensor(located[0][k]) for k in ("centre_unit", "maximiser_unit"))
    assert near(located[0], DENSE, 0.03) and not near(located[0], rims[0], 0.05)
    assert float((maximiser - torch.tensor(DENSE)).norm()) > 0.06
    assert float((centre - maximiser).norm()) <= ErrorMaximizers().density_radius + 1e-6


def test_a_clean_surrogate_gets_no_suspicious_region(runtime):
    train = training_data(clusters=[(DENSE, 0.12, 600)])
    audit = ErrorMaximizers(**SMALL).audit(Surrogate(), train, analytic_oracle(),
                                           runtime=runtime)
    assert audit.regions and not any(r["suspicious"] for r in audit.regions)
    assert audit.flagged == []


def test_same_seed_same_audit_and_the_budget_holds(runtime):
    train = training_data(clusters=[(DENSE, 0.12, 600)])
    model = Surrogate(bumps=[(0.2, DENSE, 0.05)])
    first = ErrorMaximizers(**SMALL).audit(model, train, analytic_oracle(), runtime=runtime)
    second = ErrorMaximizers(**SMALL).audit(model, train, analytic_oracle(), runtime=runtime)
    assert first.to_dict()["regions"] == second.to_dict()["regions"]
    oracle = analytic_oracle(budget=150)          # the oracle's own budget is smaller
    audit = ErrorMaximizers(**SMALL).audit(model, train, oracle, runtime=runtime)
    assert oracle.calls <= 150 and audit.details["budget"] == 150


def test_merge_keeps_the_larger_of_close_points():
    points = torch.tensor([[0.0, 0.0], [0.05, 0.0], [0.5, 0.5]])
    assert greedy_merge(points, torch.tensor([1.0, 2.0, 0.5]), 0.1) == [1, 2]


def test_registered_and_refuses_what_it_cannot_audit(runtime, digits):
    auditor = create_defense("error-maximizers", "audit", budget=100)
    assert isinstance(auditor, ErrorMaximizers) and auditor.family == "audit"
    train = training_data(n=200)
    with pytest.raises(BadInput, match="needs an oracle"):
        auditor.audit(Surrogate(), train, None, runtime=runtime)
    with pytest.raises(BadInput, match="supports regression"):
        auditor.audit(Surrogate(), digits.train, analytic_oracle(), runtime=runtime)
    with pytest.raises(BadInput, match="out of range"):
        ErrorMaximizers(merge_radius=0)
    tiny = analytic_oracle()
    audit = ErrorMaximizers(budget=5).audit(Surrogate(), train, tiny, runtime=runtime)
    assert tiny.calls == 5 and audit.details["ascents"] == 0    # too few calls to ascend
