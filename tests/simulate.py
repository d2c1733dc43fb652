"""Synthetic ensembles with known ground truth, for testing statistics and the acceptance test.

An "architecture" is a fixed logit field L(x) plus how its instances vary: per-example noise
of scale `noise` and a per-instance temperature (seed effects shared across examples).
"""
from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def make_labels(n: int, c: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, c, size=n)


def make_architecture(labels: np.ndarray, c: int, *, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Mean logits: the true class boosted by `skill`, plus example-level confusion."""
    logits = rng.normal(0, 1.0, size=(len(labels), c))
    logits[np.arange(len(labels)), labels] += skill
    return logits


def instances(logits: np.ndarray, k: int, *, noise: float, temp_spread: float, rng: np.random.Generator) -> np.ndarray:
    temps = np.exp(rng.normal(0, temp_spread, size=(k, 1, 1)))
    return softmax(temps * (logits[None] + rng.normal(0, noise, size=(k, *logits.shape))))


def seeded_instances(logits: np.ndarray, seeds, *, arch: int, noise: float, temp_spread: float,
                     shared: float = 0.0) -> np.ndarray:
    """Instances by seed, as real training makes them: seed s of *any* architecture mixes a common
    draw (rng [s, 0]: the same batch order and random stream) with its own (rng [s, arch + 1]), so
    instances of two architectures with one seed correlate by `shared` in [0, 1]."""
    n, c = logits.shape
    mix = lambda a, b: shared * a + np.sqrt(1.0 - shared ** 2) * b  # noqa: E731
    out = []
    for s in seeds:
        common, own = np.random.default_rng([s, 0]), np.random.default_rng([s, arch + 1])
        z = mix(common.standard_normal((n, c)), own.standard_normal((n, c)))
        t = np.exp(temp_spread * mix(common.standard_normal(), own.standard_normal()))
        out.append(softmax(t * (logits + noise * z)))
    return np.stack(out)
