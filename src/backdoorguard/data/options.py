"""`barrier-option`: prices of a down-and-out call, the regression audit's test bed.

Five inputs, one output (price / strike). Models see the inputs scaled to the
unit box [0, 1]^5; `to_raw` and `to_unit` map between that box and the raw box

    moneyness S/K   0.80 .. 1.20
    barrier   H/K   0.55 .. 0.78     (always below the spot: S/H ≥ 1.026)
    maturity  T     0.10 .. 1.00 years
    volatility σ    0.10 .. 0.40
    rate      r     0.00 .. 0.08     (no dividends)

The box keeps every option alive (S > H), so the price is smooth over the whole
box (a knocked-out corner would put a kink along S = H that no smooth surrogate
fits). Inputs are drawn like a desk's book: 80 % from a product of Beta(2, 2)
laws (dense around typical contracts) and 20 % uniform over the box (so the
edges are covered, thinly). The dense core is where a localised poisoning
attack can hide and where the audit's density test looks; the thin edges are
where an honest surrogate is least accurate.

Labels are the closed form (`pricing.down_and_out_call`). `pde_oracle()` is the
expensive oracle: the Crank–Nicolson solver behind the generic `Oracle`
interface, taking unit-box inputs like the model.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.oracle import Oracle
from ..core.types import ArrayDataset, Splits, TaskSpec
from ..registry import register
from .pricing import down_and_out_call, down_and_out_call_pde

FEATURES = ("moneyness S/K", "barrier H/K", "maturity T (years)", "volatility", "rate")
RAW_LOW = np.array([0.80, 0.55, 0.10, 0.10, 0.00])
RAW_HIGH = np.array([1.20, 0.78, 1.00, 0.40, 0.08])
CORE_SHARE = 0.8          # share of inputs from the Beta(2, 2) core
TRAIN_SIZE, TEST_SIZE = 20_000, 5_000
SPLIT_SEED = 0
UNITS = "price / strike"
PDE_NODES, PDE_STEPS = 300, 100


def to_raw(unit: np.ndarray | torch.Tensor) -> np.ndarray:
    """Unit-box inputs [n, 5] to raw (S/K, H/K, T, σ, r)."""
    if isinstance(unit, torch.Tensor):
        unit = unit.detach().cpu().double().numpy()
    return RAW_LOW + (RAW_HIGH - RAW_LOW) * np.asarray(unit, dtype=np.float64)


def to_unit(raw: np.ndarray) -> np.ndarray:
    """Raw (S/K, H/K, T, σ, r) [n, 5] to the unit box."""
    return (np.asarray(raw, dtype=np.float64) - RAW_LOW) / (RAW_HIGH - RAW_LOW)


def closed_form_price(unit: np.ndarray | torch.Tensor) -> np.ndarray:
    """Exact price / K at unit-box inputs [n, 5]."""
    raw = to_raw(np.atleast_2d(unit) if not isinstance(unit, torch.Tensor) else unit)
    return down_and_out_call(*raw.T)


def pde_price(unit: np.ndarray, nodes: int = PDE_NODES, steps: int = PDE_STEPS) -> np.ndarray:
    """Crank–Nicolson price / K at unit-box inputs [n, 5]."""
    raw = to_raw(np.atleast_2d(unit))
    return down_and_out_call_pde(*raw.T, nodes=nodes, steps=steps)


def pde_oracle(budget: int | None = None, *, nodes: int = PDE_NODES,
               steps: int = PDE_STEPS) -> Oracle:
    """The built-in oracle: the PDE pricer on the unit box, counted and budgeted."""
    return Oracle(lambda unit: pde_price(unit, nodes, steps), 0.0, 1.0, dim=5, budget=budget,
                  name="barrier-option PDE", batch_size=2048)


def closed_form_oracle(budget: int | None = None) -> Oracle:
    """The closed form behind the same interface (for checks; not a black box)."""
    return Oracle(closed_form_price, 0.0, 1.0, dim=5, budget=budget,
                  name="barrier-option closed form")


def sample_inputs(n: int, generator: np.random.Generator) -> np.ndarray:
    """Unit-box inputs [n, 5] from the data set's law (Beta(2, 2) core + uniform)."""
    core = generator.beta(2.0, 2.0, size=(n, 5))
    spread = generator.random((n, 5))
    from_core = generator.random(n) < CORE_SHARE
    return np.where(from_core[:, None], core, spread)


def make_task(labels: np.ndarray) -> TaskSpec:
    return TaskSpec("regression", "tabular", (5,), 1, (0.0, 1.0),
                    label_names=("price",), label_units=UNITS,
                    label_range=((float(labels.min()), float(labels.max())),))


@register("dataset", "barrier-option",
          "down-and-out call prices (S/K, H/K, T, σ, r scaled to [0,1]) with a PDE oracle",
          tasks=("regression",), modalities=("tabular",),
          shape=(5,), size=TRAIN_SIZE + TEST_SIZE, units=UNITS,
          recipe={"model": "mlp",
                  "train": {"epochs": 100, "batch_size": 256, "optimizer": "adam", "lr": 2e-3}},
          oracle=pde_oracle, features=FEATURES)
def load_barrier_option() -> Splits:
    """20,000 training and 5,000 test inputs (fixed seed), closed-form labels."""
    generator = np.random.default_rng(SPLIT_SEED)
    # Labels are priced at the float32 inputs the model sees.
    unit = sample_inputs(TRAIN_SIZE + TEST_SIZE, generator).astype(np.float32).astype(np.float64)
    labels = closed_form_price(unit)
    x = torch.tensor(unit, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.float32)[:, None]
    task = make_task(labels[:TRAIN_SIZE])
    train = ArrayDataset(x[:TRAIN_SIZE], y[:TRAIN_SIZE], task)
    test = ArrayDataset(x[TRAIN_SIZE:], y[TRAIN_SIZE:], task)
    return Splits("barrier-option", train, test)
