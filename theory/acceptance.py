"""THEORY.md T2: the ensemble-decoupled acceptance test (seed 000, Thm 3.1) and its cost."""

from __future__ import annotations

from theory import _checks as chk
from theory.ensemble import ensemble_error


def acceptance_threshold(members: int, diversity_base: float, diversity_candidate: float) -> float:
    """THEORY.md T2: threshold ((M-1)/M) * (D_a - D_a') that Delta = E_a - E_a' must exceed.

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
    """THEORY.md T2: E_ens(a, M) - E_ens(a', M); > 0 means the candidate's ensemble is better."""
    return ensemble_error(error_base, diversity_base, members) - ensemble_error(
        error_candidate, diversity_candidate, members
    )


def accepts(delta: float, threshold: float) -> bool:
    """THEORY.md T2: accept a' iff Delta > threshold, Delta = E_a - E_a' (strict: ties keep a)."""
    return chk.real(delta, "delta") > chk.real(threshold, "threshold")


def variance_stable_threshold(
    members: int, variance: float, rho_base: float, rho_candidate: float
) -> float:
    """THEORY.md T2 under variance stability (sigma_a'^2 ~ sigma_a^2).

    Threshold ((M-1)/M) sigma^2 (rho_a' - rho_a) for Delta = E_a - E_a'.
    """
    m = chk.members(members)
    var = chk.nonneg(variance, "variance")
    r_base = chk.correlation(rho_base, "rho_base")
    r_cand = chk.correlation(rho_candidate, "rho_candidate")
    return chk.shrink(m) * var * (r_cand - r_base)


def search_cost(n_candidates: int, members: int, *, decoupled: bool) -> int:
    """THEORY.md T2 cost (seed 000 §3.4): training runs to screen N candidates.

    Full check: M members per candidate, N*M. Decoupled: 2 instances per candidate plus M once
    for the winner, 2N + M.
    """
    n = chk.integer(n_candidates, "n_candidates", 1)
    m = chk.members(members)
    return 2 * n + m if decoupled else n * m
