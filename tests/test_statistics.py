"""Host statistics against brute force: KV identity, D̂, and T1's prediction vs simulated M-ensembles."""
from __future__ import annotations

import numpy as np
import pytest

from evaluator.failures import EvaluationFailed, FailureReason
from evaluator.statistics import compute_statistics, ensemble_metrics, one_hot, validate_probabilities
from tests.simulate import instances, make_architecture, make_labels


def test_statistics_match_brute_force():
    rng = np.random.default_rng(0)
    y = make_labels(500, 4, rng)
    probs = instances(make_architecture(y, 4, skill=2.0, rng=rng), 2, noise=0.8, temp_spread=0.1, rng=rng)
    s = compute_statistics(probs, y)
    t = one_hot(y, 4)
    # brute force, element by element (tolerance: float rounding, 1e-10)
    brier = [np.mean([np.sum((probs[i, j] - t[j]) ** 2) for j in range(500)]) for i in range(2)]
    assert s.member_error == pytest.approx(np.mean(brier), abs=1e-10)
    d = np.mean([0.5 * np.sum((probs[0, j] - probs[1, j]) ** 2) for j in range(500)])
    assert s.diversity == pytest.approx(d, abs=1e-10)
    ens = np.mean([np.sum(((probs[0, j] + probs[1, j]) / 2 - t[j]) ** 2) for j in range(500)])
    assert s.ensemble_error == pytest.approx(ens, abs=1e-10)
    assert s.kv_residual < 1e-12
    # with K=2 the measured 2-ensemble is exactly E_a − ½·D̂ (T1 at M=2 holds with equality)
    assert s.predicted_ensemble_error(2) == pytest.approx(s.ensemble_error, abs=1e-6 + abs(brier[0] - brier[1]))
    assert 0 < s.correlation < 1 and s.variance > 0


def test_two_instance_prediction_matches_simulated_m_ensemble():
    """T1 from 2 instances predicts the error of a real 10-member ensemble of the same 'architecture'.
    Tolerance: 5 % relative, averaged over 20 draws of the two instances."""
    rng = np.random.default_rng(1)
    y = make_labels(2000, 10, rng)
    logits = make_architecture(y, 10, skill=2.5, rng=rng)
    predicted, measured = [], []
    for _ in range(20):
        pair = instances(logits, 2, noise=1.0, temp_spread=0.05, rng=rng)
        predicted.append(compute_statistics(pair, y).predicted_ensemble_error(10))
        measured.append(ensemble_metrics(instances(logits, 10, noise=1.0, temp_spread=0.05, rng=rng), y)["brier"])
    assert np.mean(predicted) == pytest.approx(np.mean(measured), rel=0.05)


@pytest.mark.parametrize("bad,reason", [
    (np.full((2, 5, 3), np.nan), FailureReason.nan_output),
    (np.full((2, 5, 3), 0.5), FailureReason.invalid_output),
    (np.full((2, 4, 3), 1 / 3), FailureReason.invalid_output),
])
def test_validate_probabilities_rejects(bad, reason):
    with pytest.raises(EvaluationFailed) as err:
        validate_probabilities(bad, 5, 3, "val")
    assert err.value.reason == reason
