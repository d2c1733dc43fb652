"""The ensemble acceptance test (docs/theory.md T2) with a confidence bound.

The point test says the candidate a′ replaces the baseline a when the predicted M-member
ensemble error drops: Δ = E_a − E_a′ > ((M−1)/M)(D_a − D_a′). Estimates come from two
noisy instances, so the test also gives a one-sided lower bound on the predicted improvement:
a paired bootstrap over validation examples (both architectures scored on the same examples),
widened by the seed noise the instances reveal (their Brier spread), so "accepted" means
"improves with probability ≥ 1 − α", not "the point estimate happened to be higher".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal
import zlib

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from evaluator.paired import kernel_variance
from evaluator.statistics import brier_per_example, one_hot, pair_diversity_per_example
from theory.acceptance import acceptance_threshold, accepts


class AcceptanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: int = Field(5, ge=2, description="M, the deployed ensemble size")
    method: Literal["sequential", "fixed"] = Field(
        "sequential", description="sequential: 2 to max_instances paired instances, α held under optional "
                                  "stopping (evaluator.sequential); fixed: 2 instances and a bootstrap bound")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided level: P(accept | not better) ≤ α")
    max_instances: int = Field(6, ge=4, le=20, description="sequential: the most instances a side is trained to")
    spending: float = Field(2.0, gt=0, description="sequential: error spent by information t is α·t^spending")
    futility: float = Field(0.1, ge=0, lt=1, description="sequential: reject early when the predictive power "
                                                         "of accepting by max_instances is below this")
    prior_df: float = Field(3.0, ge=0, description="sequential: degrees of freedom of the seed program's "
                                                   "noise prior, used at the 2-instance look (futility); 0 = none")
    bootstrap: int = Field(2000, ge=100, description="fixed: bootstrap draws")
    require_confident: bool = Field(True, description="fixed: accept only when the lower bound is > 0")
    seed_noise: bool = Field(True, description="fixed: widen the bound by the instances' seed noise")
    seed: int = Field(0, description="fixed: bootstrap seed (mixed with the predictions, so each decision "
                                     "draws its own)")


@dataclass(frozen=True)
class Decision:
    accept: bool
    point_accept: bool             # the paper's condition on point estimates
    confident: bool                # the interval excludes 0 (either way)
    delta: float                   # E_a − E_a′ (single-model improvement)
    threshold: float               # ((M−1)/M)(D_a − D_a′)
    predicted_improvement: float   # E_ens(a, M) − E_ens(a′, M) = Δ − threshold
    lower_bound: float             # one-sided (1−α) lower bound on predicted_improvement
    upper_bound: float             # one-sided (1−α) upper bound
    members: int
    alpha: float
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def _per_example(probs: np.ndarray, targets: np.ndarray, members: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example member error e(x), diversity d(x) and predicted ensemble error e − k·d."""
    e = brier_per_example(probs, targets).mean(0)
    d = pair_diversity_per_example(probs)
    return e, d, e - (members - 1) / members * d


def bootstrap_rng(config: AcceptanceConfig, *arrays: np.ndarray) -> np.random.Generator:
    """The bootstrap's generator: config.seed mixed with checksums of the decision's predictions, so
    decisions draw independently of each other and a replayed decision draws the same. Symmetric in the
    arrays: a vs b and b vs a draw alike, so their bounds mirror each other (dominance stays antisymmetric)."""
    return np.random.default_rng([config.seed] + sorted(_checksum(a) for a in arrays))


def _checksum(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a, np.float32).tobytes())


def _orientation(base: np.ndarray, cand: np.ndarray) -> float:
    return 1.0 if _checksum(base) <= _checksum(cand) else -1.0


def _seed_variance(probs: np.ndarray, targets: np.ndarray) -> float:
    """Variance of the K-instance mean error due to training seeds: var(instance Briers)/K."""
    briers = brier_per_example(probs, targets).mean(-1)
    return float(briers.var(ddof=1) / len(briers))


def acceptance_test(base_probs: np.ndarray, cand_probs: np.ndarray, labels: np.ndarray,
                    config: AcceptanceConfig = AcceptanceConfig(),
                    *, noise_variance: float | None = None) -> Decision:
    """Decide whether the candidate's M-ensemble beats the baseline's (T2), from K ≥ 2 instances each.

    `noise_variance`, if given, is the seed variance of one side's predicted M-ensemble error
    (pooled, e.g. from repeated evaluations of the incumbent); otherwise each side's instances
    give their own (K−1)-degree-of-freedom estimate from the spread of their Brier scores.
    """
    m = config.members
    targets = one_hot(labels, base_probs.shape[-1])
    e_a, d_a, p_a = _per_example(base_probs, targets, m)
    e_c, d_c, p_c = _per_example(cand_probs, targets, m)
    delta = float(e_a.mean() - e_c.mean())
    threshold = float(acceptance_threshold(m, float(d_a.mean()), float(d_c.mean())))
    improvement = delta - threshold
    point = bool(accepts(delta, threshold))

    rng = bootstrap_rng(config, base_probs, cand_probs)
    g = p_a - p_c
    n = len(g)
    idx = rng.integers(0, n, size=(config.bootstrap, n))
    boot = g[idx].mean(1)
    if config.seed_noise:
        if noise_variance is not None:  # pooled from many evaluations: treat as known
            var = 2.0 * noise_variance
            draws = rng.standard_normal(boot.shape)
        else:  # each side's own K−1 degrees of freedom: Student-t, not normal, or the bound over-accepts
            var = _seed_variance(base_probs, targets) + _seed_variance(cand_probs, targets)
            draws = rng.standard_t(len(base_probs) + len(cand_probs) - 2, size=boot.shape)
        # the same draws, mirrored when the two sides are swapped: lower(b, a) = −upper(a, b) exactly
        boot = boot + np.sqrt(var) * draws * _orientation(base_probs, cand_probs)
    lower = float(improvement - (np.mean(boot) - np.quantile(boot, config.alpha)))
    upper = float(improvement + (np.quantile(boot, 1 - config.alpha) - np.mean(boot)))
    confident = lower > 0 or upper < 0
    accept = point and (lower > 0 if config.require_confident else True)
    reason = _explain(point, accept, delta, threshold, lower, config)
    return Decision(accept=accept, point_accept=point, confident=confident, delta=delta, threshold=threshold,
                    predicted_improvement=improvement, lower_bound=lower, upper_bound=upper,
                    members=m, alpha=config.alpha, reason=reason)


def _explain(point: bool, accept: bool, delta: float, threshold: float, lower: float, config: AcceptanceConfig) -> str:
    m = config.members
    side = "more diverse" if threshold < 0 else "less diverse"
    cond = f"Δ = {delta:+.5f} {'>' if point else '≤'} threshold {threshold:+.5f} (candidate {side}, M = {m})"
    if accept:
        return f"accepted: {cond}; {1 - config.alpha:.0%} lower bound on the ensemble gain {lower:+.5f} > 0"
    if point:
        return (f"rejected: {cond}, but the {1 - config.alpha:.0%} lower bound {lower:+.5f} ≤ 0 "
                "(the gain is within the noise of two instances)")
    return f"rejected: {cond}; the predicted {m}-ensemble is not better"


def full_ensemble_test(base_probs: np.ndarray, cand_probs: np.ndarray, labels: np.ndarray,
                       config: AcceptanceConfig = AcceptanceConfig()) -> Decision:
    """Ground truth mode: both sides were trained as real M-member ensembles; compare their
    measured ensemble Brier, with a paired bootstrap over examples for the bound."""
    targets = one_hot(labels, base_probs.shape[-1])
    ens_a = brier_per_example(base_probs.mean(0), targets)
    ens_c = brier_per_example(cand_probs.mean(0), targets)
    g = ens_a - ens_c
    improvement = float(g.mean())
    rng = bootstrap_rng(config, base_probs, cand_probs)
    boot = g[rng.integers(0, len(g), size=(config.bootstrap, len(g)))].mean(1)
    lower = float(np.quantile(boot, config.alpha))
    upper = float(np.quantile(boot, 1 - config.alpha))
    delta = float(brier_per_example(base_probs, targets).mean() - brier_per_example(cand_probs, targets).mean())
    threshold = delta - improvement
    point = improvement > 0
    accept = point and (lower > 0 if config.require_confident else True)
    reason = (f"full {len(base_probs)}-vs-{len(cand_probs)} ensembles: measured gain {improvement:+.5f}, "
              f"{1 - config.alpha:.0%} lower bound {lower:+.5f} → {'accepted' if accept else 'rejected'}")
    return Decision(accept=accept, point_accept=point, confident=lower > 0 or upper < 0, delta=delta,
                    threshold=threshold, predicted_improvement=improvement, lower_bound=lower, upper_bound=upper,
                    members=len(base_probs), alpha=config.alpha, reason=reason)


def noise_variance_from_instances(probs: np.ndarray, labels: np.ndarray, members: int) -> float:
    """Seed variance of a 2-instance predicted M-ensemble error (ζ₂), from K ≥ 4 instances of one
    program, every instance used (evaluator.paired.kernel_variance). Pass it as `noise_variance`."""
    return kernel_variance(probs, labels, members)


__all__ = ["AcceptanceConfig", "Decision", "acceptance_test", "bootstrap_rng", "full_ensemble_test",
           "noise_variance_from_instances"]
