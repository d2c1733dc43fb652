"""Pareto dominance, the archive update and the hypervolume (checked against brute force and Monte Carlo)."""
from __future__ import annotations

import numpy as np
import pytest

from agent.population.pareto import (DominanceRule, proven_best, Member, Relation, compare_cost, crowding_distance, dominates,
                                     error_best, hypervolume, hypervolume_inclusion_exclusion, normalised, prune,
                                     update_archive)


def interval_comparator(half_width: dict[int, float]):
    """Error relation by non-overlap of [error ± half_width]: a stand-in for the acceptance bound."""
    def compare(a: Member, b: Member) -> Relation:
        wa, wb = half_width.get(a.id, 0.0), half_width.get(b.id, 0.0)
        if a.error + wa < b.error - wb:
            return Relation.BETTER
        if a.error - wa > b.error + wb:
            return Relation.WORSE
        return Relation.UNDECIDED
    return compare


def test_compare_cost_is_exact_without_tolerance_and_ties_within_it():
    assert compare_cost(1, 2) == Relation.BETTER and compare_cost(2, 1) == Relation.WORSE
    assert compare_cost(3, 3) == Relation.UNDECIDED
    assert compare_cost(0.9, 1.0, rel_tol=0.2) == Relation.UNDECIDED
    assert compare_cost(0.7, 1.0, rel_tol=0.2) == Relation.BETTER
    assert compare_cost(1.0, 0.7, rel_tol=0.2) == Relation.WORSE


@pytest.mark.parametrize("rels,expected", [
    ({"error": 1, "params": 0, "latency": 0}, True),
    ({"error": 0, "params": 1, "latency": 0}, True),
    ({"error": 0, "params": 0, "latency": 0}, False),     # a tie everywhere is not dominance
    ({"error": 1, "params": -1, "latency": 1}, False),    # a trade-off
])
def test_dominates(rels, expected):
    assert dominates({k: Relation(v) for k, v in rels.items()}) is expected


def test_error_dominance_follows_the_bound_not_the_point_estimate():
    big_good = Member(id=1, error=0.100, params=1000, latency=1.0)
    small_close = Member(id=2, error=0.101, params=500, latency=1.0)
    # noisy: the intervals overlap, the error is undecided and the smaller model cannot be dominated;
    # in fact it dominates the bigger one (no worse on error, fewer parameters)
    noisy = update_archive([big_good], small_close, interval_comparator({1: 0.01, 2: 0.01}))
    assert noisy.entered and noisy.removed == (1,) and noisy.error_relations == {1: 0}
    # precise: the big model is confidently better on error, so the two trade off and both stay
    precise = update_archive([big_good], small_close, interval_comparator({1: 1e-4, 2: 1e-4}))
    assert precise.entered and precise.removed == () and precise.error_relations == {1: -1}
    # a point-estimate rule would call the big one dominated in the noisy case only by luck of the draw;
    # here a confidently worse and bigger candidate is rejected
    worse = Member(id=3, error=0.2, params=2000, latency=1.0)
    out = update_archive([big_good, small_close], worse, interval_comparator({3: 0.01}))
    assert not out.entered and set(out.dominated_by) == {1, 2} and out.removed == ()


def test_latency_tolerance_and_objective_subset():
    a = Member(id=1, error=0.1, params=100, latency=1.0)
    b = Member(id=2, error=0.1, params=100, latency=0.9)  # 10 % faster: within the default 20 % tolerance
    same = interval_comparator({})
    assert update_archive([a], b, same).removed == ()
    assert update_archive([a], b, same, DominanceRule(tolerance={"latency": 0.05})).removed == (1,)
    # latency not an objective: the two are equal everywhere that counts, both stay
    rule = DominanceRule(objectives=("error", "params"))
    out = update_archive([a], b, same, rule)
    assert out.entered and out.removed == ()


def test_archive_stays_mutually_nondominated_under_random_inserts():
    rng = np.random.default_rng(0)
    rule = DominanceRule(tolerance={"params": 0.0, "latency": 0.0})
    compare = interval_comparator({})
    archive: list[Member] = []
    for i in range(200):
        cand = Member(id=i, error=float(rng.uniform()), params=float(rng.integers(1, 50)), latency=float(rng.uniform()))
        out = update_archive(archive, cand, compare, rule)
        if out.entered:
            archive = [m for m in archive if m.id not in out.removed] + [cand]
    for a in archive:
        for b in archive:
            if a is not b:
                assert not dominates(rule.relations(a, b, compare(a, b)))
    # with exact comparisons the archive is exactly the non-dominated set of everything seen
    pts = normalised(archive, {"error": 1, "params": 1, "latency": 1})
    assert len(archive) >= 5
    assert hypervolume(pts, [1, 51, 1]) > 0


def test_prune_drops_the_most_crowded_and_keeps_extremes_and_the_error_best():
    members = [Member(id=i, error=0.1 + 0.01 * i, params=100 - 10 * i, latency=1.0) for i in range(6)]
    members.append(Member(id=99, error=0.1201, params=79.9, latency=1.0))  # crowds member 2
    dropped = prune(members, 5)
    assert len(dropped) == 2 and 0 not in dropped and 5 not in dropped
    assert 99 in dropped or 2 in dropped
    assert error_best(members).id == 0
    assert np.isinf(crowding_distance(members)[[0, 5]]).all()


# -- hypervolume -------------------------------------------------------------------------------
def test_hypervolume_simple_cases():
    assert hypervolume([[0.5, 0.5]], [1, 1]) == pytest.approx(0.25)
    assert hypervolume([[0, 0.5], [0.5, 0]], [1, 1]) == pytest.approx(0.75)
    assert hypervolume([[0.5, 0.5, 0.5]], [1, 1, 1]) == pytest.approx(0.125)
    assert hypervolume([[2, 0.5]], [1, 1]) == 0.0          # outside the reference box
    assert hypervolume(np.zeros((0, 3)), [1, 1, 1]) == 0.0


@pytest.mark.parametrize("dim", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_equals_inclusion_exclusion(dim, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    pts = rng.uniform(0, 1.2, size=(n, dim))  # some beyond the reference
    ref = np.ones(dim)
    assert hypervolume(pts, ref) == pytest.approx(hypervolume_inclusion_exclusion(pts, ref), rel=1e-12, abs=1e-12)


def test_hypervolume_matches_monte_carlo_on_a_large_3d_front():
    rng = np.random.default_rng(1)
    # points on a sphere-like trade-off surface, plus dominated clutter
    v = np.abs(rng.normal(size=(40, 3)))
    front = 1 - v / np.linalg.norm(v, axis=1, keepdims=True) * 0.9
    pts = np.vstack([front, front + 0.05])
    ref = np.array([1.0, 1.0, 1.0])
    samples = rng.uniform(0, 1, size=(400_000, 3))
    covered = np.zeros(len(samples), bool)
    for p in pts:
        covered |= (samples >= p).all(1)
    mc = covered.mean()
    se = np.sqrt(mc * (1 - mc) / len(samples))
    assert abs(hypervolume(pts, ref) - mc) < 4 * se


def test_hypervolume_ignores_dominated_points_and_grows_with_new_nondominated_ones():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 1, size=(10, 3))
    base = hypervolume(pts, [1, 1, 1])
    dominated = pts.max(0, keepdims=True) + 0.01
    assert hypervolume(np.vstack([pts, np.minimum(dominated, 0.999)]), [1, 1, 1]) == pytest.approx(base)
    better = pts.min(0, keepdims=True) * 0.5
    assert hypervolume(np.vstack([pts, better]), [1, 1, 1]) > base


def test_the_incumbent_is_proven_or_the_seed():
    """A member that entered on parameters alone (error undecided) never becomes the incumbent, even
    with the lowest point error; a gate-proven candidate does, also after a front dropped it; the
    seed is the incumbent when nothing is proven better."""
    seed = Member(id=1, error=0.050, params=1000)
    proven = Member(id=3, error=0.045, params=900)
    assert proven_best([], seed).id == 1                  # e.g. only #2 (0.049, entered on params) exists
    assert proven_best([seed], seed).id == 1
    assert proven_best([proven], seed).id == 3
    later = Member(id=5, error=0.040, params=900)         # passed the gate against #3
    assert proven_best([proven, later], seed).id == 5
    worse_proven = Member(id=4, error=0.060, params=900)   # proven against an island best, still worse than the seed
    assert proven_best([worse_proven], seed).id == 1
