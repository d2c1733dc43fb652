"""Pareto dominance over (predicted M-ensemble error, parameters, latency), the archive update,
and the hypervolume of a front.

Error is compared by an injected comparator, so dominance on the error axis is whatever the
acceptance test's confidence bound says (better / worse / undecided), never a difference of point
estimates. Parameters are exact; latency is measured and noisy, so it compares with a relative
tolerance. All functions are pure: they take members and return decisions; the loop persists them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from itertools import combinations
from typing import Callable, Sequence

import numpy as np

OBJECTIVES = ("error", "params", "latency")


class Relation(IntEnum):
    """How `a` compares to `b` on one axis (lower is better on every axis)."""
    WORSE = -1
    UNDECIDED = 0   # a tie: within tolerance, or the error bound straddles zero
    BETTER = 1

    def flip(self) -> "Relation":
        return Relation(-self.value)


@dataclass(frozen=True)
class Member:
    """One evaluated program as the archive sees it. `error` is the point estimate of the predicted
    M-ensemble error (for display, ordering and crowding only; dominance asks the comparator)."""
    id: int
    error: float
    params: float
    latency: float = 0.0

    def objective(self, name: str) -> float:
        return float(getattr(self, name))


ErrorComparator = Callable[[Member, Member], Relation]   # relation of a's error to b's


def compare_cost(a: float, b: float, rel_tol: float = 0.0) -> Relation:
    """Exact for rel_tol = 0; otherwise `a` is better only when below b by more than rel_tol·max(a, b)."""
    margin = rel_tol * max(abs(a), abs(b))
    if a < b - margin:
        return Relation.BETTER
    if a > b + margin:
        return Relation.WORSE
    return Relation.UNDECIDED


@dataclass(frozen=True)
class DominanceRule:
    """Which axes count and how noisy cost axes compare. `objectives` must include "error"."""
    objectives: tuple[str, ...] = OBJECTIVES
    tolerance: dict[str, float] = field(default_factory=lambda: {"params": 0.0, "latency": 0.2})

    def relations(self, a: Member, b: Member, error: Relation) -> dict[str, Relation]:
        out = {}
        for name in self.objectives:
            out[name] = error if name == "error" else compare_cost(a.objective(name), b.objective(name),
                                                                   self.tolerance.get(name, 0.0))
        return out


def dominates(relations: dict[str, Relation]) -> bool:
    """a dominates b: worse on no axis and better on at least one (relations are a's vs b's)."""
    values = relations.values()
    return all(r != Relation.WORSE for r in values) and any(r == Relation.BETTER for r in values)


@dataclass(frozen=True)
class ArchiveUpdate:
    entered: bool
    dominated_by: tuple[int, ...]            # members that dominate the candidate
    removed: tuple[int, ...]                 # members the candidate dominates (they leave)
    error_relations: dict[int, int]          # member id -> Relation of the candidate's error to theirs


def update_archive(archive: Sequence[Member], candidate: Member, compare_error: ErrorComparator,
                   rule: DominanceRule = DominanceRule()) -> ArchiveUpdate:
    """The candidate enters when no member dominates it; members it dominates leave.
    One comparator call per member (its relation is antisymmetric: the member's view is the flip)."""
    dominated_by, removed, errors = [], [], {}
    for member in archive:
        if member.id == candidate.id:
            continue
        rel = compare_error(candidate, member)
        errors[member.id] = int(rel)
        forward = rule.relations(candidate, member, rel)
        if dominates({k: v.flip() for k, v in forward.items()}):
            dominated_by.append(member.id)
        elif dominates(forward):
            removed.append(member.id)
    entered = not dominated_by
    return ArchiveUpdate(entered=entered, dominated_by=tuple(dominated_by),
                         removed=tuple(removed) if entered else (), error_relations=errors)


def error_best(members: Sequence[Member]) -> Member:
    """The member with the lowest point estimate of predicted ensemble error (ties: the oldest)."""
    return min(members, key=lambda m: (m.error, m.id))


def proven_best(proven: Sequence[Member], seed: Member) -> Member:
    """The program a run deploys: the error-best of the seed and every candidate that passed the
    acceptance gate when it entered (`proven`), whether or not it is still on a front. A member that
    entered only on parameters or latency, its error undecided, never becomes the incumbent: the
    export improves provably or is the seed (the mission's acceptance rule, applied to the population
    search). A proven program stays deployable after a front drops it: the member that dominated it
    may have tied on error within the bound and won on parameters, which proves nothing about error
    (a default run went back from a proven #3 to the seed that way)."""
    pool = {m.id: m for m in proven}
    pool[seed.id] = seed
    return error_best(list(pool.values()))


def crowding_distance(members: Sequence[Member], objectives: Sequence[str] = OBJECTIVES) -> np.ndarray:
    """NSGA-II crowding distance on the point objectives (boundary members: inf)."""
    n = len(members)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for name in objectives:
        values = np.array([m.objective(name) for m in members], float)
        order = np.argsort(values, kind="stable")
        span = values[order[-1]] - values[order[0]]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (values[order[2:]] - values[order[:-2]]) / span
    return dist


def prune(members: Sequence[Member], capacity: int, objectives: Sequence[str] = OBJECTIVES) -> list[int]:
    """Ids to drop so at most `capacity` remain: the most crowded first, never the error-best."""
    keep = list(members)
    dropped: list[int] = []
    best = error_best(members).id if members else None
    while len(keep) > capacity:
        dist = crowding_distance(keep, objectives)
        candidates = [(d, -m.id, i) for i, (d, m) in enumerate(zip(dist, keep)) if m.id != best]
        _, _, i = min(candidates)           # most crowded; among equals the newest goes
        dropped.append(keep.pop(i).id)
    return dropped


# -- hypervolume ---------------------------------------------------------------------------
def hypervolume(points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Lebesgue measure of the region dominated by `points` and bounded by `reference`, all
    objectives minimised. Points not strictly below the reference on every axis add nothing.
    Exact, by slicing along the last axis (HSO); fine for the archive sizes used here (≤ ~100)."""
    ref = np.asarray(reference, float)
    pts = np.asarray(points, float).reshape(-1, len(ref))
    pts = pts[(pts < ref).all(1)]
    return _hso(_nondominated(pts), ref)


def _nondominated(pts: np.ndarray) -> np.ndarray:
    if len(pts) <= 1:
        return pts
    pts = np.unique(pts, axis=0)
    keep = [i for i, p in enumerate(pts)
            if not any((q <= p).all() and (q < p).any() for j, q in enumerate(pts) if j != i)]
    return pts[keep]


def _hso(pts: np.ndarray, ref: np.ndarray) -> float:
    if len(pts) == 0:
        return 0.0
    d = len(ref)
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        order = pts[np.argsort(pts[:, 0], kind="stable")]
        total, best_y = 0.0, ref[1]
        for x, y in order:
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(total)
    order = pts[np.argsort(pts[:, -1], kind="stable")]
    total = 0.0
    for i in range(len(order)):
        top = order[i + 1, -1] if i + 1 < len(order) else ref[-1]
        depth = top - order[i, -1]
        if depth > 0:
            total += depth * _hso(_nondominated(order[: i + 1, :-1]), ref[:-1])
    return float(total)


def hypervolume_inclusion_exclusion(points: np.ndarray, reference: Sequence[float]) -> float:
    """Brute force by inclusion–exclusion over every subset of boxes: exponential, for tests only."""
    ref = np.asarray(reference, float)
    pts = [p for p in np.asarray(points, float) if (p < ref).all()]
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in combinations(pts, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(ref - corner))
    return total


def normalised(members: Sequence[Member], scale: dict[str, float], objectives: Sequence[str] = OBJECTIVES) -> np.ndarray:
    """Objectives divided by a per-axis scale (e.g. the seed's values), one row per member."""
    return np.array([[m.objective(n) / scale[n] for n in objectives] for m in members], float).reshape(-1, len(objectives))


@dataclass(frozen=True)
class Placement:
    """What happens to one candidate on its island: the archive update plus the capacity prune."""
    update: ArchiveUpdate
    pruned: tuple[int, ...] = ()

    candidate_id: int = -1

    @property
    def entered(self) -> bool:
        return self.update.entered and self.candidate_id not in self.pruned

    def members_after(self, archive: Sequence[Member], candidate: Member) -> list[Member]:
        gone = set(self.update.removed) | set(self.pruned)
        kept = [m for m in archive if m.id not in gone]
        return kept + [candidate] if self.entered else kept


def place(archive: Sequence[Member], candidate: Member, compare_error: ErrorComparator,
          rule: DominanceRule = DominanceRule(), capacity: int | None = None) -> Placement:
    """Update the archive with the candidate, then prune the most crowded members beyond capacity
    (which may be the candidate itself: then it did not enter)."""
    update = update_archive(archive, candidate, compare_error, rule)
    if not update.entered:
        return Placement(update=update, candidate_id=candidate.id)
    after = [m for m in archive if m.id not in update.removed and m.id != candidate.id] + [candidate]
    pruned = tuple(prune(after, capacity, rule.objectives)) if capacity is not None else ()
    return Placement(update=update, pruned=pruned, candidate_id=candidate.id)
