"""`barrier-option`: prices of a down-and-out call, the regression audit's test bed.

Five inputs, one output (price / strike). Models see the inputs centred and
scaled to the box [−4, 4]^5 (x = 8u − 4 where u ∈ [0, 1] is the position in
the raw box; under the data's law each input has mean 0 and standard deviation
≈ 1.9); `to_raw` and `to_model` map between that box and the raw box

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

Why [−4, 4] rather than [0, 1]: the input scale sets how finely an MLP
resolves the function. With the same recipe and seed, [0, 1] inputs gave about
four times the test RMSE of [−4, 4], [−2, 2] and [−8, 8] a third more
(docs/barrier-option.md); [0, 1] inputs also blur any localised feature (such
as a poisoned region) over much of the box.

Labels are the closed form (`pricing.down_and_out_call`). `pde_oracle()` is the
expensive oracle: the Crank–Nicolson solver behind the generic `Oracle`
interface, taking the model's inputs.
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
MODEL_LOW, MODEL_HIGH = -4.0, 4.0


def _array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.atleast_2d(np.asarray(x, dtype=np.float64))


def to_raw(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Model inputs [n, 5] in [−4, 4] to raw (S/K, H/K, T, σ, r)."""
    unit = (_array(x) - MODEL_LOW) / (MODEL_HIGH - MODEL_LOW)
    return RAW_LOW + (RAW_HIGH - RAW_LOW) * unit


def to_model(raw: np.ndarray) -> np.ndarray:
    """Raw (S/K, H/K, T, σ, r) [n, 5] to model inputs in [−4, 4]."""
    unit = (np.asarray(raw, dtype=np.float64) - RAW_LOW) / (RAW_HIGH - RAW_LOW)
    return MODEL_LOW + (MODEL_HIGH - MODEL_LOW) * unit


def closed_form_price(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Exact price / K at model inputs [n, 5]."""
    return down_and_out_call(*to_raw(x).T)


def pde_price(x: np.ndarray | torch.Tensor, nodes: int = PDE_NODES,
              steps: int = PDE_STEPS) -> np.ndarray:
    """Crank–Nicolson price / K at model inputs [n, 5]."""
    return down_and_out_call_pde(*to_raw(x).T, nodes=nodes, steps=steps)


def pde_oracle(budget: int | None = None, *, nodes: int = PDE_NODES,
               steps: int = PDE_STEPS) -> Oracle:
    """The built-in oracle: the PDE pricer on the model's input box, counted and budgeted."""
    return Oracle(lambda x: pde_price(x, nodes, steps), MODEL_LOW, MODEL_HIGH, dim=5,
                  budget=budget, name="barrier-option PDE", batch_size=2048)


def closed_form_oracle(budget: int | None = None) -> Oracle:
    """The closed form behind the same interface (for checks; not a black box)."""
    return Oracle(closed_form_price, MODEL_LOW, MODEL_HIGH, dim=5, budget=budget,
                  name="barrier-option closed form")


def sample_inputs(n: int, generator: np.random.Generator) -> np.ndarray:
    """Positions in the raw box, as fractions u ∈ [0, 1]^5 [n, 5], from the data
    set's law (Beta(2, 2) core + uniform)."""
    core = generator.beta(2.0, 2.0, size=(n, 5))
    spread = generator.random((n, 5))
    from_core = generator.random(n) < CORE_SHARE
    return np.where(from_core[:, None], core, spread)


def make_task(labels: np.ndarray) -> TaskSpec:
    return TaskSpec("regression", "tabular", (5,), 1, (MODEL_LOW, MODEL_HIGH),
                    label_names=("price",), label_units=UNITS,
                    label_range=((float(labels.min()), float(labels.max())),))


@register("dataset", "barrier-option",
          "down-and-out call prices (S/K, H/K, T, σ, r scaled to [-4, 4]) with a PDE oracle",
          tasks=("regression",), modalities=("tabular",),
          shape=(5,), size=TRAIN_SIZE + TEST_SIZE, units=UNITS,
          recipe={"model": "mlp",
                  "train": {"epochs": 100, "batch_size": 256, "optimizer": "adam", "lr": 2e-3}},
          oracle=pde_oracle, features=FEATURES,
          raw_box=(RAW_LOW.tolist(), RAW_HIGH.tolist()))
def load_barrier_option() -> Splits:
    """20,000 training and 5,000 test inputs (fixed seed), closed-form labels."""
    generator = np.random.default_rng(SPLIT_SEED)
    unit = sample_inputs(TRAIN_SIZE + TEST_SIZE, generator)
    x = torch.tensor(MODEL_LOW + (MODEL_HIGH - MODEL_LOW) * unit, dtype=torch.float32)
    labels = closed_form_price(x)            # priced at the float32 inputs the model sees
    y = torch.tensor(labels, dtype=torch.float32)[:, None]
    task = make_task(labels[:TRAIN_SIZE])
    train = ArrayDataset(x[:TRAIN_SIZE], y[:TRAIN_SIZE], task)
    test = ArrayDataset(x[TRAIN_SIZE:], y[TRAIN_SIZE:], task)
    return Splits("barrier-option", train, test)
