"""docs/theory.md T3: least-squares fit of the feature-bagging model from dual-learner runs.

Input: for a few feature fractions p_j, the statistics of two (or more) instances trained at p_j
(mean member error E_j, correlation rho_j, prediction variance sigma2_j, optionally the measured
diversity D_j). Output: the model's parameters, residuals, and what follows from them (p*, E_ens*,
the gain decomposition, the T2 check of p* against p = 1).

Three models, all linear least squares and all of the form

    E(p) = e0 + c (1-p)^2,     D(p) = D1 + g (1-p)        (D = (1 - rho) sigma2, T1)
    E_ens(p) = E(p) - ((M-1)/M) D(p),   p* = 1 - ((M-1)/M) g / (2c)   (clipped to [p_min, 1])

- "paper"  (docs/theory.md T3 as stated): rho(p) = rho0 p through the origin, sigma2 constant;
  so D1 = (1-rho0) sigma2 and g = rho0 sigma2. Evaluated with theory.feature_bagging.
- "affine" (beyond the paper): rho(p) = rho1 - b (1-p), sigma2 constant: the correlation at
  p = 1 need not equal its slope; D1 = (1-rho1) sigma2, g = b sigma2.
- "diversity" (beyond the paper): D(p) fitted directly, so a variance that shrinks with p is
  absorbed instead of assumed away.

Only the slope g moves p*; the intercept D1 is the base diversity gain. For the two extension
models an intercept that the least-squares line puts just outside its domain (rho1 > 1 or
D1 < 0, from curvature the line cannot follow) is clipped to the boundary and reported in
`warnings`: it changes E_ens*, never p*. The paper model's rho0 outside [0, 1] is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from theory import _checks as chk
from theory import feature_bagging as fb
from theory.acceptance import accepts
from theory.errors import TheoryInputError

Model = Literal["paper", "affine", "diversity"]
MODELS: tuple[str, ...] = ("paper", "affine", "diversity")


class DegenerateFit(TheoryInputError):
    """The measurements do not support the model: no U-curve (c <= 0), rho0 outside [0, 1],
    correlation rising as features are dropped, zero variance, or too few distinct p."""


def _lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return coef


@dataclass(frozen=True, kw_only=True)
class FeatureBaggingFit:
    """Fitted T3 parameters. `rho0` is set for the paper model only; rho1/rho_slope for
    paper and affine; d1/g (the diversity line) for every model."""
    model: str
    e0: float
    c: float
    sigma2: float
    d1: float
    g: float
    rho1: float | None = None
    rho_slope: float | None = None
    warnings: tuple[str, ...] = ()
    p: np.ndarray = field(repr=False)
    residuals: dict[str, np.ndarray] = field(repr=False)

    @property
    def rho0(self) -> float | None:
        return self.rho1 if self.model == "paper" else None

    def rmse(self) -> dict[str, float]:
        return {k: float(np.sqrt(np.mean(v ** 2))) for k, v in self.residuals.items()}

    def member_error(self, p: float | np.ndarray) -> float | np.ndarray:
        arr = np.asarray(p, float)
        out = self.e0 + self.c * (1 - arr) ** 2
        return float(out) if out.ndim == 0 else out

    def diversity(self, p: float | np.ndarray) -> float | np.ndarray:
        arr = np.asarray(p, float)
        out = self.d1 + self.g * (1 - arr)
        return float(out) if out.ndim == 0 else out

    def ensemble_error(self, p: float | np.ndarray, members: int) -> float | np.ndarray:
        """E_ens(p) for an M-member ensemble (docs/theory.md T3 with the fitted line for D)."""
        m = chk.members(members)
        if self.model == "paper":
            return fb.u_curve_error(p, e0=self.e0, c=self.c, rho0=self.rho1, sigma2=self.sigma2, members=m)
        arr = np.asarray(chk.finite_array(p, "p"))
        out = self.member_error(arr) - chk.shrink(m) * self.diversity(arr)
        return float(out) if np.ndim(out) == 0 else out

    def vertex(self, members: int) -> float:
        """The unclipped minimiser 1 - ((M-1)/M) g / (2c)."""
        return 1.0 - chk.shrink(chk.members(members)) * self.g / (2.0 * self.c)

    def optimal_fraction(self, members: int, *, p_min: float = 0.05) -> float:
        """p*, the vertex clipped to [p_min, 1] (exact: E_ens is a convex parabola in p)."""
        if self.model == "paper":
            return fb.optimal_fraction(e0=self.e0, c=self.c, rho0=self.rho1,
                                       sigma2=self.sigma2, members=members, p_min=p_min)
        lo = chk.unit(p_min, "p_min")
        if lo <= 0:
            raise TheoryInputError(f"p_min must be > 0, got {lo}")
        return float(min(1.0, max(lo, self.vertex(members))))

    def optimal_ensemble_error(self, members: int, *, p_min: float = 0.05) -> float:
        return float(self.ensemble_error(self.optimal_fraction(members, p_min=p_min), members))

    def base_diversity_gain(self, members: int) -> float:
        """((M-1)/M) D(1): the ensemble's gain over E0 at p = 1."""
        if self.model == "paper":
            return fb.base_diversity_gain(rho0=self.rho1, sigma2=self.sigma2, members=members)
        return chk.shrink(chk.members(members)) * self.d1

    def dropout_gain(self, members: int) -> float:
        """[((M-1)/M) g]^2 / (4c): the gain of the unclipped p* over p = 1."""
        if self.model == "paper":
            return fb.dropout_gain(c=self.c, rho0=self.rho1, sigma2=self.sigma2, members=members)
        return (chk.shrink(chk.members(members)) * self.g) ** 2 / (4.0 * self.c)

    def t2_check(self, members: int, *, p_min: float = 0.05) -> dict[str, float | bool]:
        """docs/theory.md T2 for candidate p* against baseline p = 1, on the fitted model:
        Delta = E(1) - E(p*) must exceed ((M-1)/M)(D(1) - D(p*)). With g > 0 the threshold is
        negative (p* is more diverse), so a worse single model can be accepted."""
        m = chk.members(members)
        p_star = self.optimal_fraction(m, p_min=p_min)
        delta = self.member_error(1.0) - self.member_error(p_star)
        threshold = chk.shrink(m) * (self.diversity(1.0) - self.diversity(p_star))
        return {"p_star": p_star, "delta": float(delta), "threshold": float(threshold),
                "predicted_improvement": float(delta - threshold),
                "accepts": bool(accepts(delta, threshold))}

    def summary(self, members: int, *, p_min: float = 0.05) -> dict:
        return {"model": self.model, "e0": self.e0, "c": self.c, "rho0": self.rho0, "rho1": self.rho1,
                "rho_slope": self.rho_slope, "sigma2": self.sigma2, "d1": self.d1, "g": self.g,
                "members": members, "p_star": self.optimal_fraction(members, p_min=p_min),
                "vertex": self.vertex(members), "e_ens_star": self.optimal_ensemble_error(members, p_min=p_min),
                "base_diversity_gain": self.base_diversity_gain(members),
                "dropout_gain": self.dropout_gain(members), "t2": self.t2_check(members, p_min=p_min),
                "rmse": self.rmse(), "warnings": list(self.warnings), "p": self.p.tolist(),
                "residuals": {k: v.tolist() for k, v in self.residuals.items()}}


def _inputs(p, member_error, correlation, variance, diversity):
    arrays = {"p": chk.finite_array(p, "p").ravel(),
              "member_error": chk.finite_array(member_error, "member_error").ravel(),
              "correlation": chk.finite_array(correlation, "correlation").ravel(),
              "variance": chk.finite_array(variance, "variance").ravel()}
    if diversity is not None:
        arrays["diversity"] = chk.finite_array(diversity, "diversity").ravel()
    n = len(arrays["p"])
    if any(len(v) != n for v in arrays.values()):
        raise TheoryInputError(f"all inputs need one value per run; lengths {[len(v) for v in arrays.values()]}")
    if np.any((arrays["p"] <= 0) | (arrays["p"] > 1)):
        raise TheoryInputError("feature fractions p must lie in (0, 1]")
    if np.any(arrays["member_error"] < 0) or np.any(arrays["variance"] < 0):
        raise TheoryInputError("member_error and variance must be >= 0")
    if np.any(np.abs(arrays["correlation"]) > 1):
        raise TheoryInputError("correlations must lie in [-1, 1]")
    if len(np.unique(arrays["p"])) < 2:
        raise DegenerateFit(f"need runs at >= 2 distinct feature fractions, got {np.unique(arrays['p']).tolist()}")
    return arrays


def fit_feature_bagging(p, member_error, correlation, variance, *, diversity=None,
                        model: Model = "paper") -> FeatureBaggingFit:
    """Least-squares fit of the T3 model (see the module docstring) to runs at fractions `p`.

    Each argument has one value per run (several runs may share a p). Raises DegenerateFit when
    the fitted parameters leave the model's domain, TheoryInputError on malformed input.
    """
    if model not in MODELS:
        raise TheoryInputError(f"model must be one of {MODELS}, got {model!r}")
    a = _inputs(p, member_error, correlation, variance, diversity)
    x, q = a["p"], 1.0 - a["p"]
    e0, c = _lstsq(np.stack([np.ones_like(q), q ** 2], 1), a["member_error"])
    if not c > 0:
        raise DegenerateFit(f"fitted curvature c = {c:.3g} <= 0: member error does not rise as features "
                            "are dropped, so there is no U-curve to minimise (keep p = 1)")
    if e0 < 0:
        raise DegenerateFit(f"fitted error at p = 1, e0 = {e0:.3g}, is negative")
    residuals = {"member_error": a["member_error"] - (e0 + c * q ** 2)}
    sigma2 = float(a["variance"].mean())
    residuals["variance"] = a["variance"] - sigma2
    rho1 = slope = None
    warnings: list[str] = []
    if model == "paper":
        rho0 = float(np.dot(a["correlation"], x) / np.dot(x, x))
        if not 0.0 <= rho0 <= 1.0:
            raise DegenerateFit(f"fitted rho0 = {rho0:.4f} is outside [0, 1]: correlation is not proportional "
                                "to p on these runs (try model='affine' or 'diversity')")
        residuals["correlation"] = a["correlation"] - rho0 * x
        rho1 = slope = rho0
    elif model == "affine":
        rho1, neg = _lstsq(np.stack([np.ones_like(q), q], 1), a["correlation"])
        rho1, slope = float(rho1), float(-neg)
        if rho1 < -1.0:
            raise DegenerateFit(f"fitted correlation at p = 1, {rho1:.4f}, is below -1")
        residuals["correlation"] = a["correlation"] - (rho1 - slope * q)
        if rho1 > 1.0:
            warnings.append(f"correlation line reaches {rho1:.4f} at p = 1; clipped to 1 (p* unaffected)")
            rho1 = 1.0
    if model == "diversity":
        if diversity is None:
            raise TheoryInputError("model='diversity' needs the measured diversity per run")
        d1, g = (float(v) for v in _lstsq(np.stack([np.ones_like(q), q], 1), a["diversity"]))
    else:
        if not sigma2 > 0:
            raise DegenerateFit("prediction variance sigma2 is 0: the members predict a constant")
        d1, g = (1.0 - rho1) * sigma2, slope * sigma2
    if not g >= 0:
        raise DegenerateFit(f"diversity falls as features are dropped (slope {g:.3g} < 0): "
                            "feature bagging does not decorrelate these members")
    if diversity is not None:
        residuals["diversity"] = a["diversity"] - (d1 + g * q)
    if d1 < 0:
        warnings.append(f"diversity line reaches {d1:.3g} at p = 1; clipped to 0 (p* unaffected)")
        d1 = 0.0
    return FeatureBaggingFit(model=model, e0=float(e0), c=float(c), sigma2=sigma2, d1=float(d1), g=float(g),
                             rho1=rho1, rho_slope=slope, warnings=tuple(warnings), p=x, residuals=residuals)
