"""docs/theory.md T5: RACHEL actor-critic quantities (seed 002): returns and advantages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from theory import _checks as chk
from theory.errors import TheoryInputError


def discounted_returns(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """docs/theory.md T5: G_t = sum_k gamma^k r_{t+k}; the episode ends after the last reward.

    RACHEL uses gamma = 0.9; any gamma in [0, 1] is accepted.
    """
    r = chk.finite_array(rewards, "rewards")
    if r.ndim != 1:
        raise TheoryInputError(f"rewards must be 1-D, got shape {r.shape}")
    g = chk.unit(gamma, "gamma")
    out = np.empty_like(r)
    running = 0.0
    for t in range(r.size - 1, -1, -1):  # backward recursion G_t = r_t + gamma G_{t+1}
        running = r[t] + g * running
        out[t] = running
    return out


def advantages(
    returns: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
) -> np.ndarray:
    """docs/theory.md T5: A = r - V(s), elementwise; shapes must match."""
    ret = chk.finite_array(returns, "returns")
    val = chk.finite_array(values, "values")
    if ret.shape != val.shape:
        raise TheoryInputError(
            f"returns {ret.shape} and values {val.shape} must have the same shape"
        )
    return ret - val
