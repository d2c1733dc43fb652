"""docs/theory.md T3 fit: recover known parameters from synthetic curves (exact and Monte-Carlo),
clip p* sensibly, and reject degenerate measurements with a typed error."""
from __future__ import annotations

import numpy as np
import pytest

from theory import TheoryInputError, ensemble_error, optimal_ensemble_error, optimal_fraction
from theory.feature_bagging_fit import DegenerateFit, fit_feature_bagging

TRUE = {"e0": 0.20, "c": 0.08, "rho0": 0.7, "sigma2": 0.05}
P = np.array([1.0, 0.85, 0.7, 0.55, 0.4, 0.3])


def _model_points(e0, c, rho0, sigma2, p=P):
    rho = rho0 * p
    return e0 + c * (1 - p) ** 2, rho, np.full_like(p, sigma2), (1 - rho) * sigma2


def test_exact_curves_recover_the_parameters_for_every_model():
    err, rho, var, div = _model_points(**TRUE)
    for model in ("paper", "affine", "diversity"):
        fit = fit_feature_bagging(P, err, rho, var, diversity=div, model=model)
        assert fit.e0 == pytest.approx(TRUE["e0"], abs=1e-12)
        assert fit.c == pytest.approx(TRUE["c"], abs=1e-12)
        assert fit.sigma2 == pytest.approx(TRUE["sigma2"], abs=1e-12)
        assert fit.g == pytest.approx(TRUE["rho0"] * TRUE["sigma2"], abs=1e-12)
        assert fit.d1 == pytest.approx((1 - TRUE["rho0"]) * TRUE["sigma2"], abs=1e-12)
        assert max(fit.rmse().values()) < 1e-12
        for m in (5, 10, 20):  # p* and E_ens* equal T3's closed form
            assert fit.optimal_fraction(m) == pytest.approx(optimal_fraction(**TRUE, members=m), abs=1e-10)
            assert fit.optimal_ensemble_error(m) == pytest.approx(optimal_ensemble_error(**TRUE, members=m), abs=1e-10)
    assert fit_feature_bagging(P, err, rho, var, model="paper").rho0 == pytest.approx(TRUE["rho0"])


def test_affine_model_separates_intercept_from_slope():
    """rho(p) = 0.95 - 0.4 (1-p): the paper's rho0 p cannot express it; the affine fit recovers it."""
    rho = 0.95 - 0.4 * (1 - P)
    err = 0.3 + 0.1 * (1 - P) ** 2
    fit = fit_feature_bagging(P, err, rho, np.full_like(P, 0.1), model="affine")
    assert (fit.rho1, fit.rho_slope) == (pytest.approx(0.95), pytest.approx(0.4))
    assert fit.vertex(10) == pytest.approx(1 - 0.9 * 0.4 * 0.1 / (2 * 0.1))


def test_extension_intercepts_are_clipped_with_a_warning_and_p_star_kept():
    """A correlation that is concave in p puts the affine line above 1 at p = 1 (as on Adult)."""
    rho = 1.0 - 0.5 * (1 - P) ** 1.5
    err = 0.2 + 0.1 * (1 - P) ** 2
    var = np.full_like(P, 0.1)
    fit = fit_feature_bagging(P, err, rho, var, model="affine")
    slope = -np.polyfit(1 - P, rho, 1)[0]
    assert fit.rho1 == 1.0 and fit.warnings and "clipped" in fit.warnings[0]
    assert fit.d1 == 0.0 and fit.g == pytest.approx(slope * 0.1)
    assert fit.vertex(10) == pytest.approx(1 - 0.9 * slope * 0.1 / (2 * fit.c))
    div = (1 - rho) * 0.1
    dfit = fit_feature_bagging(P, err, rho, var, diversity=div, model="diversity")
    assert dfit.d1 == 0.0 and dfit.warnings
    assert dfit.residuals["diversity"].shape == P.shape      # residuals of the unclipped line
    with pytest.raises(DegenerateFit, match="rho0"):         # the paper's model stays strict
        fit_feature_bagging(P, err, rho, var, model="paper")
    clean = fit_feature_bagging(P, *_model_points(**TRUE)[:3], model="affine")
    assert clean.warnings == ()


def _simulate(p_values, *, members, n, seed, e0, c, rho0, sigma2):
    """Members built to follow the model: f_i = y + b(p) + sigma (sqrt(rho0 p) z0 + sqrt(1-rho0 p) z_i),
    b(p)^2 = e0 - sigma2 + c (1-p)^2. Returns per-p two-instance statistics and the M-ensemble error."""
    rng = np.random.default_rng(seed)
    y = rng.random(n)
    stats, ens = [], []
    for p in p_values:
        z0, z = rng.standard_normal(n), rng.standard_normal((members, n))
        noise = np.sqrt(sigma2) * (np.sqrt(rho0 * p) * z0 + np.sqrt(1 - rho0 * p) * z)
        f = y + np.sqrt(e0 - sigma2 + c * (1 - p) ** 2) + noise
        r = f[:2] - y  # dual-learner estimates, as the evaluator's statistics would give
        cen = r - r.mean(1, keepdims=True)
        var = (cen ** 2).mean(1)
        stats.append(((r ** 2).mean(), (cen[0] * cen[1]).mean() / np.sqrt(var[0] * var[1]), var.mean(),
                      0.5 * ((f[0] - f[1]) ** 2).mean()))
        ens.append(((f.mean(0) - y) ** 2).mean())
    return np.array(stats).T, np.array(ens)


@pytest.mark.parametrize("members", [5, 20])
def test_monte_carlo_dual_runs_recover_parameters_and_the_brute_force_optimum(members):
    (err, rho, var, div), _ = _simulate(P, members=2, n=60_000, seed=1, **TRUE)
    fit = fit_feature_bagging(P, err, rho, var, diversity=div, model="paper")
    assert fit.e0 == pytest.approx(TRUE["e0"], rel=0.03)
    assert fit.c == pytest.approx(TRUE["c"], rel=0.15)
    assert fit.rho0 == pytest.approx(TRUE["rho0"], abs=0.02)
    assert fit.sigma2 == pytest.approx(TRUE["sigma2"], rel=0.03)
    # brute force: grid-minimise the simulated M-member ensemble error
    grid = np.round(np.arange(0.3, 1.0001, 0.02), 4)
    _, ens = _simulate(grid, members=members, n=60_000, seed=2, **TRUE)
    smooth = np.polyval(np.polyfit(grid, ens, 2), grid)  # the simulated curve, de-noised
    p_brute = grid[np.argmin(smooth)]
    assert fit.optimal_fraction(members) == pytest.approx(p_brute, abs=0.04)
    assert fit.optimal_ensemble_error(members) == pytest.approx(smooth.min(), abs=0.004)
    for model in ("affine", "diversity"):
        other = fit_feature_bagging(P, err, rho, var, diversity=div, model=model)
        assert other.optimal_fraction(members) == pytest.approx(p_brute, abs=0.06)


def test_p_star_is_clipped_to_p_min_and_one():
    err, rho, var, div = _model_points(e0=0.2, c=0.001, rho0=0.9, sigma2=0.2)  # vertex far below 0
    fit = fit_feature_bagging(P, err, rho, var, diversity=div)
    assert fit.vertex(10) < 0
    assert fit.optimal_fraction(10, p_min=0.1) == 0.1
    assert fit.optimal_ensemble_error(10, p_min=0.1) == pytest.approx(fit.ensemble_error(0.1, 10))
    assert fit.optimal_fraction(1) == 1.0  # one member: no diversity to buy, keep every feature
    assert fit.dropout_gain(1) == 0.0
    with pytest.raises(TheoryInputError):
        fit.optimal_fraction(10, p_min=0.0)
    with pytest.raises(TheoryInputError):
        fit.optimal_fraction(10, p_min=1.5)
    zero_slope = fit_feature_bagging(P, err, np.full_like(P, 0.8), var, model="affine")
    assert zero_slope.g == pytest.approx(0, abs=1e-12) and zero_slope.optimal_fraction(10) == pytest.approx(1.0)


def test_t2_check_of_p_star_against_p_one():
    err, rho, var, div = _model_points(**TRUE)
    fit = fit_feature_bagging(P, err, rho, var)
    t2 = fit.t2_check(10)
    assert t2["p_star"] < 1
    assert t2["delta"] < 0                     # the p* member is worse on its own ...
    assert t2["threshold"] < t2["delta"]       # ... but more diverse, so T2 accepts it
    assert t2["accepts"]
    measured = ensemble_error(fit.member_error(1.0), fit.diversity(1.0), 10) - \
        ensemble_error(fit.member_error(t2["p_star"]), fit.diversity(t2["p_star"]), 10)
    assert t2["predicted_improvement"] == pytest.approx(measured)
    assert t2["predicted_improvement"] == pytest.approx(fit.dropout_gain(10))


@pytest.mark.parametrize("change, match", [
    ({"err": 0.3 - 0.05 * (1 - P) ** 2}, "curvature"),          # c < 0: error falls as features drop
    ({"err": np.full_like(P, 0.3)}, "curvature"),                 # c = 0: flat
    ({"rho": np.minimum(1.0, 0.9 + 0.2 * P)}, "rho0"),           # correlation >> proportional: rho0 > 1
    ({"rho": -0.5 * P}, "rho0"),                                  # rho0 < 0
])
def test_degenerate_inputs_raise_a_clear_error(change, match):
    err, rho, var, _ = _model_points(**TRUE)
    args = {"err": err, "rho": rho} | change
    with pytest.raises(DegenerateFit, match=match):
        fit_feature_bagging(P, args["err"], args["rho"], var, model="paper")


def test_malformed_inputs_raise_typed_errors():
    err, rho, var, div = _model_points(**TRUE)
    with pytest.raises(DegenerateFit, match="distinct"):
        fit_feature_bagging([0.5, 0.5], err[:2], rho[:2], var[:2])
    with pytest.raises(TheoryInputError, match="lengths"):
        fit_feature_bagging(P, err[:-1], rho, var)
    with pytest.raises(TheoryInputError, match=r"\(0, 1\]"):
        fit_feature_bagging(P * 2, err, rho, var)
    with pytest.raises(TheoryInputError, match="finite"):
        fit_feature_bagging(P, np.r_[err[:-1], np.nan], rho, var)
    with pytest.raises(TheoryInputError, match="needs the measured diversity"):
        fit_feature_bagging(P, err, rho, var, model="diversity")
    with pytest.raises(TheoryInputError, match="model must be"):
        fit_feature_bagging(P, err, rho, var, model="cubic")
    with pytest.raises(DegenerateFit, match="variance"):
        fit_feature_bagging(P, err, rho, np.zeros_like(P))
    with pytest.raises(DegenerateFit, match="does not decorrelate"):
        fit_feature_bagging(P, err, 0.6 + 0.3 * (1 - P), var, model="affine")
    with pytest.raises(DegenerateFit, match="does not decorrelate"):
        fit_feature_bagging(P, err, rho, var, diversity=0.02 * P, model="diversity")
    assert issubclass(DegenerateFit, TheoryInputError)
