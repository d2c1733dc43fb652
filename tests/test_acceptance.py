"""The acceptance test against simulated ground truth: the point test agrees with real M-ensembles
when the gap is clear, and the bound keeps false acceptances near α."""
from __future__ import annotations

import numpy as np

from evaluator.acceptance import AcceptanceConfig, acceptance_test, full_ensemble_test, noise_variance_from_instances
from evaluator.statistics import ensemble_metrics
from tests.simulate import instances, make_architecture, make_labels


def _true_ensemble_error(logits, y, m, noise, spread, rng, reps=30):
    return np.mean([ensemble_metrics(instances(logits, m, noise=noise, temp_spread=spread, rng=rng), y)["brier"]
                    for _ in range(reps)])


def test_more_diverse_but_worse_single_model_can_be_accepted():
    """T2's point: a candidate with a worse single model but much more diversity wins at large M."""
    rng = np.random.default_rng(3)
    y = make_labels(3000, 10, rng)
    base_logits = make_architecture(y, 10, skill=3.0, rng=rng)
    cand_logits = base_logits.copy()
    base = instances(base_logits, 2, noise=0.3, temp_spread=0.0, rng=rng)
    cand = instances(cand_logits, 2, noise=2.5, temp_spread=0.0, rng=rng)  # noisier single models
    d = acceptance_test(base, cand, y, AcceptanceConfig(members=20))
    true_gain = (_true_ensemble_error(base_logits, y, 20, 0.3, 0, rng, 5)
                 - _true_ensemble_error(cand_logits, y, 20, 2.5, 0, rng, 5))
    assert d.delta < 0, "the candidate's single model must be worse in this construction"
    assert (d.predicted_improvement > 0) == (true_gain > 0)
    assert d.accept == (true_gain > 0 and d.lower_bound > 0)


def test_point_decision_agrees_with_simulated_ensembles():
    """Over 40 random architecture pairs with a clear true gap (> 0.005 Brier), the 2-instance point
    test agrees with 10-member ground truth in ≥ 90 % of pairs."""
    rng = np.random.default_rng(4)
    y = make_labels(2000, 10, rng)
    agree = total = 0
    while total < 40:
        la = make_architecture(y, 10, skill=rng.uniform(1.5, 3.5), rng=rng)
        lc = make_architecture(y, 10, skill=rng.uniform(1.5, 3.5), rng=rng)
        na, nc = rng.uniform(0.3, 2.0, size=2)
        gain = _true_ensemble_error(la, y, 10, na, 0.05, rng, 4) - _true_ensemble_error(lc, y, 10, nc, 0.05, rng, 4)
        if abs(gain) < 0.005:
            continue
        d = acceptance_test(instances(la, 2, noise=na, temp_spread=0.05, rng=rng),
                            instances(lc, 2, noise=nc, temp_spread=0.05, rng=rng), y,
                            AcceptanceConfig(members=10, bootstrap=200))
        agree += d.point_accept == (gain > 0)
        total += 1
    assert agree / total >= 0.9


def test_bound_controls_false_acceptance():
    """Candidate identical in distribution to the base (true gain 0). The point test accepts about half
    the time. With a pooled seed-noise estimate (from 8 instances of the base) the bounded test at
    α = 0.1 accepts ≤ 15 % of 200 trials; with each pair's own 1-df estimate (Student-t) ≤ 20 %."""
    rng = np.random.default_rng(5)
    y = make_labels(1000, 10, rng)
    logits = make_architecture(y, 10, skill=2.0, rng=rng)
    draw = lambda k: instances(logits, k, noise=1.0, temp_spread=0.15, rng=rng)  # noqa: E731
    pooled = noise_variance_from_instances(draw(16), y, members=5)
    point = own = with_pool = 0
    cfg = AcceptanceConfig(members=5, alpha=0.1, bootstrap=300)
    for _ in range(200):
        a, c = draw(2), draw(2)
        d = acceptance_test(a, c, y, cfg)
        point += d.point_accept
        own += d.accept
        with_pool += acceptance_test(a, c, y, cfg, noise_variance=pooled).accept
    assert 60 <= point <= 140
    assert own <= 40
    assert with_pool <= 30


def test_full_ensemble_mode_measures_real_ensembles():
    rng = np.random.default_rng(6)
    y = make_labels(1500, 10, rng)
    good = instances(make_architecture(y, 10, skill=3.5, rng=rng), 5, noise=1.0, temp_spread=0.0, rng=rng)
    bad = instances(make_architecture(y, 10, skill=1.0, rng=rng), 5, noise=1.0, temp_spread=0.0, rng=rng)
    assert full_ensemble_test(bad, good, y, AcceptanceConfig(members=5)).accept
    assert not full_ensemble_test(good, bad, y, AcceptanceConfig(members=5)).accept
