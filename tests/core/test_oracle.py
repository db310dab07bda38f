import numpy as np
import pytest
import torch

from backdoorguard.core.oracle import Oracle, OracleBudgetExceeded
from backdoorguard.errors import BadInput


def square_sum(x):
    return (x ** 2).sum(1)


def test_oracle_counts_points_and_returns_a_column():
    oracle = Oracle(square_sum, -1.0, 1.0, dim=3)
    z = oracle(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))
    assert z.shape == (2, 1) and z.dtype == torch.float32
    assert z.flatten().tolist() == pytest.approx([0.5, 1.0])
    oracle(np.zeros(3))                      # one point, given flat
    assert oracle.calls == 3 and oracle.seconds > 0


def test_budget_is_a_hard_limit_checked_before_the_solver_runs():
    ran = []

    def solver(x):
        ran.append(len(x))
        return x[:, 0]

    oracle = Oracle(solver, 0.0, 1.0, dim=2, budget=5)
    oracle(torch.rand(4, 2))
    with pytest.raises(OracleBudgetExceeded, match="budget of 5 calls is exhausted"):
        oracle(torch.rand(2, 2))
    assert ran == [4] and oracle.calls == 4 and oracle.remaining == 1
    oracle(torch.rand(1, 2))
    assert oracle.remaining == 0


def test_limited_view_counts_in_both_and_respects_both_budgets():
    oracle = Oracle(square_sum, 0.0, 1.0, dim=2, budget=10)
    view = oracle.limited(4)
    view(torch.rand(3, 2))
    assert (view.calls, oracle.calls) == (3, 3)
    with pytest.raises(OracleBudgetExceeded):
        view(torch.rand(2, 2))
    big = oracle.limited(100)
    with pytest.raises(OracleBudgetExceeded):
        big(torch.rand(8, 2))                # the parent has 7 left


def test_points_outside_the_box_and_bad_outputs_are_refused():
    oracle = Oracle(square_sum, [0.0, 0.0], [1.0, 2.0])
    with pytest.raises(BadInput, match="outside its box"):
        oracle(torch.tensor([[0.5, 2.5]]))
    with pytest.raises(BadInput, match="takes points of 2 values"):
        oracle(torch.rand(3, 4))
    nan = Oracle(lambda x: np.full(len(x), np.nan), 0.0, 1.0, dim=1)
    with pytest.raises(BadInput, match="non-finite"):
        nan(torch.rand(2, 1))
    assert oracle.calls == 0


def test_bad_construction_is_one_clear_error():
    with pytest.raises(BadInput, match="low < high"):
        Oracle(square_sum, [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(BadInput, match="budget"):
        Oracle(square_sum, 0.0, 1.0, dim=2, budget=-1)
    with pytest.raises(BadInput, match="not callable"):
        Oracle(3, 0.0, 1.0, dim=1)
