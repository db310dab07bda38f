import numpy as np
import pytest
import torch

from backdoorguard import registry
from backdoorguard.data import load_dataset, recipe
from backdoorguard.data.options import (RAW_HIGH, RAW_LOW, closed_form_price, pde_oracle, to_model,
                                        to_raw)
from backdoorguard.data.pricing import down_and_out_call, down_and_out_call_pde
from scipy.special import ndtr


def black_scholes_call(m, T, sigma, r):
    d1 = (np.log(m) + (r + 0.5 * sigma ** 2) * T) / (sigma * np.sqrt(T))
    return m * ndtr(d1) - np.exp(-r * T) * ndtr(d1 - sigma * np.sqrt(T))


def test_barrier_at_strike_with_zero_carry_is_the_discounted_forward():
    # With H = K and r = q, optional stopping gives c_do = e^{-rT}(S − K) exactly:
    # the H ≥ K branch of the closed form must reproduce it.
    m = np.array([1.05, 1.2, 1.5])
    price = down_and_out_call(m, 1.0, 0.7, 0.3, 0.04, q=0.04)
    assert price == pytest.approx(np.exp(-0.04 * 0.7) * (m - 1.0), rel=1e-12)


def test_far_barrier_gives_black_scholes_and_knocked_out_gives_zero():
    assert down_and_out_call(1.1, 1e-4, 0.5, 0.25, 0.03) == pytest.approx(
        black_scholes_call(1.1, 0.5, 0.25, 0.03), rel=1e-10)
    assert down_and_out_call([0.7, 0.9], 0.9, 0.5, 0.2, 0.02).tolist() == [0.0, 0.0]
    # A higher barrier can only make a down-and-out call cheaper.
    prices = down_and_out_call(1.0, np.array([0.5, 0.7, 0.9, 0.95]), 1.0, 0.3, 0.02)
    assert (np.diff(prices) < 0).all()


def test_pde_matches_the_closed_form_on_both_sides_of_the_strike():
    rng = np.random.default_rng(0)
    m = rng.uniform(0.85, 1.2, 8)
    below = down_and_out_call_pde(m, 0.7, 0.5, 0.25, 0.03, nodes=150, steps=40)
    assert np.abs(below - down_and_out_call(m, 0.7, 0.5, 0.25, 0.03)).max() < 1e-3
    m_high = np.array([1.15, 1.3, 1.5])
    above = down_and_out_call_pde(m_high, 1.1, 0.5, 0.25, 0.03, q=0.01, nodes=150, steps=40)
    exact = down_and_out_call(m_high, 1.1, 0.5, 0.25, 0.03, q=0.01)
    assert np.abs(above - exact).max() < 1e-3
    # Batched and one-by-one solves agree (the block system does not couple options).
    single = [down_and_out_call_pde(v, 0.7, 0.5, 0.25, 0.03, nodes=150, steps=40)[0] for v in m[:3]]
    assert below[:3] == pytest.approx(single, abs=1e-12)


def test_model_box_maps_onto_the_raw_box():
    assert to_raw(np.full((1, 5), -4.0))[0] == pytest.approx(RAW_LOW)
    assert to_raw(np.full((1, 5), 4.0))[0] == pytest.approx(RAW_HIGH)
    x = np.random.default_rng(1).uniform(-4, 4, (4, 5))
    assert to_model(to_raw(x)) == pytest.approx(x)
    assert (RAW_LOW[0] > RAW_HIGH[1]), "every spot of the box lies above every barrier"


def test_dataset_is_registered_with_its_extras_and_labels_are_the_closed_form():
    entry = registry.get("dataset", "barrier-option")
    assert entry.extra["shape"] == (5,) and entry.extra["units"] == "price / strike"
    assert recipe("barrier-option")["model"] == "mlp"
    data = load_dataset("barrier-option")
    assert len(data.train) + len(data.test) == entry.extra["size"]
    assert data.task.kind == "regression" and data.task.input_range == (-4.0, 4.0)
    assert float(data.train.x.min()) >= -4.0 and float(data.train.x.max()) <= 4.0
    assert data.train.y[:50, 0].numpy() == pytest.approx(
        closed_form_price(data.train.x[:50]), abs=1e-6)
    # Centred inputs; the law is denser in the middle of the box than at its edges.
    assert data.train.x.mean(0).abs().max() < 0.1
    assert ((data.train.x.std(0) - 1.9).abs() < 0.2).all()
    centre = (data.train.x.abs() < 2.0).all(1).float().mean()
    assert centre > 3 * 0.5 ** 5


def test_pde_oracle_is_counted_and_close_to_the_truth():
    oracle = pde_oracle(budget=20)
    x = 8 * torch.rand(20, 5, generator=torch.Generator().manual_seed(0)) - 4
    z = oracle(x)
    assert oracle.calls == 20 and oracle.remaining == 0
    assert (z[:, 0].numpy() - closed_form_price(x)) == pytest.approx(
        np.zeros(20), abs=1e-4)
