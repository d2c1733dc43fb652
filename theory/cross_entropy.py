"""docs/theory.md T6.3 and T6.4: LLM-NAS as a cross-entropy method (seed 003)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from theory import _checks as chk
from theory.errors import TheoryInputError


def elite_probability_lower_bound(rho0: float, cycles: int) -> float:
    """docs/theory.md T6.3: C_t >= 1 - (1 - rho0)^t.

    Read as: if every cycle produces an elite with probability at least rho0 (the starting elite
    rate; the CE update never lowers it), the probability that an elite has appeared within t
    cycles is at least 1 - (1 - rho0)^t. cycles = 0 gives 0.
    """
    r0 = chk.unit(rho0, "rho0")
    t = chk.integer(cycles, "cycles", 0)
    return 1.0 - (1.0 - r0) ** t


def validity_probability(token_error_rate: float, tokens: float) -> float:
    """docs/theory.md T6.4: P(valid) = (1 - eps)^L when each of L emitted tokens breaks with prob eps."""
    eps = chk.unit(token_error_rate, "token_error_rate")
    length = chk.nonneg(tokens, "tokens")
    if length == 0.0:
        return 1.0
    return float((1.0 - eps) ** length)


def _log_valid(eps: float, lengths: np.ndarray) -> np.ndarray:
    return lengths * math.log1p(-eps)


def fit_token_error_rate(
    valid_rates: Sequence[float],
    token_counts: Sequence[float],
    weights: Sequence[float] | None = None,
) -> float:
    """docs/theory.md T6.4: fit eps in P(valid) = (1 - eps)^L to observed (rate, tokens) groups.

    Method: binomial maximum likelihood. Group i has validity rate r_i, mean emitted tokens L_i,
    and weight w_i (the number of programs in the group; equal weights when None). The
    log-likelihood sum_i w_i [r_i log P_i + (1 - r_i) log(1 - P_i)], P_i = (1 - eps)^L_i, is
    concave in log(1 - eps), so its score sum_i w_i L_i (r_i - P_i) / (1 - P_i) is monotone in
    eps and the root is found by bisection (handles rates of exactly 0 or 1, where a log-linear
    least-squares fit breaks). All rates 1 -> 0.0; all rates 0 -> 1.0.
    Caveat: with per-program lengths varying, plugging in the mean L slightly overstates eps,
    because (1 - eps)^L is convex in L (Jensen).
    """
    rates = chk.finite_array(valid_rates, "valid_rates").ravel()
    lengths = chk.finite_array(token_counts, "token_counts").ravel()
    w = np.ones_like(rates) if weights is None else chk.finite_array(weights, "weights").ravel()
    if not rates.shape == lengths.shape == w.shape:
        raise TheoryInputError("valid_rates, token_counts and weights must have equal lengths")
    if np.any((rates < 0) | (rates > 1)):
        raise TheoryInputError("valid_rates must lie in [0, 1]")
    if np.any(lengths < 0) or np.any(w < 0):
        raise TheoryInputError("token_counts and weights must be >= 0")
    use = (w > 0) & (lengths > 0)  # L = 0 groups carry no information about eps
    if not np.any(use):
        raise TheoryInputError("need at least one group with tokens > 0 and weight > 0")
    rates, lengths, w = rates[use], lengths[use], w[use]
    if np.all(rates == 1.0):
        return 0.0
    if np.all(rates == 0.0):
        return 1.0

    def score(eps: float) -> float:
        log_p = _log_valid(eps, lengths)
        p = np.exp(log_p)
        return float(np.sum(w * lengths * (rates - p) / -np.expm1(log_p)))

    lo, hi = 0.0, 1.0  # score < 0 near eps = 0 and > 0 near eps = 1; it increases with eps
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if score(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
