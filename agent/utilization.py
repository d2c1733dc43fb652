"""How busy the sandbox was: from each evaluation's [start, end] interval and the run's wall time.

busy_fraction: share of wall time with at least one evaluation running (the union of intervals);
occupancy: mean number of evaluations running, over the worker slots (sum of durations / (slots × wall)).
A proposal step that blocks evaluation shows up as gaps in the union.
"""
from __future__ import annotations

from typing import Iterable, Sequence


def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted((a, b) for a, b in intervals if b > a):
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def clip(intervals: Iterable[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    return [(max(a, start), min(b, end)) for a, b in intervals if min(b, end) > max(a, start)]


def sandbox_utilization(intervals: Sequence[tuple[float, float]], start: float, end: float, slots: int = 1) -> dict:
    wall = max(end - start, 1e-9)
    inside = clip(intervals, start, end)
    return {"wall_s": end - start, "busy_s": union_length(inside), "busy_fraction": union_length(inside) / wall,
            "occupancy": sum(b - a for a, b in inside) / (max(slots, 1) * wall), "evaluations": len(inside)}


def evaluation_intervals(rows) -> list[tuple[float, float]]:
    """[start, end] of each stored evaluation (candidates.evaluated is its end, eval_seconds its length)."""
    return [(r.evaluated - r.eval_seconds, r.evaluated) for r in rows if r.evaluated and r.eval_seconds]
