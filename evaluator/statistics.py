"""Host-side statistics of K instances' validation probabilities (docs/theory.md T1).

Everything here is computed from predictions the sandbox wrote and labels it never saw.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np

from evaluator.failures import EvaluationFailed, FailureReason
from theory.ensemble import ensemble_error, krogh_vedelsby

EPS = 1e-7


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes), np.float64)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def validate_probabilities(probs: np.ndarray, n: int, num_classes: int, name: str) -> np.ndarray:
    """Reject predictions a program could forge or break: wrong shape, NaN, not on the simplex."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 3 or probs.shape[1:] != (n, num_classes):
        raise EvaluationFailed(FailureReason.invalid_output,
                               f"{name} predictions have shape {probs.shape}, expected (K, {n}, {num_classes})")
    if not np.isfinite(probs).all():
        raise EvaluationFailed(FailureReason.nan_output, f"{name} predictions contain NaN/inf")
    if (probs < -1e-6).any() or np.abs(probs.sum(-1) - 1).max() > 1e-3:
        raise EvaluationFailed(FailureReason.invalid_output, f"{name} predictions are not probability vectors")
    return probs


def brier_per_example(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Squared error summed over classes, per example; probs [..., n, C], targets [n, C]."""
    return ((probs - targets) ** 2).sum(-1)


def pair_diversity_per_example(probs: np.ndarray) -> np.ndarray:
    """½‖f_i − f_j‖² per example, averaged over all instance pairs (T1's D̂, before the mean)."""
    pairs = list(combinations(range(len(probs)), 2))
    return np.mean([0.5 * ((probs[i] - probs[j]) ** 2).sum(-1) for i, j in pairs], axis=0)


@dataclass(frozen=True)
class InstanceMetrics:
    brier: float
    cross_entropy: float
    accuracy: float


@dataclass(frozen=True)
class EnsembleStatistics:
    instances: list[InstanceMetrics]
    member_error: float        # E_a: mean instance Brier
    variance: float            # σ²: prediction variance over the validation set (summed over classes)
    correlation: float         # ρ: correlation of the instances' centred predictions
    diversity: float           # D̂ = ½ mean ‖f1 − f2‖² (mean over pairs)
    ambiguity: float           # Krogh–Vedelsby Ā of the K instances
    ensemble_error: float      # measured Brier of the K-average
    kv_residual: float         # |E_ens − (Ē − Ā)|, zero up to rounding on every evaluation
    noise_variance: float      # σ²_noise: variance of the instance Briers across seeds (T6.6)
    cross_entropy: float
    accuracy: float

    @property
    def k(self) -> int:
        return len(self.instances)

    def predicted_ensemble_error(self, members: int) -> float:
        """T1: E_a − ((M−1)/M)·D̂."""
        return ensemble_error(self.member_error, self.diversity, members)

    def as_dict(self) -> dict:
        return asdict(self)


def predicted_from_dict(stats: dict | None, members: int) -> float:
    """T1's predicted M-ensemble error from stored statistics (EnsembleStatistics.as_dict()); inf if none."""
    if not stats or "member_error" not in stats:
        return float("inf")
    return ensemble_error(stats["member_error"], stats["diversity"], members)


def compute_statistics(probs: np.ndarray, labels: np.ndarray) -> EnsembleStatistics:
    k, n, c = probs.shape
    if k < 2:
        raise ValueError("statistics need at least two instances")
    targets = one_hot(labels, c)
    briers = brier_per_example(probs, targets).mean(-1)
    ces = -np.log(np.clip(probs[:, np.arange(n), labels], EPS, 1.0)).mean(-1)
    accs = (probs.argmax(-1) == labels).mean(-1)
    kv = krogh_vedelsby(probs, targets)
    centred = probs - probs.mean(1, keepdims=True)
    var_i = (centred ** 2).sum(-1).mean(-1)
    covs = [(centred[i] * centred[j]).sum(-1).mean() for i, j in combinations(range(k), 2)]
    norms = [np.sqrt(var_i[i] * var_i[j]) for i, j in combinations(range(k), 2)]
    correlation = float(np.mean([cv / nm if nm > 0 else 1.0 for cv, nm in zip(covs, norms)]))
    ens = probs.mean(0)
    return EnsembleStatistics(
        instances=[InstanceMetrics(float(b), float(e), float(a)) for b, e, a in zip(briers, ces, accs)],
        member_error=float(briers.mean()),
        variance=float(var_i.mean()),
        correlation=correlation,
        diversity=float(pair_diversity_per_example(probs).mean()),
        ambiguity=float(kv.mean_ambiguity),
        ensemble_error=float(brier_per_example(ens, targets).mean()),
        kv_residual=float(abs(kv.ensemble_error - (kv.mean_member_error - kv.mean_ambiguity))),
        noise_variance=float(briers.var(ddof=1)),
        cross_entropy=float(ces.mean()),
        accuracy=float(accs.mean()),
    )


def ensemble_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Brier, cross-entropy and accuracy of the uniform average of all members in `probs`."""
    ens = probs.mean(0)
    n, c = ens.shape
    return {
        "brier": float(brier_per_example(ens, one_hot(labels, c)).mean()),
        "cross_entropy": float(-np.log(np.clip(ens[np.arange(n), labels], EPS, 1.0)).mean()),
        "accuracy": float((ens.argmax(-1) == labels).mean()),
        "members": int(len(probs)),
    }
