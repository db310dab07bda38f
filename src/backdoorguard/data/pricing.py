"""Down-and-out call prices: the closed form and a Crank–Nicolson PDE solver.

Prices are in units of the strike (K = 1): inputs are moneyness m = S/K, barrier
h = H/K, maturity T in years, volatility σ, risk-free rate r and (optionally) a
continuous dividend yield q. The barrier is monitored continuously and pays no
rebate; a spot at or below the barrier is already knocked out (price 0).

Closed form: Merton (1973) and Reiner & Rubinstein (1991), as given by Hull
("Options, Futures and Other Derivatives", barrier options) for both H < K and
H ≥ K.

PDE: Black–Scholes in x = ln S, which has constant coefficients,

    V_τ = ½σ² V_xx + (r − q − ½σ²) V_x − r V,    τ = time to maturity,

on x ∈ [ln H, x_max] with V = 0 at the barrier and the far-field value
S e^{−qτ} − K e^{−rτ} at x_max = max(ln m, 0) + 6σ√T + 0.5. Uniform grid of
`nodes` intervals, `steps` time steps: Crank–Nicolson after a Rannacher start
(four implicit-Euler half steps, which damp the oscillations CN otherwise
leaves from the kinked payoff), cell-averaged payoff (so the error varies
smoothly as the strike moves between nodes), and 4-point Lagrange interpolation
at ln m. Many options are solved together as one block-tridiagonal system
(LAPACK gttrf/gttrs), so a batch costs little more Python than one option.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack
from scipy.special import ndtr

FAR_WIDTH = 6.0      # standard deviations of ln S beyond max(ln m, 0)
FAR_MARGIN = 0.5
RANNACHER_HALF_STEPS = 4


def _arrays(*values):
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    return [np.atleast_1d(a) for a in arrays]


def down_and_out_call(m, h, T, sigma, r, q=0.0) -> np.ndarray:
    """Closed-form price / K of a continuously monitored down-and-out call."""
    m, h, T, sigma, r, q = _arrays(m, h, T, sigma, r, q)
    st = sigma * np.sqrt(T)
    lam = (r - q + 0.5 * sigma ** 2) / sigma ** 2
    disc_s, disc_k = np.exp(-q * T), np.exp(-r * T)
    ratio = h / m
    with np.errstate(all="ignore"):
        d1 = (np.log(m) + (r - q + 0.5 * sigma ** 2) * T) / st
        vanilla = m * disc_s * ndtr(d1) - disc_k * ndtr(d1 - st)
        # H < K: c_do = c − c_di
        y = np.log(h * h / m) / st + lam * st
        down_in = (m * disc_s * ratio ** (2 * lam) * ndtr(y)
                   - disc_k * ratio ** (2 * lam - 2) * ndtr(y - st))
        below_strike = vanilla - down_in
        # H ≥ K
        x1 = np.log(m / h) / st + lam * st
        y1 = np.log(h / m) / st + lam * st
        above_strike = (m * disc_s * ndtr(x1) - disc_k * ndtr(x1 - st)
                        - m * disc_s * ratio ** (2 * lam) * ndtr(y1)
                        + disc_k * ratio ** (2 * lam - 2) * ndtr(y1 - st))
    price = np.where(h < 1.0, below_strike, above_strike)
    return np.where(m <= h, 0.0, np.maximum(price, 0.0))


def _cell_payoff(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Mean of max(e^u − 1, 0) over the cell [x − dx/2, x + dx/2]."""
    lo = np.maximum(x - dx / 2, 0.0)
    hi = np.maximum(x + dx / 2, 0.0)
    return ((np.exp(hi) - np.exp(lo)) - (hi - lo)) / dx


def _factor(lower, diag, upper, theta_dt, n_inner):
    """LU factors of the block-tridiagonal I − θΔt·L (one block per option)."""
    dl = np.repeat((-theta_dt * lower)[:, None], n_inner, 1)
    dd = np.repeat((1.0 - theta_dt * diag)[:, None], n_inner, 1)
    du = np.repeat((-theta_dt * upper)[:, None], n_inner, 1)
    dl[:, 0] = 0.0      # no coupling between neighbouring blocks
    du[:, -1] = 0.0
    dl_f, d_f, du_f, du2, ipiv, info = lapack.dgttrf(dl.ravel()[1:].copy(), dd.ravel().copy(),
                                                     du.ravel()[:-1].copy())
    if info != 0:
        raise ArithmeticError(f"PDE system is singular (LAPACK gttrf info {info})")
    return dl_f, d_f, du_f, du2, ipiv


def _solve(factors, rhs: np.ndarray) -> np.ndarray:
    solution, info = lapack.dgttrs(*factors, rhs.ravel())
    if info != 0:
        raise ArithmeticError(f"PDE solve failed (LAPACK gttrs info {info})")
    return solution.reshape(rhs.shape)


def _interpolate(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """4-point Lagrange interpolation of each row of `values` at fractional index `position`."""
    n = values.shape[1]
    base = np.clip(np.floor(position).astype(int) - 1, 0, n - 4)
    t = position - base
    rows = np.arange(len(values))[:, None]
    v = values[rows, base[:, None] + np.arange(4)[None, :]]
    w0 = -(t - 1) * (t - 2) * (t - 3) / 6
    w1 = t * (t - 2) * (t - 3) / 2
    w2 = -t * (t - 1) * (t - 3) / 2
    w3 = t * (t - 1) * (t - 2) / 6
    return w0 * v[:, 0] + w1 * v[:, 1] + w2 * v[:, 2] + w3 * v[:, 3]


def down_and_out_call_pde(m, h, T, sigma, r, q=0.0, *, nodes: int = 300,
                          steps: int = 100) -> np.ndarray:
    """Crank–Nicolson price / K of a continuously monitored down-and-out call."""
    if nodes < 8 or steps < 3:
        raise ValueError(f"PDE grid too coarse: nodes {nodes} (≥ 8), steps {steps} (≥ 3)")
    m, h, T, sigma, r, q = _arrays(m, h, T, sigma, r, q)
    price = np.zeros(len(m))
    alive = m > h
    if alive.any():
        price[alive] = _solve_alive(m[alive], h[alive], T[alive], sigma[alive], r[alive],
                                    q[alive], nodes, steps)
    return np.maximum(price, 0.0)


def _solve_alive(m, h, T, sigma, r, q, nodes, steps):
    batch, n_inner = len(m), nodes - 1
    x_barrier, x_spot = np.log(h), np.log(m)
    x_far = np.maximum(x_spot, 0.0) + FAR_WIDTH * sigma * np.sqrt(T) + FAR_MARGIN
    dx = (x_far - x_barrier) / nodes
    x = x_barrier[:, None] + dx[:, None] * np.arange(1, nodes)[None, :]
    values = _cell_payoff(x, dx[:, None])
    alpha, beta = 0.5 * sigma ** 2, r - q - 0.5 * sigma ** 2
    lower = alpha / dx ** 2 - beta / (2 * dx)
    diag = -2 * alpha / dx ** 2 - r
    upper = alpha / dx ** 2 + beta / (2 * dx)
    dt = T / steps

    def far(tau):
        return np.exp(x_far - q * tau) - np.exp(-r * tau)

    def operator(v, tau):
        left = np.concatenate([np.zeros((batch, 1)), v[:, :-1]], 1)     # V = 0 at the barrier
        right = np.concatenate([v[:, 1:], far(tau)[:, None]], 1)
        return lower[:, None] * left + diag[:, None] * v + upper[:, None] * right

    # I − (Δt/2)L serves both the implicit-Euler half steps and Crank–Nicolson.
    factors = _factor(lower, diag, upper, dt / 2, n_inner)
    tau = np.zeros(batch)
    for _ in range(RANNACHER_HALF_STEPS):
        tau = tau + dt / 2
        rhs = values.copy()
        rhs[:, -1] += dt / 2 * upper * far(tau)
        values = _solve(factors, rhs)
    for _ in range(steps - RANNACHER_HALF_STEPS // 2):
        rhs = values + (dt / 2)[:, None] * operator(values, tau)
        tau = tau + dt
        rhs[:, -1] += dt / 2 * upper * far(tau)
        values = _solve(factors, rhs)
    full = np.concatenate([np.zeros((batch, 1)), values, far(tau)[:, None]], 1)
    return _interpolate(full, (x_spot - x_barrier) / dx)
