"""T4 checks: EdgeNES Theorem 1 by exact enumeration and by simulating the edge sampling.

Process (seed 001 proof): alpha* keeps Lambda edges. Each final-ensemble member shares a uniform
random nu-subset of them, nu ~ U{1..Lambda}; each hypernetwork step trains an architecture that
shares a uniform random mu-subset, mu ~ U{1..Lambda}. m = sum over members of the number of the
member's shared edges that the step also trains.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from theory import TheoryInputError, expected_updated_edges, speedup_over_darts_ensembling


def _outcomes(lam):
    """All (probability, subset) outcomes of: k ~ U{1..lam}, then a uniform k-subset."""
    return [
        (Fraction(1, lam * comb(lam, k)), frozenset(s))
        for k in range(1, lam + 1)
        for s in itertools.combinations(range(lam), k)
    ]


@pytest.mark.parametrize(
    ("n_members", "lam"), [(1, 1), (1, 2), (1, 5), (1, 6), (2, 3), (2, 4), (3, 3)]
)
def test_theorem1_exact_enumeration(n_members, lam):
    outs = _outcomes(lam)
    expected = Fraction(0)
    for step_p, step in outs:  # joint enumeration over the step and every member
        for combo in itertools.product(outs, repeat=n_members):
            prob = step_p
            for p, _ in combo:
                prob *= p
            expected += prob * sum(len(step & s) for _, s in combo)
    # tolerance: 1e-12 relative (exact rational arithmetic, compared as floats)
    assert expected_updated_edges(n_members, lam) == pytest.approx(float(expected), rel=1e-12)


def _random_subsets(rng, sizes, lam):
    ranks = rng.random(sizes.shape + (lam,)).argsort(axis=-1).argsort(axis=-1)
    return ranks < sizes[..., None]


@pytest.mark.parametrize(("n_members", "lam"), [(5, 8), (3, 14), (10, 4)])
def test_theorem1_monte_carlo_training(n_members, lam):
    rng = np.random.default_rng(lam * 31 + n_members)
    ensembles, steps = 2_000, 100
    member_sets = _random_subsets(rng, rng.integers(1, lam + 1, (ensembles, n_members)), lam)
    step_sets = _random_subsets(rng, rng.integers(1, lam + 1, (ensembles, steps)), lam)
    m = np.einsum("rsl,rnl->rs", step_sets.astype(np.int32), member_sets.astype(np.int32))
    # tolerance: 2 % relative (MC SE of the mean over 2e5 steps is ~0.5 %)
    assert expected_updated_edges(n_members, lam) == pytest.approx(m.mean(), rel=0.02)

    # DARTS-ensembling: N runs trained one at a time; a step updates only the trained run's
    # Lambda final edges, so the final-ensemble edges updated per step are counted directly.
    runs = [set(range(r * lam, (r + 1) * lam)) for r in range(n_members)]  # disjoint runs
    final_edges = set().union(*runs)
    m_de = np.array([len(runs[s % n_members] & final_edges) for s in range(steps)])
    # tolerance: 2 % relative, as above
    assert speedup_over_darts_ensembling(n_members, lam) == pytest.approx(
        m.mean() / m_de.mean(), rel=0.02
    )


def test_theorem1_is_a_lower_bound_when_non_optimal_edges_are_counted():
    """The seed's remark: shared edges outside alpha* are not counted, so E[m] under-counts."""
    rng = np.random.default_rng(9)
    lam, pool, n_members, draws = 8, 20, 4, 4_000
    shared_step = rng.integers(1, lam + 1, draws)
    shared_members = rng.integers(1, lam + 1, (draws, n_members))
    total = 0
    for i in range(draws):
        def arch(k):  # k alpha*-edges (0..lam-1) plus lam-k edges outside alpha* (lam..pool-1)
            inside = rng.choice(lam, k, replace=False)
            outside = rng.choice(np.arange(lam, pool), lam - k, replace=False)
            return set(inside) | set(outside)

        step = arch(shared_step[i])
        total += sum(len(step & arch(k)) for k in shared_members[i])
    # strict inequality; the excess here is ~1 edge per member, far above MC noise
    assert total / draws > expected_updated_edges(n_members, lam)


def test_speedup_below_one_for_a_single_member():
    assert speedup_over_darts_ensembling(1, 8) < 1.0  # (9^2)/(4*64) ~ 0.32


@pytest.mark.parametrize(
    "call",
    [
        lambda: expected_updated_edges(0, 8),
        lambda: expected_updated_edges(3, 0),
        lambda: expected_updated_edges(3, 2.5),
        lambda: speedup_over_darts_ensembling(-1, 8),
        lambda: speedup_over_darts_ensembling(2, 0),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()
