"""T3 checks: grid-minimise ensemble error of simulated feature-bagged members."""

from __future__ import annotations

import numpy as np
import pytest

from theory import (
    TheoryInputError,
    base_diversity_gain,
    dropout_gain,
    optimal_ensemble_error,
    optimal_fraction,
    u_curve_error,
)

GRID = np.round(np.arange(0.05, 1.0 + 1e-9, 0.005), 6)


def _simulated_curve(params, *, n=200_000, seed=0):
    """Ensemble error for each p on GRID (and member error at p = 1), from simulated members.

    Member i at fraction p predicts y + b(p) + sigma (sqrt(rho0 p) z0 + sqrt(1 - rho0 p) z_i),
    with b(p)^2 = e0 - sigma2 + c (1-p)^2, so error(p), rho(p), sigma^2(p) are the model's.
    The same z's are reused across p (common random numbers) so the curve is smooth in p; the
    members' average is formed from the sample mean of the z_i (linear, so exact).
    """
    e0, c, rho0, s2, m = (params[k] for k in ("e0", "c", "rho0", "sigma2", "members"))
    rng = np.random.default_rng(seed)
    y = rng.random(n)
    z0 = rng.standard_normal(n)
    z = rng.standard_normal((m, n))
    z_bar = z.mean(axis=0)

    def predictions(p, own):
        bias = np.sqrt(e0 - s2 + c * (1 - p) ** 2)
        return y + bias + np.sqrt(s2) * (np.sqrt(rho0 * p) * z0 + np.sqrt(1 - rho0 * p) * own)

    ens = np.array([((predictions(p, z_bar) - y) ** 2).mean() for p in GRID])
    member_at_one = float(((predictions(1.0, z) - y) ** 2).mean())
    return ens, member_at_one


INTERIOR = [
    {"e0": 1.2, "c": 1.0, "rho0": 0.9, "sigma2": 1.0, "members": 10},  # p* ~ 0.6
    {"e0": 0.5, "c": 0.5, "rho0": 0.6, "sigma2": 0.4, "members": 5},  # p* ~ 0.8
    {"e0": 2.0, "c": 2.0, "rho0": 0.95, "sigma2": 1.8, "members": 30},  # p* ~ 0.59
]


@pytest.mark.parametrize("params", INTERIOR)
def test_optimum_matches_grid_minimum_of_simulated_curve(params):
    ens, member_at_one = _simulated_curve(params)
    p_emp = GRID[np.argmin(ens)]
    p_star = optimal_fraction(**params)
    assert 0.05 < p_star < 1.0  # these cases are not clipped
    # tolerance: 0.02 absolute in p (grid step 0.005) -- also the paper's "within 5 %" claim
    assert p_emp == pytest.approx(p_star, abs=0.02)
    assert abs(p_emp - p_star) / p_star <= 0.05
    # tolerance: 2 % relative on the minimum error and on the whole U curve
    assert optimal_ensemble_error(**params) == pytest.approx(ens.min(), rel=0.02)
    np.testing.assert_allclose(u_curve_error(GRID, **params), ens, rtol=0.02)
    # gains read off the simulated curve; tolerance: 5 % relative
    i_one = len(GRID) - 1
    assert dropout_gain(**{k: params[k] for k in ("c", "rho0", "sigma2", "members")}) == (
        pytest.approx(ens[i_one] - ens.min(), rel=0.05)
    )
    assert base_diversity_gain(
        rho0=params["rho0"], sigma2=params["sigma2"], members=params["members"]
    ) == pytest.approx(member_at_one - ens[i_one], rel=0.05)


def test_clipped_optimum_sits_at_p_min():
    params = {"e0": 1.0, "c": 0.1, "rho0": 0.9, "sigma2": 1.0, "members": 10}
    ens, _ = _simulated_curve(params)
    p_min = 0.3
    feasible = GRID >= p_min - 1e-9
    p_emp = GRID[feasible][np.argmin(ens[feasible])]
    assert optimal_fraction(**params, p_min=p_min) == pytest.approx(p_emp, abs=1e-9)  # exact
    # tolerance: 2 % relative on the error at the clipped optimum
    assert optimal_ensemble_error(**params, p_min=p_min) == pytest.approx(
        ens[feasible].min(), rel=0.02
    )


@pytest.mark.parametrize(("rho0", "sigma2"), [(0.0, 1.0), (0.7, 0.0)])
def test_no_correlation_or_variance_means_no_dropout(rho0, sigma2):
    params = {"e0": 1.5, "c": 0.5, "rho0": rho0, "sigma2": sigma2, "members": 8}
    ens, _ = _simulated_curve(params, n=20_000)
    assert GRID[np.argmin(ens)] == 1.0  # exact: the simulated curve is decreasing in p
    assert optimal_fraction(**params) == 1.0


def test_larger_ensembles_tolerate_more_drop():
    base = {"e0": 1.2, "c": 1.0, "rho0": 0.9, "sigma2": 1.0}
    p_small = GRID[np.argmin(_simulated_curve({**base, "members": 2})[0])]
    p_large = GRID[np.argmin(_simulated_curve({**base, "members": 40})[0])]
    assert p_large < p_small  # exact ordering; the two optima are ~0.3 apart
    assert optimal_fraction(**base, members=40) < optimal_fraction(**base, members=2)


def test_u_curve_accepts_scalars_and_arrays():
    params = {"e0": 1.2, "c": 1.0, "rho0": 0.9, "sigma2": 1.0, "members": 10}
    assert isinstance(u_curve_error(0.5, **params), float)
    assert u_curve_error(np.array([[0.5, 1.0]]), **params).shape == (1, 2)


OK = {"e0": 1.0, "c": 1.0, "rho0": 0.5, "sigma2": 1.0, "members": 4}
BAD_CALLS = [
    lambda: u_curve_error(0.5, **{**OK, "c": 0.0}),
    lambda: u_curve_error(0.5, **{**OK, "c": -1.0}),
    lambda: u_curve_error(0.5, **{**OK, "rho0": 1.2}),
    lambda: u_curve_error(0.5, **{**OK, "rho0": -0.1}),
    lambda: u_curve_error(0.5, **{**OK, "sigma2": -1.0}),
    lambda: u_curve_error(0.5, **{**OK, "members": 0}),
    lambda: u_curve_error(1.5, **OK),
    lambda: u_curve_error(np.array([0.5, -0.1]), **OK),
    lambda: optimal_fraction(**OK, p_min=0.0),
    lambda: optimal_fraction(**OK, p_min=1.5),
    lambda: optimal_ensemble_error(**{**OK, "c": 0.0}),
    lambda: dropout_gain(c=0.0, rho0=0.5, sigma2=1.0, members=3),
    lambda: base_diversity_gain(rho0=2.0, sigma2=1.0, members=3),
]


@pytest.mark.parametrize("call", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()
