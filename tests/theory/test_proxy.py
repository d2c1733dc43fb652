"""T6.6 checks: sampled proxy scores (true quality + noise) and bivariate normals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theory import (
    TheoryInputError,
    pearson_from_snr,
    predicted_rank_correlation,
    signal_to_noise,
    spearman_from_pearson,
)

N = 200_000


def _ranks(x):
    return x.argsort().argsort().astype(float)


def _spearman(a, b):
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _proxy_sample(rng, var_arch, var_noise):
    quality = rng.normal(0.0, math.sqrt(var_arch), N)
    return quality, quality + rng.normal(0.0, math.sqrt(var_noise), N)


@pytest.mark.parametrize(
    ("var_arch", "var_noise"), [(1.0, 0.25), (1.0, 1.0), (0.25, 1.0), (0.1, 4.0)]
)
def test_pearson_and_rank_correlation_of_noisy_proxy(var_arch, var_noise):
    rng = np.random.default_rng(int(100 * var_arch + 10 * var_noise))
    quality, proxy = _proxy_sample(rng, var_arch, var_noise)
    snr = signal_to_noise(var_arch, var_noise)
    # tolerance: 0.01 absolute on each correlation (MC SE ~0.002 with 2e5 samples)
    assert pearson_from_snr(snr) == pytest.approx(np.corrcoef(quality, proxy)[0, 1], abs=0.01)
    assert predicted_rank_correlation(var_arch, var_noise) == pytest.approx(
        _spearman(quality, proxy), abs=0.01
    )
    # SNR itself vs the sample variances; tolerance: 3 % relative
    assert snr == pytest.approx(quality.var() / (proxy - quality).var(), rel=0.03)


@pytest.mark.parametrize("rho", [-0.9, -0.3, 0.0, 0.5, 0.95])
def test_spearman_from_pearson_bivariate_normal(rho):
    rng = np.random.default_rng(int(round(1000 + 100 * rho)))
    a = rng.standard_normal(N)
    b = rho * a + math.sqrt(1 - rho**2) * rng.standard_normal(N)
    # tolerance: 0.01 absolute (MC SE of a Spearman correlation at 2e5 is <= 0.0023)
    assert spearman_from_pearson(rho) == pytest.approx(_spearman(a, b), abs=0.01)


def test_noiseless_proxy_ranks_perfectly():
    rng = np.random.default_rng(0)
    quality = rng.normal(size=1000)
    assert signal_to_noise(1.0, 0.0) == math.inf
    perfect = _spearman(quality, quality)
    assert predicted_rank_correlation(1.0, 0.0) == pytest.approx(perfect, abs=1e-12)
    assert pearson_from_snr(math.inf) == 1.0


def test_pure_noise_proxy_has_no_rank_signal():
    rng = np.random.default_rng(1)
    quality = np.zeros(N)  # every architecture equally good: ranks carry only noise
    proxy = rng.normal(size=N)
    other = rng.normal(size=N)
    assert predicted_rank_correlation(0.0, 1.0) == 0.0  # exact
    assert abs(_spearman(proxy, other)) < 0.01  # tolerance: 0.01 (two independent proxies)
    del quality


BAD_CALLS = [
    lambda: signal_to_noise(-1.0, 1.0),
    lambda: signal_to_noise(1.0, -1.0),
    lambda: signal_to_noise(0.0, 0.0),
    lambda: pearson_from_snr(-0.5),
    lambda: pearson_from_snr(float("nan")),
    lambda: spearman_from_pearson(1.2),
    lambda: predicted_rank_correlation(-1.0, 1.0),
]


@pytest.mark.parametrize("call", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()
