"""docs/theory.md T2: the ensemble-decoupled acceptance test (seed 000, Thm 3.1) and its cost."""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

from theory import _checks as chk
from theory.ensemble import ensemble_error
from theory.errors import TheoryInputError


def acceptance_threshold(members: int, diversity_base: float, diversity_candidate: float) -> float:
    """docs/theory.md T2: threshold ((M-1)/M) * (D_a - D_a') that Delta = E_a - E_a' must exceed.

    Negative when the candidate is more diverse: a worse single model can then be accepted.
    """
    m = chk.members(members)
    d_base = chk.nonneg(diversity_base, "diversity_base")
    d_cand = chk.nonneg(diversity_candidate, "diversity_candidate")
    return chk.shrink(m) * (d_base - d_cand)


def predicted_improvement(
    members: int,
    error_base: float,
    diversity_base: float,
    error_candidate: float,
    diversity_candidate: float,
) -> float:
    """docs/theory.md T2: E_ens(a, M) - E_ens(a', M); > 0 means the candidate's ensemble is better."""
    return ensemble_error(error_base, diversity_base, members) - ensemble_error(
        error_candidate, diversity_candidate, members
    )


def accepts(delta: float, threshold: float) -> bool:
    """docs/theory.md T2: accept a' iff Delta > threshold, Delta = E_a - E_a' (strict: ties keep a)."""
    return chk.real(delta, "delta") > chk.real(threshold, "threshold")


def variance_stable_threshold(
    members: int, variance: float, rho_base: float, rho_candidate: float
) -> float:
    """docs/theory.md T2 under variance stability (sigma_a'^2 ~ sigma_a^2).

    Threshold ((M-1)/M) sigma^2 (rho_a' - rho_a) for Delta = E_a - E_a'.
    """
    m = chk.members(members)
    var = chk.nonneg(variance, "variance")
    r_base = chk.correlation(rho_base, "rho_base")
    r_cand = chk.correlation(rho_candidate, "rho_candidate")
    return chk.shrink(m) * var * (r_cand - r_base)


def search_cost(n_candidates: int, members: int, *, decoupled: bool) -> int:
    """docs/theory.md T2 cost (seed 000 §3.4): training runs to screen N candidates.

    Full check: M members per candidate, N*M. Decoupled: 2 instances per candidate plus M once
    for the winner, 2N + M.
    """
    n = chk.integer(n_candidates, "n_candidates", 1)
    m = chk.members(members)
    return 2 * n + m if decoupled else n * m


# -- group-sequential acceptance (T2b) ---------------------------------------------------------
# One-sided group-sequential test of H0: gain <= 0 with error spending (Lan & DeMets 1983,
# Biometrika 70:659; power family of Kim & DeMets 1987 / Jennison & Turnbull 2000, §7.2).
# Z_k is the standardised gain at look k with information I_k; under the canonical joint
# distribution the score S_k = Z_k·sqrt(I_k) is a Brownian motion with drift θ in information
# time (Jennison & Turnbull ch. 3), so the crossing probabilities follow by the recursive
# numerical integration of Armitage, McPherson & Rowe (1969, JRSS A 132:235; J&T ch. 19).

_GRID = 801  # points per look: crossing probabilities accurate to ~1e-6 (tested against simulation)


def spent_alpha(fraction: float, alpha: float, rho: float) -> float:
    """docs/theory.md T2b: power-family error spending α·t^ρ, the type-I error spent by information fraction t.

    ρ = 1 spends evenly (Pocock-like), ρ = 3 saves it for the end (O'Brien–Fleming-like)."""
    t = chk.unit(fraction, "fraction")
    a = chk.real(alpha, "alpha")
    if not 0 < a < 1:
        raise TheoryInputError(f"alpha must lie in (0, 1), got {a}")
    return a * t ** chk.positive(rho, "rho")


def _fractions(fractions) -> np.ndarray:
    t = chk.finite_array(fractions, "fractions")
    if t.ndim != 1 or t[0] <= 0 or t[-1] > 1 + 1e-12 or np.any(np.diff(t) <= 0):
        raise TheoryInputError(f"fractions must increase strictly within (0, 1], got {t.tolist()}")
    return t


def _cross(state, t_k: float, bound: float, drift: float) -> float:
    """P(continue up to the previous look, then Z_k ≥ bound at fraction t_k)."""
    grid, dens, t_prev = state
    dt = t_k - t_prev
    upper = bound * np.sqrt(t_k) - drift * dt
    if grid is None:
        return float(stats.norm.sf(upper / np.sqrt(dt)))
    return float(np.trapezoid(dens * stats.norm.sf((upper - grid) / np.sqrt(dt)), grid))


def _advance(state, t_k: float, bound: float, drift: float):
    """Sub-density of S(t_k) on the continuation region {Z_j < c_j, j ≤ k} (AMR 1969 recursion)."""
    grid, dens, t_prev = state
    dt = t_k - t_prev
    upper = bound * np.sqrt(t_k) if np.isfinite(bound) else drift * t_k + 9.0 * np.sqrt(t_k)
    lo = min(drift * t_k - 9.0 * np.sqrt(t_k), upper - 1e-9)
    new_grid = np.linspace(lo, upper, _GRID)
    if grid is None:
        new_dens = stats.norm.pdf((new_grid - drift * dt) / np.sqrt(dt)) / np.sqrt(dt)
    else:
        kern = stats.norm.pdf((new_grid[:, None] - grid[None, :] - drift * dt) / np.sqrt(dt)) / np.sqrt(dt)
        new_dens = np.trapezoid(kern * dens[None, :], grid, axis=1)
    return new_grid, new_dens, t_k


def crossing_probabilities(bounds, fractions, drift: float = 0.0) -> np.ndarray:
    """docs/theory.md T2b: P(first crossing of the upper bound at look k), k = 1..K.

    Z_k = S(t_k)/sqrt(t_k) with S a Brownian motion of drift `drift` per unit information
    (drift = θ·sqrt(I_max) for a true gain θ), looks at information fractions t_k."""
    t = _fractions(fractions)
    b = chk.finite_array(bounds, "bounds")
    if b.shape != t.shape:
        raise TheoryInputError("bounds and fractions must have the same length")
    drift = chk.real(drift, "drift")
    state, out = (None, None, 0.0), []
    for t_k, c in zip(t, b):
        out.append(_cross(state, t_k, c, drift))
        state = _advance(state, t_k, c, drift)
    return np.array(out)


def sequential_bounds(fractions, alpha: float, rho: float = 2.0) -> np.ndarray:
    """docs/theory.md T2b: upper critical values c_k of a one-sided error-spending design.

    P_0(Z_j < c_j for j < k, Z_k ≥ c_k) = α(t_k) − α(t_{k−1}) with α(t) = α·t^ρ, so the probability of
    ever crossing under a true gain of 0 is α, whenever the analyst stops (non-binding: stopping
    early for futility only lowers it)."""
    t = _fractions(fractions)
    spend = np.diff([0.0] + [spent_alpha(x, alpha, rho) for x in t])
    bounds, state = np.empty_like(t), (None, None, 0.0)
    for k, t_k in enumerate(t):
        if spend[k] <= 0:
            bounds[k] = np.inf
        else:
            bounds[k] = optimize.brentq(lambda c: _cross(state, t_k, c, 0.0) - spend[k], -2.0, 12.0, xtol=1e-10)
        state = _advance(state, t_k, bounds[k], 0.0)
    return bounds


def conditional_power(z: float, info: float, final_info: float, final_bound: float, *,
                      predictive: bool = True) -> float:
    """docs/theory.md T2b: chance that the final look crosses `final_bound`, given Z = z at information `info`.

    predictive=True averages over the gain's flat-prior posterior N(θ̂, 1/I) (Spiegelhalter et al.
    1986, "predictive power"); False plugs in θ̂ (stochastic curtailment under the current trend).
    Used only to stop early for futility, which cannot raise the type-I error (non-binding)."""
    z = chk.real(z, "z")
    i_k = chk.positive(info, "info")
    i_f = chk.positive(final_info, "final_info")
    c = chk.real(final_bound, "final_bound")
    if i_f <= i_k:
        return float(z >= c)
    theta = z / np.sqrt(i_k)
    rest = i_f - i_k
    var = rest + (rest ** 2 / i_k if predictive else 0.0)
    return float(stats.norm.cdf((z * np.sqrt(i_k) + theta * rest - c * np.sqrt(i_f)) / np.sqrt(var)))
