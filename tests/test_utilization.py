"""Sandbox utilization from evaluation intervals, checked against a sampled timeline."""
from __future__ import annotations

import numpy as np
import pytest

from agent.utilization import sandbox_utilization, union_length


def test_union_of_overlapping_nested_and_disjoint_intervals():
    assert union_length([(0, 2), (1, 3), (5, 6), (5.2, 5.5), (7, 7)]) == pytest.approx(4.0)
    assert union_length([]) == 0.0


def test_utilization_matches_a_sampled_timeline():
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 100, 30)
    intervals = [(s, s + rng.uniform(0.5, 6)) for s in starts]
    u = sandbox_utilization(intervals, 10.0, 90.0, slots=2)
    t = np.linspace(10, 90, 200_001)[:-1] + 40 / 200_000
    running = np.zeros_like(t)
    for a, b in intervals:
        running += (t >= a) & (t < b)
    assert u["busy_fraction"] == pytest.approx((running > 0).mean(), abs=1e-3)
    assert u["occupancy"] == pytest.approx(running.mean() / 2, abs=1e-3)
