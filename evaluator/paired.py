"""The gain of one architecture's predicted M-ensemble error over another's, paired by seed,
and its noise (docs/theory.md T2b; docs/sequential_acceptance.md).

For K instances of one architecture the predicted M-ensemble error (T1) is a U-statistic over
seeds with the kernel h_ij = ½(e_i + e_j) − ((M−1)/M)·d_ij, e_i an instance's Brier and d_ij =
½‖f_i − f_j‖²: unbiased for the expected error of an M-member ensemble, for any K ≥ 2. Instances
of the two architectures that share a seed share their batch order and initial random stream, so
the gain is estimated on common seeds and its seed variance is that of the *paired* kernel
g_ij = h^base_ij − h^cand_ij (leave-one-seed-out jackknife over the common seeds, K − 1 degrees
of freedom). The validation examples add their own variance (the gate targets new data), the
per-example spread of the gain minus its seed part, so nothing is counted twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from evaluator.statistics import brier_per_example, one_hot


@dataclass(frozen=True)
class Instances:
    """Validation probabilities [K, n, C] of one architecture's instances, keyed by their seeds."""
    seeds: tuple[int, ...]
    probs: np.ndarray

    def __post_init__(self) -> None:
        if len(self.seeds) != len(self.probs) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"{len(self.probs)} instances but seeds {self.seeds}")

    def take(self, seeds) -> "Instances":
        index = {s: i for i, s in enumerate(self.seeds)}
        return Instances(tuple(seeds), self.probs[[index[s] for s in seeds]])


def _kernel_parts(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example instance Brier e [K, n] and pair diversity d [K, K, n]."""
    e = brier_per_example(probs, targets)
    sq = (probs ** 2).sum(-1)
    d = 0.5 * (sq[:, None] + sq[None, :]) - np.einsum("ixc,jxc->ijx", probs, probs)  # no [K, K, n, C] array
    d[np.arange(len(probs)), np.arange(len(probs))] = 0.0
    return e, np.maximum(d, 0.0)


def _u_per_example(e: np.ndarray, d: np.ndarray, kappa: float, keep: list[int]) -> np.ndarray:
    """The U-statistic per example over instances `keep`: mean e − κ · mean over pairs of d."""
    k = len(keep)
    sub = d[np.ix_(keep, keep)]
    pairs = sub.sum((0, 1)) / (k * (k - 1))  # the diagonal is 0; each pair counted twice
    return e[keep].mean(0) - kappa * pairs


@dataclass(frozen=True)
class PairedGain:
    """Ĝ = Ê_ens(base, M) − Ê_ens(cand, M) (> 0: the candidate's ensemble is better) and its noise."""
    gain: float
    delta: float            # E_base − E_cand, single models (T2's Δ)
    threshold: float        # ((M−1)/M)(D_base − D_cand) (T2)
    instances: int          # common seeds (paired) or the smaller side (unpaired)
    paired: bool
    var_seed: float | None  # jackknife over seeds of Ĝ (None below 3 instances a side)
    var_examples: float     # variance from the finite validation set, seed part removed
    examples: int

    def as_dict(self) -> dict:
        return asdict(self)


def _jackknife(values: np.ndarray) -> np.ndarray:
    """Jackknife variance along axis 0 of leave-one-out estimates (one row per left-out unit)."""
    k = len(values)
    return (k - 1) / k * ((values - values.mean(0)) ** 2).sum(0)


@dataclass(frozen=True)
class KernelParts:
    """One side's per-example instance Brier e [K, n] and pair diversities d [K, K, n], by seed:
    computed once, then any subset of seeds gives its U-statistic (the looks of the sequential test)."""
    seeds: tuple[int, ...]
    e: np.ndarray
    d: np.ndarray

    @classmethod
    def of(cls, inst: Instances, labels: np.ndarray) -> "KernelParts":
        e, d = _kernel_parts(inst.probs, one_hot(labels, inst.probs.shape[-1]))
        return cls(inst.seeds, e, d)

    def index(self, seeds) -> list[int]:
        where = {s: i for i, s in enumerate(self.seeds)}
        return [where[s] for s in seeds]


def paired_gain(base: Instances, cand: Instances, labels: np.ndarray, members: int) -> PairedGain:
    """The gain on the seeds both sides have (≥ 2: paired), else on each side's own seeds (unpaired)."""
    common = [s for s in base.seeds if s in set(cand.seeds)]
    if len(common) >= 2:
        base, cand = base.take(common), cand.take(common)
    return gain_from_parts(KernelParts.of(base, labels), KernelParts.of(cand, labels), members)


def gain_from_parts(base: KernelParts, cand: KernelParts, members: int, seeds=None) -> PairedGain:
    """paired_gain on precomputed parts: on `seeds` (both sides), or on the common seeds if ≥ 2,
    or unpaired on each side's own."""
    kappa = (members - 1) / members
    if seeds is None:
        seeds = [s for s in base.seeds if s in set(cand.seeds)]
    paired = len(seeds) >= 2
    ib, ic = (base.index(seeds), cand.index(seeds)) if paired else (list(range(len(base.seeds))),
                                                                   list(range(len(cand.seeds))))
    if len(ib) < 2 or len(ic) < 2:
        raise ValueError("each side needs at least 2 instances")
    e_b, d_b = base.e[ib], base.d[np.ix_(ib, ib)]
    e_c, d_c = cand.e[ic], cand.d[np.ix_(ic, ic)]
    kb, kc = len(ib), len(ic)
    g = _u_per_example(e_b, d_b, kappa, list(range(kb))) - _u_per_example(e_c, d_c, kappa, list(range(kc)))
    n = len(g)
    div_b = float(d_b.sum((0, 1)).mean() / (kb * (kb - 1)))
    div_c = float(d_c.sum((0, 1)).mean() / (kc * (kc - 1)))
    var_seed, seed_part = None, 0.0

    def loo(e, d, k):  # leave-one-out per-example U-statistics [k, n]
        return np.stack([_u_per_example(e, d, kappa, [j for j in range(k) if j != i]) for i in range(k)])

    if paired and kb >= 3:
        loo_g = loo(e_b, d_b, kb) - loo(e_c, d_c, kc)
        var_seed = float(_jackknife(loo_g.mean(1)))
        seed_part = float(_jackknife(loo_g).mean())
    elif not paired and kb >= 3 and kc >= 3:
        loo_b, loo_c = loo(e_b, d_b, kb), loo(e_c, d_c, kc)
        var_seed = float(_jackknife(loo_b.mean(1)) + _jackknife(loo_c.mean(1)))
        seed_part = float(_jackknife(loo_b).mean() + _jackknife(loo_c).mean())
    var_examples = max(float(g.var(ddof=1)) - seed_part, 0.0) / n
    return PairedGain(gain=float(g.mean()), delta=float(e_b.mean() - e_c.mean()), threshold=kappa * (div_b - div_c),
                      instances=kb if paired else min(kb, kc), paired=paired, var_seed=var_seed,
                      var_examples=var_examples, examples=n)


def u_variance_scale(k: int, share: float) -> float:
    """Var(U_K)/Var(U_2) for an order-2 U-statistic (Hoeffding 1948):
    Var(U_K) = 4ζ₁/K + 2(ζ₂ − 2ζ₁)/(K(K−1)), written with share = 2ζ₁/ζ₂ ∈ [0, 1] (1: the kernel is a sum
    of per-seed effects and Var ∝ 1/K; 0: pure pair interaction, Var ∝ 1/(K(K−1)))."""
    return 2.0 * share / k + 2.0 * (1.0 - share) / (k * (k - 1))


@dataclass(frozen=True)
class NoisePrior:
    """What the test assumes about a pair's seed noise before it has 3 instances to estimate its own:
    the variance of a 2-instance paired gain, var_pair, its decay with K instances (`share`, see
    u_variance_scale), and the weight of that belief in degrees of freedom."""
    var_pair: float
    df: float
    share: float = 1.0

    def variance(self, k: int) -> float:
        return self.var_pair * u_variance_scale(k, self.share)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "NoisePrior | None":
        return cls(float(data["var_pair"]), float(data["df"]), float(data.get("share", 1.0))) if data else None


def kernel_moments(probs: np.ndarray, labels: np.ndarray, members: int) -> tuple[float, float]:
    """(ζ₁, ζ₂) of one architecture's predicted M-ensemble error kernel h_ij over seeds, from K ≥ 4
    instances, by unbiased U-statistics: ζ₂ = E h_ij² − μ², ζ₁ = E h_ij·h_ik − μ² (i, j, k distinct),
    μ² estimated by the mean product over disjoint pairs. Clipped to 0 ≤ 2ζ₁ ≤ ζ₂, and ζ₂ floored
    at the jackknife bound K·Var̂(U_K)/2 so that chance never makes it tiny."""
    k = len(probs)
    if k < 4:
        raise ValueError(f"need at least 4 instances for a seed-noise estimate, got {k}")
    kappa = (members - 1) / members
    e, d = _kernel_parts(probs, one_hot(labels, probs.shape[-1]))
    e_mean, d_mean = e.mean(-1), d.mean(-1)
    h = 0.5 * (e_mean[:, None] + e_mean[None, :]) - kappa * d_mean
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    disjoint = [h[p] * h[q] for a, p in enumerate(pairs) for q in pairs[a + 1:] if not set(p) & set(q)]
    sharing = [h[i, j] * h[i, l] for i in range(k) for j in range(k) for l in range(j + 1, k) if i not in (j, l)]
    mu2 = float(np.mean(disjoint))
    zeta2 = float(np.mean([h[p] ** 2 for p in pairs])) - mu2
    zeta1 = float(np.mean(sharing)) - mu2
    loo = np.array([np.mean([h[p] for p in pairs if i not in p]) for i in range(k)])
    zeta2 = max(zeta2, k * float(_jackknife(loo)) / 2, 1e-30)
    return float(np.clip(zeta1, 0.0, zeta2 / 2)), zeta2


def kernel_variance(probs: np.ndarray, labels: np.ndarray, members: int) -> float:
    """ζ₂ = Var(h_ij), the seed variance of one architecture's 2-instance predicted M-ensemble error
    (kernel_moments)."""
    return kernel_moments(probs, labels, members)[1]


def noise_prior_from_instances(probs: np.ndarray, labels: np.ndarray, members: int, *,
                               max_df: float = 3.0) -> NoisePrior:
    """A prior for any pair, from K ≥ 4 instances of one program (the seed): twice its kernel
    variance, i.e. the two sides' seed noise as if uncorrelated — wider than a typical paired gain
    (seeds shared across architectures correlate positively), so a pair's own estimate, once it has
    3 instances, can only narrow it — decaying with K as that program's own U-statistic does.
    df = K − 1, capped: another architecture's noise differs."""
    zeta1, zeta2 = kernel_moments(probs, labels, members)
    return NoisePrior(var_pair=2.0 * zeta2, df=min(len(probs) - 1.0, max_df), share=2.0 * zeta1 / zeta2)


def pooled_variance(pg: PairedGain, prior: NoisePrior | None) -> tuple[float, float] | None:
    """Var(Ĝ) and its degrees of freedom: the seed part from the pair's own jackknife (K − 1 df) once
    it has 3 instances, from the prior (scaled to K by u_variance_scale, its own df) only before;
    plus the example part (n − 1 df); combined by Welch–Satterthwaite. None while neither exists.

    The prior never enters a look that has the pair's own estimate: it comes from another architecture
    and is off by a factor 0.9–20 on real neighbour pairs (benchmarks/acceptance_fidelity.py), so pooling
    it would either cost power (too wide) or the error rate (too narrow)."""
    if pg.var_seed is not None:
        var_seed, df_seed = pg.var_seed, pg.instances - 1.0
    elif prior is not None and prior.df > 0:
        var_seed, df_seed = prior.variance(pg.instances), prior.df
    else:
        return None
    total = var_seed + pg.var_examples
    if total <= 0:
        return None
    denom = var_seed ** 2 / df_seed + pg.var_examples ** 2 / max(pg.examples - 1, 1)
    return total, (total ** 2 / denom if denom > 0 else float("inf"))
