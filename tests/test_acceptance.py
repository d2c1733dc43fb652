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


# -- the paired gain, its noise, and the sequential test (docs/theory.md T2b) ----------------------------
import pytest  # noqa: E402

from evaluator.acceptance import bootstrap_rng  # noqa: E402
from evaluator.paired import Instances, kernel_variance, noise_prior_from_instances, paired_gain  # noqa: E402
from evaluator.sequential import dominance, sequential_test  # noqa: E402
from tests.simulate import seeded_instances  # noqa: E402


def _pair(rng, trial, *, n=300, c=5, k=4, noise=1.0, temp=0.2, shared=0.5, skill=2.0, shift=0.0, paired=True):
    """A fresh validation sample and two architectures of equal skill (+shift for the candidate):
    over fresh samples the true gain is 0 when shift = 0. Instances paired by seed unless not `paired`."""
    y = make_labels(n, c, rng)
    lb, lc = make_architecture(y, c, skill=skill, rng=rng), make_architecture(y, c, skill=skill + shift, rng=rng)
    seeds_b = [1000 * trial + i for i in range(k)]
    seeds_c = seeds_b if paired else [1000 * trial + 500 + i for i in range(k)]
    b = seeded_instances(lb, seeds_b, arch=0, noise=noise, temp_spread=temp, shared=shared)
    cand = seeded_instances(lc, seeds_c, arch=1, noise=noise, temp_spread=temp, shared=shared)
    return y, Instances(tuple(range(k)), b), Instances(tuple(range(k)), cand)


@pytest.mark.parametrize("shared", [0.0, 0.7])
def test_paired_gain_noise_estimate_matches_the_simulated_spread(shared):
    """Over fresh validation samples and seeds (true gain 0), the estimated Var(Ĝ) (seed jackknife +
    example part) matches the mean squared gain: the example part does not count seed noise twice."""
    rng = np.random.default_rng(11)
    gains, estimates = [], []
    for trial in range(300):
        y, b, c = _pair(rng, trial, shared=shared)
        pg = paired_gain(b, c, y, members=5)
        gains.append(pg.gain)
        estimates.append(pg.var_seed + pg.var_examples)
    ratio = np.mean(estimates) / np.mean(np.square(gains))
    assert 0.8 < ratio < 1.35  # tolerance: MC error of 300 squares (~±15 %); the jackknife errs upward


def test_pairing_by_seed_narrows_the_gain_when_seeds_correlate():
    """Cause 1 of issue 18: shared seeds correlate the two sides, so the paired gain varies less than
    the unpaired one, and its estimated seed variance says so."""
    rng = np.random.default_rng(12)
    y = make_labels(300, 5, rng)
    lb, lc = make_architecture(y, 5, skill=2.0, rng=rng), make_architecture(y, 5, skill=2.0, rng=rng)
    spread = {}
    for paired in (True, False):
        g, est = [], []
        for trial in range(150):
            seeds = [1000 * trial + i for i in range(4)]
            b = seeded_instances(lb, seeds, arch=0, noise=1.0, temp_spread=0.3, shared=0.8)
            c = seeded_instances(lc, seeds if paired else [s + 500 for s in seeds], arch=1, noise=1.0,
                                 temp_spread=0.3, shared=0.8)
            pg = paired_gain(Instances(tuple(range(4)), b), Instances(tuple(range(4)), c), y, members=5)
            g.append(pg.gain)
            est.append(pg.var_seed)
        spread[paired] = (np.var(g), np.mean(est))
    assert spread[True][0] < 0.6 * spread[False][0]
    for var, est in spread.values():  # the seed jackknife tracks each (tolerance: MC error ±25 %)
        assert 0.75 < est / var < 1.5


def test_kernel_variance_estimates_the_two_instance_noise():
    """ζ₂ from 4 instances (averaged over repeats) vs the spread of 2-instance predicted errors."""
    rng = np.random.default_rng(13)
    y = make_labels(300, 5, rng)
    logits = make_architecture(y, 5, skill=2.0, rng=rng)
    draw = lambda seeds: seeded_instances(logits, seeds, arch=0, noise=1.0, temp_spread=0.3)  # noqa: E731
    estimates = [kernel_variance(draw(range(10 * r, 10 * r + 4)), y, members=5) for r in range(150)]
    twos = [paired_gain(Instances((0, 1), draw([20_000 + 2 * r, 20_001 + 2 * r])),
                        Instances((0, 1), draw([40_000 + 2 * r, 40_001 + 2 * r])), y, members=5).gain
            for r in range(300)]
    truth = np.var(twos) / 2  # the difference of two independent 2-instance estimates
    assert 0.8 < np.mean(estimates) / truth < 1.4  # tolerance: MC error; the floor errs upward
    with pytest.raises(ValueError):
        kernel_variance(draw(range(3)), y, members=5)


def _sequential_trial(rng, trial, config, *, noise, temp, shared, prior_scale, n, shift=0.0):
    """One decision with optional stopping: all instances exist, the test stops at its first decisive look."""
    y, b, c = _pair(rng, trial, n=n, k=config.max_instances, noise=noise, temp=temp, shared=shared, shift=shift)
    seed_program = seeded_instances(make_architecture(y, 5, skill=2.0, rng=rng), range(90_000 + 4 * trial,
                                    90_004 + 4 * trial), arch=7, noise=noise * prior_scale, temp_spread=temp * prior_scale)
    prior = noise_prior_from_instances(seed_program, y, config.members, max_df=config.prior_df)
    verdict = sequential_test(b, c, y, config, prior)
    assert verdict.outcome in ("accept", "reject")
    return verdict


# Noise structures for the null: seed vs example noise, seeds shared 0-0.8 across the two architectures,
# a skewed per-seed effect (temperature spread), and a seed-program prior 4x too small or too large
# in variance (it only enters the 2-instance futility look). On the real neighbour pairs of
# benchmarks/acceptance_fidelity.py the seed jackknife is conservative (mean 1.2-1.3x the true variance,
# effective df ~ K - 1); these synthetic structures are harsher.
NULL_SETTINGS = [dict(noise=1.0, temp=0.2, shared=0.5, prior_scale=1.0, n=300),
                 dict(noise=1.0, temp=0.5, shared=0.8, prior_scale=0.5, n=300),
                 dict(noise=2.0, temp=0.1, shared=0.0, prior_scale=0.5, n=300),
                 dict(noise=0.5, temp=0.6, shared=0.3, prior_scale=2.0, n=1000)]


@pytest.mark.parametrize("trials", [pytest.param(200, id="fast"),
                                    pytest.param(2000, id="long", marks=pytest.mark.slow)])
def test_sequential_false_accepts_stay_below_alpha_under_optional_stopping(trials):
    """True gain 0 (fresh validation samples, two architectures of equal skill): across the noise
    structures above, the sequential test accepts at most α = 5 % of the time although it looks at the
    gain up to 5 times. The futility stop is off (the hardest case: every look can accept)."""
    config = AcceptanceConfig(members=5, alpha=0.05, futility=0.0)
    rates = []
    for s, setting in enumerate(NULL_SETTINGS):
        rng = np.random.default_rng(14 + s)
        rates.append(np.mean([_sequential_trial(rng, 10_000 * s + t, config, **setting).outcome == "accept"
                              for t in range(trials)]))
    se = np.sqrt(0.05 * 0.95 / trials)
    # tolerance: 3 binomial SE per setting, 1.5 SE of the pooled rate (4x the trials): the long run
    # measured 0.0495, 0.054, 0.050, ~0.05 with 2000 trials each
    assert max(rates) <= 0.05 + 3 * se, rates
    assert np.mean(rates) <= 0.05 + 1.5 * se / 2, rates


def test_sequential_test_finds_clear_gains_and_stops_early_on_clear_losses():
    config = AcceptanceConfig(members=5, alpha=0.05)
    rng = np.random.default_rng(15)
    setting = dict(noise=1.0, temp=0.2, shared=0.5, prior_scale=1.0, n=300)
    better = [_sequential_trial(rng, t, config, shift=0.4, **setting) for t in range(60)]
    worse = [_sequential_trial(rng, 100 + t, config, shift=-0.4, **setting) for t in range(60)]
    assert np.mean([v.outcome == "accept" for v in better]) >= 0.8
    assert not any(v.outcome == "accept" for v in worse)
    assert np.mean([v.instances for v in worse]) < 2.5  # futility: most clear losses stop at 2


def test_sequential_test_asks_for_the_missing_seeds_and_replays_the_same():
    rng = np.random.default_rng(16)
    config = AcceptanceConfig(members=5, alpha=0.05, futility=0.0, prior_df=0.0)  # no prior: look 2 is blind
    y, b, c = _pair(rng, 0, k=6)
    verdict = sequential_test(b, c.take((0, 1)), y, config)
    assert verdict.outcome == "more" and verdict.need_candidate == (2,) and verdict.need_incumbent == ()
    verdict = sequential_test(b.take((0, 1)), c.take((0, 1, 2)), y, config)
    assert verdict.need_incumbent == (2,) and verdict.need_candidate == ()
    with_extra = sequential_test(b, c.take((0, 1, 2, 3, 4, 5)), y, config)
    again = sequential_test(b, c, y, config)
    assert with_extra.outcome in ("accept", "reject") and with_extra.as_decision(config) == again.as_decision(config)
    # a look decides from its own seeds only: instances the other side has beyond them change nothing
    first = with_extra.looks[0]
    assert first.instances == 2 and first.se is None  # no prior and 2 instances: no noise estimate


def test_dominance_reads_better_worse_and_undecided():
    rng = np.random.default_rng(17)
    y, b, c = _pair(rng, 0, n=600, k=4, shift=1.0)
    assert dominance(c, b, y, members=5) == "better"
    assert dominance(b, c, y, members=5) == "worse"
    assert dominance(b, b, y, members=5) == "undecided"
    assert dominance(b.take((0, 1)), c.take((0, 1)), y, members=5) == "undecided"  # no noise estimate


def test_noise_variance_uses_every_instance_of_an_odd_count():
    """Minor of issue 18: with 5 instances the old estimate silently dropped the fifth."""
    rng = np.random.default_rng(18)
    y = make_labels(300, 5, rng)
    probs = seeded_instances(make_architecture(y, 5, skill=2.0, rng=rng), range(5), arch=0, noise=1.0, temp_spread=0.3)
    other = probs.copy()
    other[4] = seeded_instances(make_architecture(y, 5, skill=1.0, rng=rng), [99], arch=0, noise=1.0, temp_spread=0.3)[0]
    assert noise_variance_from_instances(probs, y, 5) != noise_variance_from_instances(other, y, 5)
    import evaluator.acceptance as acceptance
    assert "noise_variance_from_instances" in acceptance.__all__


def test_bootstrap_draws_differ_between_decisions():
    """Minor of issue 18: every decision used the same bootstrap draws (seed 0); now the seed mixes in
    the decision's data, so two decisions draw independently and one decision always draws the same."""
    rng = np.random.default_rng(19)
    a, b, c = rng.random((2, 50, 3)), rng.random((2, 50, 3)), rng.random((2, 50, 3))
    draw = lambda *arrays: bootstrap_rng(AcceptanceConfig(), *arrays).integers(0, 1 << 30, 4).tolist()  # noqa: E731
    assert draw(a, b) == draw(a, b) == draw(b, a)  # a vs b mirrors b vs a
    assert draw(a, b) != draw(a, c)
    y = make_labels(50, 3, rng)
    ab, ba = acceptance_test(a, b, y, AcceptanceConfig()), acceptance_test(b, a, y, AcceptanceConfig())
    assert ab.lower_bound == pytest.approx(-ba.upper_bound, abs=1e-12)  # a vs b mirrors b vs a exactly
