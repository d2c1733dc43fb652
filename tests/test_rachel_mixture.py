"""RACHEL mixture weights (docs/theory.md T5): the softmax-logit fit reaches the convex optimum found by
direct solvers, convexity holds in w (not in the softmax logits), and the safety net fires on a
constructed case."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

from agent.proposers.rachel.mixture import (MixtureConfig, MixtureError, ensemble_cross_entropy, fit_mixture,
                                            log_probs, safety_net_fires)


def _members(rng: np.random.Generator, m: int, n: int = 300, c: int = 5, quality=None):
    """Synthetic member logits of varying quality: signal on the true class plus noise."""
    y = rng.integers(0, c, n)
    quality = quality if quality is not None else rng.uniform(0.2, 2.5, m)
    logits = rng.normal(0, 1.0, (m, n, c))
    logits[:, np.arange(n), y] += np.asarray(quality)[:, None]
    return log_probs(np.exp(logits) / np.exp(logits).sum(2, keepdims=True)), y


def _scipy_simplex(logits, y, penalty=None):
    """Direct solver: SLSQP on w with w >= 0, sum w = 1 (the convex problem itself)."""
    m = len(logits)
    pen = np.zeros(m) if penalty is None else penalty
    best = None
    for start in [np.full(m, 1 / m), np.eye(m)[0] * 0.9 + 0.1 / m]:
        res = minimize(lambda w: ensemble_cross_entropy(logits, y, w) + w @ pen, start, method="SLSQP",
                       bounds=[(0, 1)] * m, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                       options={"ftol": 1e-13, "maxiter": 500})
        if best is None or res.fun < best.fun:
            best = res
    return best


@pytest.mark.parametrize("seed,m", [(0, 2), (1, 3), (2, 4), (3, 6)])
def test_fit_matches_scipy_on_the_simplex(seed, m):
    logits, y = _members(np.random.default_rng(seed), m)
    fit = fit_mixture(logits, y)
    ref = _scipy_simplex(logits, y)
    assert fit.loss == pytest.approx(ref.fun, abs=1e-6)
    assert fit.loss <= ref.fun + 1e-7
    assert np.isclose(fit.weights.sum(), 1) and (fit.weights >= 0).all()
    # the optimum value is unique; weights are too wherever the members are not redundant
    np.testing.assert_allclose(fit.weights, ref.x, atol=2e-3)


@pytest.mark.slow
def test_fit_beats_every_point_of_an_exhaustive_grid():
    rng = np.random.default_rng(7)
    logits2, y2 = _members(rng, 2)
    grid2 = min(ensemble_cross_entropy(logits2, y2, np.array([a, 1 - a])) for a in np.linspace(0, 1, 501))
    assert fit_mixture(logits2, y2).loss <= grid2 + 1e-9
    assert fit_mixture(logits2, y2).loss == pytest.approx(grid2, abs=1e-5)
    logits3, y3 = _members(rng, 3)
    steps = np.linspace(0, 1, 51)
    grid3 = min(ensemble_cross_entropy(logits3, y3, np.array([a, b, 1 - a - b]))
                for a, b in itertools.product(steps, steps) if a + b <= 1 + 1e-12)
    assert fit_mixture(logits3, y3).loss <= grid3 + 1e-9
    assert fit_mixture(logits3, y3).loss == pytest.approx(grid3, abs=5e-3)


def test_boundary_optimum_is_approached_when_a_member_is_useless():
    """A member that is pure noise gets (almost) zero weight: the optimum sits on the boundary."""
    rng = np.random.default_rng(3)
    logits, y = _members(rng, 3, quality=[2.0, 1.5, 0.0])
    logits[2] = log_probs(np.exp(rng.normal(0, 3, logits[2].shape)) /
                          np.exp(rng.normal(0, 3, logits[2].shape)).sum(1, keepdims=True))
    fit = fit_mixture(logits, y)
    ref = _scipy_simplex(logits, y)
    assert fit.weights[2] < 0.02
    assert fit.loss == pytest.approx(ref.fun, abs=1e-5)


def test_penalised_fit_matches_scipy_and_shifts_weight_away():
    logits, y = _members(np.random.default_rng(11), 3, quality=[1.5, 1.6, 1.4])
    penalty = np.array([0.0, 0.3, 0.0])
    fit = fit_mixture(logits, y, penalty=penalty)
    assert fit.loss == pytest.approx(_scipy_simplex(logits, y, penalty).fun, abs=1e-6)
    assert fit.weights[1] < fit_mixture(logits, y).weights[1]
    assert fit.loss == pytest.approx(fit.cross_entropy + fit.weights @ penalty)


def test_objective_is_convex_in_w_but_not_in_the_softmax_logits():
    logits, y = _members(np.random.default_rng(5), 3)
    rng = np.random.default_rng(0)
    for _ in range(100):  # convex in w: f(midpoint) <= mean of the endpoint values
        a, b = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3))
        mid = ensemble_cross_entropy(logits, y, (a + b) / 2)
        assert mid <= (ensemble_cross_entropy(logits, y, a) + ensemble_cross_entropy(logits, y, b)) / 2 + 1e-12
    # not convex in theta: along theta = (t, 0, 0) the loss is bounded and non-constant, so somewhere
    # a midpoint lies above its chord
    def f(t):
        w = np.exp([t, 0.0, 0.0]) / np.exp([t, 0.0, 0.0]).sum()
        return ensemble_cross_entropy(logits, y, w)
    ts = np.linspace(-12, 12, 25)
    violations = [f((s + t) / 2) - (f(s) + f(t)) / 2 for s, t in itertools.combinations(ts, 2)]
    assert max(violations) > 1e-4


def test_log_probs_equal_logits_for_the_mixture():
    """Per-example shifts cancel: mixing log-softmax outputs equals mixing raw logits."""
    rng = np.random.default_rng(2)
    raw = rng.normal(0, 2, (3, 50, 4))
    y = rng.integers(0, 4, 50)
    lp = log_probs(np.exp(raw) / np.exp(raw).sum(2, keepdims=True))
    w = np.array([0.2, 0.5, 0.3])
    assert ensemble_cross_entropy(raw, y, w) == pytest.approx(ensemble_cross_entropy(lp, y, w), abs=1e-9)


def test_single_member_and_bad_inputs():
    logits, y = _members(np.random.default_rng(0), 1)
    fit = fit_mixture(logits, y)
    assert fit.weights.tolist() == [1.0]
    with pytest.raises(MixtureError):
        fit_mixture(logits[0], y)
    with pytest.raises(MixtureError):
        fit_mixture(logits, y[:-1])
    bad = logits.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(MixtureError):
        fit_mixture(bad, y)
    with pytest.raises(MixtureError):
        fit_mixture(logits, y + 10)
    with pytest.raises(MixtureError):
        fit_mixture(np.concatenate([logits, logits]), y, penalty=np.ones(3))


def test_safety_net_rule():
    assert not safety_net_fires(0.50, None)
    assert not safety_net_fires(0.509, 0.50)
    assert safety_net_fires(0.5101, 0.50)
    assert not safety_net_fires(0.40, 0.50)
    assert safety_net_fires(float("nan"), 0.5)
    assert safety_net_fires(0.52, 0.50, tolerance=0.01) and not safety_net_fires(0.52, 0.50, tolerance=0.05)


def test_safety_net_fires_on_a_constructed_case_only_with_a_truncated_fit():
    """A confidently wrong candidate added to a good ensemble: the paper's truncated fit (10 Adam
    steps from uniform weights) leaves its weight high and the objective jumps by > 0.01, so the
    net fires; the converged fit drives its weight to ~0 and cannot be worse than before."""
    rng = np.random.default_rng(4)
    good, y = _members(rng, 2, quality=[2.5, 2.2])
    wrong = np.full((1, *good.shape[1:]), -20.0)
    wrong[0, np.arange(len(y)), (y + 1) % good.shape[2]] = 0.0   # all mass on a wrong class
    previous = fit_mixture(good, y).loss
    with_bad = np.concatenate([good, wrong])
    truncated = fit_mixture(with_bad, y, config=MixtureConfig(method="adam", steps=10, lr=0.05)).loss
    converged = fit_mixture(with_bad, y).loss
    assert safety_net_fires(truncated, previous)
    assert truncated > previous + 0.5
    assert converged <= previous + 1e-6
    assert not safety_net_fires(converged, previous)
