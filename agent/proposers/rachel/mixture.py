"""Ensemble mixture weights fitted on validation, and RACHEL's safety net (docs/theory.md T5).

The ensemble combines members by a weighted average of their logits, with weights
w = softmax(theta) on the simplex, and is scored by validation cross-entropy:

    L(w) = mean_x [ logsumexp_k z_k(x) - z_y(x) ],   z(x) = sum_m w_m * s_m(x)

where s_m(x) are member m's (log-softmax-normalised) logits. What is convex, precisely:
L is convex in w (logsumexp is convex, z is linear in w, a convex function of a linear map
is convex), and the simplex is convex, so min_w L(w) is a convex problem with one optimal
value. L is *not* convex in theta (the softmax logits that are trained); the paper's
"convex in the logits of the weights" is loose. What still holds: every stationary point of
theta -> L(softmax(theta)) is a global minimum of the simplex problem, because
dL/dtheta_j = w_j (g_j - sum_k w_k g_k) with all w_j > 0, so stationarity forces all
gradient components g_j = dL/dw_j equal, which is the KKT condition of the convex problem
with no active bound. Optima on the simplex boundary (some w_j = 0) are reached only as
theta_j -> -inf, so a theta-fit approaches them in value, not in finitely many steps.

Using log-softmax outputs instead of raw logits changes nothing: log_softmax(s) = s - c(x) per
example, and sum_m w_m c_m(x) is a per-example constant when sum w = 1, which cancels in the
ensemble softmax. So member log-probabilities from the evaluator serve as logits.

An optional linear penalty sum_m w_m * penalty_m keeps the problem convex (AdaNet-style
complexity regularisation uses it; on the simplex |w| = w so the L1 term is linear).

Safety net (seed 002 §2.4): a candidate whose ensemble objective is worse than the previously
accepted objective by more than `tolerance` (0.01) is discarded and the previous best member
is added again. With the mixture fitted to its optimum on the same data, adding a member can
never raise the optimum (its weight can go to 0), so the net fires only when the fit is
truncated (the paper's 10 Adam epochs; method="adam" here) or the objective is measured on
other data. It is kept as the paper's guard against optimiser failures; the search counts how
often it fires.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from scipy.optimize import minimize

from evaluator.failures import ConfigError, EnsnasError

LOG_FLOOR = 1e-30  # probabilities below this are clipped before taking logs (float32 underflow)


class MixtureError(EnsnasError):
    """Member predictions or labels unusable for a mixture fit (shapes, non-finite values)."""


class MixtureConfig(BaseModel):
    """How mixture weights are fitted. lbfgs runs to convergence (the convex optimum);
    adam with steps=10 is the paper's truncated fit of the weight logits."""
    model_config = ConfigDict(extra="forbid")
    method: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int = Field(500, ge=1, description="L-BFGS iterations or Adam full-batch steps")
    lr: float = Field(0.05, gt=0, description="Adam learning rate on the weight logits")
    tolerance: float = Field(1e-10, gt=0, description="L-BFGS gradient/change tolerance")


@dataclass(frozen=True)
class MixtureFit:
    weights: np.ndarray          # (M,), on the simplex
    loss: float                  # the objective: validation CE (+ penalty term when given)
    cross_entropy: float         # the CE part alone


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Member probabilities -> logits usable for mixing (log with a floor against underflow)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), LOG_FLOOR, 1.0))


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 3 or logits.shape[0] < 1:
        raise MixtureError(f"member logits must be (members, examples, classes), got shape {logits.shape}")
    if labels.shape != (logits.shape[1],):
        raise MixtureError(f"labels shape {labels.shape} does not match {logits.shape[1]} examples")
    if not np.isfinite(logits).all():
        raise MixtureError("member logits contain NaN or inf")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[2]):
        raise MixtureError(f"labels outside [0, {logits.shape[2]})")
    return logits, labels.astype(np.int64)


def ensemble_logits(logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_m w_m s_m(x): the weighted average of member logits, (examples, classes)."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), np.asarray(logits, dtype=np.float64), axes=1)


def ensemble_probabilities(logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    z = ensemble_logits(logits, weights)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ensemble_cross_entropy(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """L(w) evaluated directly (numpy, float64)."""
    logits, labels = _check(logits, labels)
    z = ensemble_logits(logits, weights)
    m = z.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def fit_mixture(logits: np.ndarray, labels: np.ndarray, *, config: MixtureConfig | None = None,
                penalty: np.ndarray | None = None, init: np.ndarray | None = None) -> MixtureFit:
    """Fit w = softmax(theta) minimising L(w) + w . penalty on (logits, labels); theta starts at
    `init` (default zeros, i.e. uniform weights)."""
    config = config or MixtureConfig()
    logits, labels = _check(logits, labels)
    n_members = logits.shape[0]
    pen = np.zeros(n_members) if penalty is None else np.asarray(penalty, dtype=np.float64)
    if pen.shape != (n_members,) or not np.isfinite(pen).all():
        raise MixtureError(f"penalty must be {n_members} finite numbers, got {penalty!r}")
    if n_members == 1:
        w = np.ones(1)
        ce = ensemble_cross_entropy(logits, labels, w)
        return MixtureFit(weights=w, loss=ce + float(pen[0]), cross_entropy=ce)
    theta0 = np.zeros(n_members) if init is None else np.asarray(init, dtype=np.float64)
    if theta0.shape != (n_members,):
        raise MixtureError(f"init must have {n_members} entries")
    onehot = np.zeros(logits.shape[1:])
    onehot[np.arange(len(labels)), labels] = 1.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        """L(softmax(theta)) + penalty and its exact gradient in theta."""
        w = np.exp(theta - theta.max())
        w /= w.sum()
        z = np.tensordot(w, logits, axes=1)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - (z * onehot).sum(1))) + float(w @ pen)
        dz = (e / total - onehot) / len(labels)                       # dL/dz
        g = np.tensordot(logits, dz, axes=([1, 2], [0, 1])) + pen      # dL/dw
        return loss, w * (g - w @ g)                                   # chain rule through the softmax

    if config.method == "lbfgs":
        res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": config.steps, "gtol": config.tolerance, "ftol": config.tolerance})
        theta = res.x
    elif config.method == "adam":  # the paper's truncated fit: full-batch Adam steps on theta
        theta, m1, m2 = theta0.copy(), np.zeros(n_members), np.zeros(n_members)
        for t in range(1, config.steps + 1):
            _, grad = objective(theta)
            m1 = 0.9 * m1 + 0.1 * grad
            m2 = 0.999 * m2 + 0.001 * grad ** 2
            theta = theta - config.lr * (m1 / (1 - 0.9 ** t)) / (np.sqrt(m2 / (1 - 0.999 ** t)) + 1e-8)
    else:  # pydantic already restricts it; kept for direct construction with model_construct
        raise ConfigError(f"unknown mixture fit method {config.method!r}")
    w = np.exp(theta - theta.max())
    w /= w.sum()
    ce = ensemble_cross_entropy(logits, labels, w)
    loss = ce + float(w @ pen)
    if not math.isfinite(loss):
        raise MixtureError("mixture fit diverged (non-finite objective)")
    return MixtureFit(weights=w, loss=loss, cross_entropy=ce)


def safety_net_fires(candidate_objective: float, previous_objective: float | None, *,
                     tolerance: float = 0.01) -> bool:
    """True when the candidate's objective is worse (larger) than the previously accepted one
    by more than `tolerance`; never on the first acceptance (previous_objective None)."""
    if previous_objective is None:
        return False
    if not (math.isfinite(candidate_objective) and math.isfinite(previous_objective)):
        return not math.isfinite(candidate_objective)
    return candidate_objective > previous_objective + tolerance
