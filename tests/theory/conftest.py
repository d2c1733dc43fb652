"""Simulators shared by the theory tests: they generate data, they never evaluate a formula."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _simulate_members(
    rng: np.random.Generator,
    *,
    members: int,
    n: int,
    sigma2: float,
    rho: float,
    bias2: float = 0.0,
    classes: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """M trained 'instances': target + fixed bias + noise, equicorrelated across members.

    sigma2 is the prediction variance summed over classes and bias2 the squared bias summed over
    classes, so each member's expected error is bias2 + sigma2 by construction.
    Returns predictions [M, n, C] and targets [n, C].
    """
    cov = sigma2 / classes * ((1.0 - rho) * np.eye(members) + rho * np.ones((members, members)))
    chol = np.linalg.cholesky(cov + 1e-15 * np.eye(members))
    targets = rng.random((n, classes))
    noise = np.einsum("ij,jnc->inc", chol, rng.standard_normal((members, n, classes)))
    preds = targets[None] + np.sqrt(bias2 / classes) + noise
    return preds, targets


@pytest.fixture
def simulate_members() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return _simulate_members
