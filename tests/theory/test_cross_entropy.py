"""T6.3 / T6.4 checks: Bernoulli cycles and per-token error simulation."""

from __future__ import annotations

import numpy as np
import pytest

from theory import (
    TheoryInputError,
    elite_probability_lower_bound,
    fit_token_error_rate,
    validity_probability,
)


def _elite_found_by_cycle(rng, rates, runs=200_000):
    """Fraction of runs that generated at least one elite within 1..t cycles, for each t."""
    hits = rng.random((runs, len(rates))) < np.asarray(rates)[None]
    return np.logical_or.accumulate(hits, axis=1).mean(axis=0)


def test_elite_bound_is_tight_at_constant_rate():
    rng = np.random.default_rng(1)
    rho0, cycles = 0.15, 12
    found = _elite_found_by_cycle(rng, [rho0] * cycles)
    for t in range(1, cycles + 1):
        # tolerance: 0.005 absolute (MC SE <= 0.0012 with 2e5 runs)
        assert elite_probability_lower_bound(rho0, t) == pytest.approx(found[t - 1], abs=0.005)
    assert elite_probability_lower_bound(rho0, 0) == 0.0  # exact: nothing found before cycle 1


def test_elite_bound_holds_when_rate_grows():
    rng = np.random.default_rng(2)
    rho0, cycles = 0.05, 15
    rates = [min(1.0, rho0 + 0.03 * k) for k in range(cycles)]  # CE never lowers the elite rate
    found = _elite_found_by_cycle(rng, rates)
    for t in range(1, cycles + 1):
        # tolerance: bound may exceed the simulation by at most 0.005 (MC noise)
        assert elite_probability_lower_bound(rho0, t) <= found[t - 1] + 0.005


def _simulate_validity(rng, eps, tokens, programs):
    """First-order Markov error model: a program stays valid until some token breaks it."""
    if tokens == 0:
        return 1.0
    broken = rng.random((programs, tokens)) < eps
    return float((~broken.any(axis=1)).mean())


@pytest.mark.parametrize("tokens", [0, 10, 50, 200])
def test_validity_probability_matches_simulation(tokens):
    rng = np.random.default_rng(tokens)
    eps = 0.004
    rate = _simulate_validity(rng, eps, tokens, 50_000)
    # tolerance: 0.008 absolute (MC SE <= 0.0023 with 5e4 programs)
    assert validity_probability(eps, tokens) == pytest.approx(rate, abs=0.008)


def test_delta_is_valid_more_often_than_full_code():
    rng = np.random.default_rng(4)
    eps, delta_tokens, full_tokens = 0.003, 40, 400
    assert _simulate_validity(rng, eps, delta_tokens, 20_000) > _simulate_validity(
        rng, eps, full_tokens, 20_000
    )
    assert validity_probability(eps, delta_tokens) > validity_probability(eps, full_tokens)


@pytest.mark.parametrize("eps", [0.001, 0.003, 0.02])
def test_fit_recovers_simulated_token_error_rate(eps):
    rng = np.random.default_rng(int(eps * 1e4))
    lengths = [20, 60, 150, 300]
    programs = [12_000, 8_000, 6_000, 4_000]
    rates = [_simulate_validity(rng, eps, L, n) for L, n in zip(lengths, programs)]
    fitted = fit_token_error_rate(rates, lengths, weights=programs)
    # tolerance: 8 % relative (MLE SE here is <= 2 %, largest at eps = 0.001)
    assert fitted == pytest.approx(eps, rel=0.08)


def test_fit_is_the_grid_maximum_of_the_binomial_likelihood():
    rates = np.array([0.95, 0.7, 0.41, 0.0])  # a rate of exactly 0 must not break the fit
    lengths = np.array([10.0, 60.0, 150.0, 2000.0])
    weights = np.array([100.0, 80.0, 60.0, 5.0])
    grid = np.linspace(1e-5, 0.05, 50_001)
    log_p = lengths[None] * np.log1p(-grid[:, None])
    loglik = (weights * (rates * log_p + (1 - rates) * np.log(-np.expm1(log_p)))).sum(axis=1)
    best = grid[np.argmax(loglik)]
    # tolerance: 2 grid steps (grid step 1e-6)
    assert fit_token_error_rate(rates, lengths, weights) == pytest.approx(best, abs=2e-6)


def test_fit_degenerate_rates():
    assert fit_token_error_rate([1.0, 1.0], [10, 50]) == 0.0  # exact: never broken
    assert fit_token_error_rate([0.0, 0.0], [10, 50]) == 1.0  # exact: always broken


BAD_CALLS = [
    lambda: elite_probability_lower_bound(1.5, 3),
    lambda: elite_probability_lower_bound(-0.1, 3),
    lambda: elite_probability_lower_bound(0.2, -1),
    lambda: validity_probability(1.2, 10),
    lambda: validity_probability(0.1, -5),
    lambda: fit_token_error_rate([], []),
    lambda: fit_token_error_rate([0.5, 0.6], [10]),
    lambda: fit_token_error_rate([1.5], [10]),
    lambda: fit_token_error_rate([0.5], [-10]),
    lambda: fit_token_error_rate([0.5], [10], weights=[-1]),
    lambda: fit_token_error_rate([0.5], [0]),
]


@pytest.mark.parametrize("call", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()
