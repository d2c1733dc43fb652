"""docs/theory.md T1: homogeneous ensemble error and the Krogh-Vedelsby decomposition.

Error is squared error on predicted probabilities summed over classes (Brier score for
classification), averaged over validation examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory import _checks as chk
from theory.errors import TheoryInputError


def diversity(variance: float, correlation: float) -> float:
    """docs/theory.md T1: D = (1 - rho) * sigma^2 for one architecture.

    `variance` is the per-member prediction variance sigma^2 (>= 0), `correlation` the pairwise
    correlation rho of independently trained instances (in [-1, 1]).
    """
    var = chk.nonneg(variance, "variance")
    rho = chk.correlation(correlation)
    return (1.0 - rho) * var


def ensemble_error(member_error: float, diversity: float, members: int) -> float:
    """docs/theory.md T1: E_ens(a, M) = E_a - ((M-1)/M) * D_a for a homogeneous M-member average."""
    err = chk.nonneg(member_error, "member_error")
    div = chk.nonneg(diversity, "diversity")
    m = chk.members(members)
    return err - chk.shrink(m) * div


def homogeneous_ambiguity(variance: float, correlation: float, members: int) -> float:
    """docs/theory.md T1: mean ambiguity under homogeneity, A = ((M-1)/M) * (1 - rho) * sigma^2."""
    m = chk.members(members)
    return chk.shrink(m) * diversity(variance, correlation)


def _pair(f1: object, f2: object) -> tuple[np.ndarray, np.ndarray]:
    a = chk.finite_array(f1, "f1")
    b = chk.finite_array(f2, "f2")
    if a.shape != b.shape:
        raise TheoryInputError(f"f1 and f2 must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 0:
        raise TheoryInputError("f1 and f2 must be arrays of shape [n] or [n, C]")
    return a, b


def diversity_from_two_instances(f1: np.ndarray, f2: np.ndarray) -> float:
    """docs/theory.md T1: D_hat = 1/2 * mean_x ||f1(x) - f2(x)||^2 from two independent instances.

    Arrays are [n] (one output per example) or [n, C] (the norm sums over all trailing axes).
    Why 1/2: E||f1 - f2||^2 = 2 (1 - rho) sigma^2 for two exchangeable instances.
    """
    a, b = _pair(f1, f2)
    sq = (a - b) ** 2
    per_example = sq.reshape(sq.shape[0], -1).sum(axis=1)
    return 0.5 * float(per_example.mean())


@dataclass(frozen=True)
class KroghVedelsby:
    """docs/theory.md T1: E_ens = mean_member_error - mean_ambiguity (exact)."""

    ensemble_error: float
    mean_member_error: float
    mean_ambiguity: float


def krogh_vedelsby(member_predictions: np.ndarray, targets: np.ndarray) -> KroghVedelsby:
    """docs/theory.md T1: Krogh-Vedelsby decomposition of a uniformly averaged ensemble.

    `member_predictions` is [M, n, C] (or [M, n]); `targets` is [n, C] (or [n]). Squared error is
    summed over classes and averaged over examples; the identity E_ens = Ebar - Abar is exact.
    """
    preds = chk.finite_array(member_predictions, "member_predictions")
    tgt = chk.finite_array(targets, "targets")
    if preds.ndim < 2:
        raise TheoryInputError(f"member_predictions must be [M, n] or [M, n, C], got {preds.shape}")
    if preds.shape[1:] != tgt.shape:
        raise TheoryInputError(
            f"targets shape {tgt.shape} must equal member_predictions.shape[1:] {preds.shape[1:]}"
        )
    m, n = preds.shape[0], preds.shape[1]
    flat = preds.reshape(m, n, -1)
    y = tgt.reshape(n, -1)
    mean_pred = flat.mean(axis=0)
    ens = float(((mean_pred - y) ** 2).sum(axis=1).mean())
    member = float(((flat - y) ** 2).sum(axis=2).mean())
    ambiguity = float(((flat - mean_pred) ** 2).sum(axis=2).mean())
    return KroghVedelsby(ensemble_error=ens, mean_member_error=member, mean_ambiguity=ambiguity)
