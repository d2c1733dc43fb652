"""docs/theory.md T3: closed form for feature bagging (seed 000 §5; forms reconstructed).

Model: E(p) = e0 + c (1-p)^2, rho(p) = rho0 * p, sigma^2(p) = sigma2, for feature fraction p.
"""

from __future__ import annotations

import numpy as np

from theory import _checks as chk
from theory.errors import TheoryInputError


def _params(c: float, rho0: float, sigma2: float, members: int) -> tuple[float, float, float, int]:
    return (
        chk.positive(c, "c"),
        chk.unit(rho0, "rho0"),
        chk.nonneg(sigma2, "sigma2"),
        chk.members(members),
    )


def _fraction(p: object) -> np.ndarray:
    arr = chk.finite_array(p, "p")
    if np.any((arr < 0.0) | (arr > 1.0)):
        raise TheoryInputError("feature fraction p must lie in [0, 1]")
    return arr


def u_curve_error(
    p: float | np.ndarray, *, e0: float, c: float, rho0: float, sigma2: float, members: int
) -> float | np.ndarray:
    """docs/theory.md T3: E_ens(p) = e0 + c (1-p)^2 - ((M-1)/M) (1 - rho0 p) sigma2.

    `p` may be a scalar (returns float) or an array (returns an array of the same shape).
    """
    base = chk.nonneg(e0, "e0")
    c_, r0, s2, m = _params(c, rho0, sigma2, members)
    arr = _fraction(p)
    out = base + c_ * (1.0 - arr) ** 2 - chk.shrink(m) * (1.0 - r0 * arr) * s2
    return float(out) if out.ndim == 0 else out


def optimal_fraction(
    *, e0: float, c: float, rho0: float, sigma2: float, members: int, p_min: float = 0.05
) -> float:
    """docs/theory.md T3: p* = 1 - (M-1) rho0 sigma2 / (2 c M), clipped to [p_min, 1].

    The drop rate is 1 - p*. e0 does not move the optimum; it is validated for symmetry.
    Why the clip is exact: E_ens(p) is a convex parabola, so its constrained minimum is the
    clipped vertex.
    """
    chk.nonneg(e0, "e0")
    c_, r0, s2, m = _params(c, rho0, sigma2, members)
    lo = chk.unit(p_min, "p_min")
    if lo <= 0.0:
        raise TheoryInputError(f"p_min must be > 0, got {lo}")
    vertex = 1.0 - chk.shrink(m) * r0 * s2 / (2.0 * c_)
    return float(min(1.0, max(lo, vertex)))


def optimal_ensemble_error(
    *, e0: float, c: float, rho0: float, sigma2: float, members: int, p_min: float = 0.05
) -> float:
    """docs/theory.md T3: E_ens at the clipped p*.

    When p* is not clipped this equals E0 - base_diversity_gain - dropout_gain.
    """
    p_star = optimal_fraction(e0=e0, c=c, rho0=rho0, sigma2=sigma2, members=members, p_min=p_min)
    value = u_curve_error(p_star, e0=e0, c=c, rho0=rho0, sigma2=sigma2, members=members)
    return float(value)


def dropout_gain(*, c: float, rho0: float, sigma2: float, members: int) -> float:
    """docs/theory.md T3: [((M-1)/M) rho0 sigma2]^2 / (4c), the gain of p* over p = 1 (unclipped p*)."""
    c_, r0, s2, m = _params(c, rho0, sigma2, members)
    return (chk.shrink(m) * r0 * s2) ** 2 / (4.0 * c_)


def base_diversity_gain(*, rho0: float, sigma2: float, members: int) -> float:
    """docs/theory.md T3: ((M-1)/M)(1 - rho0) sigma2, the ensemble's gain over E0 at p = 1."""
    r0 = chk.unit(rho0, "rho0")
    s2 = chk.nonneg(sigma2, "sigma2")
    m = chk.members(members)
    return chk.shrink(m) * (1.0 - r0) * s2
