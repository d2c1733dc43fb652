"""T5 checks: discounted returns and advantages by brute force."""

from __future__ import annotations

import numpy as np
import pytest

from theory import TheoryInputError, advantages, discounted_returns


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("length", [1, 2, 10, 40])
def test_discounted_returns_brute_force(gamma, length):
    rng = np.random.default_rng(length)
    rewards = rng.normal(size=length).tolist()
    brute = [
        sum(gamma ** (k - t) * rewards[k] for k in range(t, length)) for t in range(length)
    ]  # G_t as the explicit sum over the rest of the episode
    # tolerance: 1e-12 absolute (round-off only)
    np.testing.assert_allclose(discounted_returns(rewards, gamma), brute, rtol=0, atol=1e-12)


def test_advantages_brute_force():
    rng = np.random.default_rng(3)
    rewards = rng.normal(size=10)
    values = rng.normal(size=10)
    returns = discounted_returns(rewards, 0.9)
    brute = [returns[i] - values[i] for i in range(10)]
    np.testing.assert_allclose(advantages(returns, values), brute, rtol=0, atol=0)  # exact


@pytest.mark.parametrize(
    "call",
    [
        lambda: discounted_returns([1.0, 2.0], 1.5),
        lambda: discounted_returns([1.0, 2.0], -0.1),
        lambda: discounted_returns([], 0.9),
        lambda: discounted_returns([[1.0], [2.0]], 0.9),
        lambda: discounted_returns([1.0, float("nan")], 0.9),
        lambda: advantages([1.0, 2.0], [1.0]),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()
