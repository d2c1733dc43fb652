"""T2 checks: the acceptance decision against simulated M-member ensembles of both architectures."""

from __future__ import annotations

import numpy as np
import pytest

from theory import (
    TheoryInputError,
    acceptance_threshold,
    accepts,
    diversity,
    predicted_improvement,
    search_cost,
    variance_stable_threshold,
)

N_EXAMPLES = 50_000


def _simulated_ensemble_error(sim, rng, members, arch):
    preds, y = sim(rng, members=members, n=N_EXAMPLES, **arch)
    return float(((preds.mean(axis=0) - y) ** 2).sum(axis=1).mean())


def _random_arch(rng, sigma2=None):
    return {
        "bias2": float(rng.uniform(0.0, 0.5)),
        "sigma2": float(rng.uniform(0.2, 2.0)) if sigma2 is None else sigma2,
        "rho": float(rng.uniform(0.0, 0.95)),
    }


def _decide(members, base, cand):
    delta = (base["bias2"] + base["sigma2"]) - (cand["bias2"] + cand["sigma2"])  # E_a - E_a'
    d_base = diversity(base["sigma2"], base["rho"])
    d_cand = diversity(cand["sigma2"], cand["rho"])
    threshold = acceptance_threshold(members, d_base, d_cand)
    gap = predicted_improvement(
        members, base["bias2"] + base["sigma2"], d_base, cand["bias2"] + cand["sigma2"], d_cand
    )
    return accepts(delta, threshold), gap


def test_decision_agrees_with_simulated_ensembles(simulate_members):
    rng = np.random.default_rng(2024)
    checked = 0
    for _ in range(60):
        members = int(rng.integers(1, 13))
        base, cand = _random_arch(rng), _random_arch(rng)
        accepted, gap = _decide(members, base, cand)
        e_base = _simulated_ensemble_error(simulate_members, rng, members, base)
        e_cand = _simulated_ensemble_error(simulate_members, rng, members, cand)
        # predicted improvement vs simulated difference
        # tolerance: 4 % of the summed errors (MC SE of each MSE at n = 5e4 is <= ~0.7 %)
        assert gap == pytest.approx(e_base - e_cand, abs=0.04 * (e_base + e_cand))
        # tolerance: decisions compared only when |gap| > 5 % of the larger error (not tiny)
        if abs(gap) > 0.05 * max(e_base, e_cand):
            assert accepted == (e_cand < e_base)
            checked += 1
    assert checked >= 30


def test_more_diverse_but_worse_single_model_is_accepted(simulate_members):
    rng = np.random.default_rng(3)
    base = {"bias2": 0.1, "sigma2": 1.0, "rho": 0.9}
    cand = {"bias2": 0.2, "sigma2": 1.0, "rho": 0.3}  # worse alone, far more diverse
    accepted, _ = _decide(10, base, cand)
    assert accepted
    e_base = _simulated_ensemble_error(simulate_members, rng, 10, base)
    e_cand = _simulated_ensemble_error(simulate_members, rng, 10, cand)
    single_base = _simulated_ensemble_error(simulate_members, rng, 1, base)
    single_cand = _simulated_ensemble_error(simulate_members, rng, 1, cand)
    assert single_cand > single_base and e_cand < e_base  # exact comparisons; gaps are > 10 SE


def test_variance_stable_decision_agrees_with_simulation(simulate_members):
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(40):
        members, sigma2 = int(rng.integers(2, 13)), float(rng.uniform(0.2, 2.0))
        base, cand = _random_arch(rng, sigma2), _random_arch(rng, sigma2)
        delta = base["bias2"] - cand["bias2"]
        threshold = variance_stable_threshold(members, sigma2, base["rho"], cand["rho"])
        accepted = accepts(delta, threshold)
        e_base = _simulated_ensemble_error(simulate_members, rng, members, base)
        e_cand = _simulated_ensemble_error(simulate_members, rng, members, cand)
        if abs(e_base - e_cand) > 0.05 * max(e_base, e_cand):  # tolerance: as above, 5 % gap
            assert accepted == (e_cand < e_base)
            checked += 1
    assert checked >= 20


def test_accepted_chain_improves_monotonically(simulate_members):
    """Prop. 4.1 (transitivity): every accepted candidate becomes the baseline."""
    rng = np.random.default_rng(5)
    members, current = 8, {"bias2": 0.5, "sigma2": 1.5, "rho": 0.9}
    chain = [_simulated_ensemble_error(simulate_members, rng, members, current)]
    for _ in range(60):  # local search: candidates are perturbations of the current baseline
        cand = {
            "bias2": float(np.clip(current["bias2"] + rng.uniform(-0.1, 0.1), 0.0, 1.0)),
            "sigma2": float(current["sigma2"] * rng.uniform(0.8, 1.25)),
            "rho": float(np.clip(current["rho"] + rng.uniform(-0.15, 0.15), 0.0, 0.95)),
        }
        accepted, gap = _decide(members, current, cand)
        if accepted and gap > 0.05 * chain[-1]:  # skip near-ties, as in the decision test
            current = cand
            chain.append(_simulated_ensemble_error(simulate_members, rng, members, current))
    assert len(chain) >= 4
    assert all(b < a for a, b in zip(chain, chain[1:]))  # strict, gaps > 5 % >> MC noise


@pytest.mark.parametrize("n_candidates", [1, 5, 40])
@pytest.mark.parametrize("members", [1, 2, 10])
def test_search_cost_counts_training_runs(n_candidates, members):
    def run(decoupled):
        trained = 0
        for _ in range(n_candidates):
            trained += 2 if decoupled else members  # dual instances vs a full ensemble
        if decoupled:
            trained += members  # the winner is deployed once as a full ensemble
        return trained

    assert search_cost(n_candidates, members, decoupled=False) == run(False)  # exact
    assert search_cost(n_candidates, members, decoupled=True) == run(True)  # exact


BAD_CALLS = [
    lambda: acceptance_threshold(0, 0.1, 0.2),
    lambda: acceptance_threshold(3, -0.1, 0.2),
    lambda: predicted_improvement(3, -1.0, 0.1, 0.5, 0.1),
    lambda: accepts(float("nan"), 0.0),
    lambda: variance_stable_threshold(3, -1.0, 0.1, 0.2),
    lambda: variance_stable_threshold(3, 1.0, 1.1, 0.2),
    lambda: search_cost(0, 3, decoupled=True),
    lambda: search_cost(3, 0, decoupled=False),
]


@pytest.mark.parametrize("call", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()


# -- T2b: the group-sequential design, against simulated Brownian motion ------------------------
from theory import conditional_power, crossing_probabilities, sequential_bounds, spent_alpha  # noqa: E402

LOOK_FRACTIONS = [np.array([2, 3, 4, 5, 6]) / 6, np.array([0.2, 0.5, 1.0]), np.array([1.0])]


def _brownian_z(rng, fractions, drift, paths=200_000):
    """Z_k = S(t_k)/sqrt(t_k) for a Brownian motion S with the given drift per unit information."""
    steps = np.diff(np.concatenate([[0.0], fractions]))
    s = np.cumsum(rng.normal(drift * steps, np.sqrt(steps), size=(paths, len(steps))), axis=1)
    return s / np.sqrt(fractions)


def _first_crossing(z, bounds):
    crossed = z >= bounds
    first = np.where(crossed.any(1), crossed.argmax(1), -1)
    return np.array([(first == k).mean() for k in range(len(bounds))])


@pytest.mark.parametrize("fractions", LOOK_FRACTIONS, ids=["5 looks", "3 uneven", "1 look"])
@pytest.mark.parametrize("rho", [1.0, 2.0, 3.0])
def test_sequential_bounds_spend_alpha_as_simulated(fractions, rho):
    """Crossing frequencies of simulated paths under a true gain of 0 equal the spent α per look."""
    alpha = 0.05
    bounds = sequential_bounds(fractions, alpha, rho)
    simulated = _first_crossing(_brownian_z(np.random.default_rng(7), fractions, 0.0), bounds)
    spent = np.diff(np.concatenate([[0.0], [spent_alpha(t, alpha, rho) for t in fractions]]))
    # tolerance: 4 binomial SE of 200k paths (≤ 0.002 for rates ≤ 0.05)
    assert np.abs(simulated - spent).max() < 4 * np.sqrt(alpha / 200_000) + 1e-4
    assert simulated.sum() == pytest.approx(alpha, abs=0.002)


def test_single_look_is_the_fixed_sample_test():
    from scipy import stats
    assert sequential_bounds([1.0], 0.05)[0] == pytest.approx(stats.norm.isf(0.05), abs=1e-6)  # exact


@pytest.mark.parametrize("drift", [0.0, 1.5, 3.0])
def test_crossing_probabilities_under_drift_match_simulation(drift):
    fractions = LOOK_FRACTIONS[0]
    bounds = sequential_bounds(fractions, 0.05, 2.0)
    simulated = _first_crossing(_brownian_z(np.random.default_rng(8), fractions, drift), bounds)
    computed = crossing_probabilities(bounds, fractions, drift)
    assert np.abs(simulated - computed).max() < 0.005  # tolerance: ~4 SE at 200k paths


def test_pocock_constant_matches_the_published_table():
    """Jennison & Turnbull Table 2.1: Pocock's constant for 5 equally spaced looks, one-sided 0.025: 2.413."""
    from scipy import optimize
    t = np.arange(1, 6) / 5
    c = optimize.brentq(lambda c: crossing_probabilities(np.full(5, c), t).sum() - 0.025, 1.0, 4.0)
    assert c == pytest.approx(2.413, abs=1e-3)  # the table's 3 decimals


@pytest.mark.parametrize("predictive", [False, True])
@pytest.mark.parametrize("z", [-0.5, 0.8, 2.0])
def test_conditional_power_matches_simulation(z, predictive):
    """Chance to end above the final bound, continuing a path from Z = z at information I_k."""
    rng = np.random.default_rng(9)
    info, final_info, bound, n = 4.0, 12.0, 1.9, 400_000
    s_k = z * np.sqrt(info)
    theta = np.full(n, s_k / info)
    if predictive:  # the gain's flat-prior posterior
        theta = rng.normal(s_k / info, 1 / np.sqrt(info), size=n)
    rest = final_info - info
    s_f = s_k + rng.normal(theta * rest, np.sqrt(rest))
    simulated = float((s_f / np.sqrt(final_info) >= bound).mean())
    assert conditional_power(z, info, final_info, bound, predictive=predictive) == pytest.approx(simulated, abs=0.004)


T2B_BAD_CALLS = [
    lambda: spent_alpha(1.5, 0.05, 2.0),
    lambda: spent_alpha(0.5, 0.0, 2.0),
    lambda: spent_alpha(0.5, 0.05, -1.0),
    lambda: sequential_bounds([0.5, 0.4], 0.05),
    lambda: sequential_bounds([0.0, 1.0], 0.05),
    lambda: crossing_probabilities([2.0], [0.5, 1.0]),
    lambda: conditional_power(1.0, -1.0, 2.0, 1.9),
]


@pytest.mark.parametrize("call", T2B_BAD_CALLS, ids=range(len(T2B_BAD_CALLS)))
def test_t2b_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()
