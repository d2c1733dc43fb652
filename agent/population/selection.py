"""Parent and inspiration sampling from an island's archive.

Exploit picks by rank of predicted ensemble error with power-law weights (rank 1 most likely,
as ShinkaEvolve's power-law parent selection); explore picks uniformly, so members that are good
only on parameters or latency are parents too. Inspirations are other members the prompt shows
beside the parent: the best of each other axis first (they differ most usefully), then random.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from agent.population.pareto import OBJECTIVES, Member


def rank_weights(n: int, power: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** power
    return w / w.sum()


def sample_parent(archive: Sequence[Member], rng: np.random.Generator, *, exploit: float = 0.7,
                  power: float = 1.5) -> tuple[Member, str]:
    """One parent and how it was chosen ("exploit" or "explore")."""
    if not archive:
        raise ValueError("cannot sample a parent from an empty archive")
    ordered = sorted(archive, key=lambda m: (m.error, m.id))
    if rng.random() < exploit:
        return ordered[int(rng.choice(len(ordered), p=rank_weights(len(ordered), power)))], "exploit"
    return ordered[int(rng.integers(len(ordered)))], "explore"


def sample_pair(archive: Sequence[Member], rng: np.random.Generator, *, exploit: float = 0.7,
                power: float = 1.5) -> tuple[Member, Member] | None:
    """Two distinct parents for crossover (the first is edited); None when fewer than two members."""
    if len({m.id for m in archive}) < 2:
        return None
    first, _ = sample_parent(archive, rng, exploit=exploit, power=power)
    rest = [m for m in archive if m.id != first.id]
    second, _ = sample_parent(rest, rng, exploit=exploit, power=power)
    return first, second


def pick_inspirations(archive: Sequence[Member], parent: Member, rng: np.random.Generator, k: int,
                      objectives: Sequence[str] = OBJECTIVES) -> list[Member]:
    """Up to k other members: the best on each axis (error first), then random others."""
    others = [m for m in archive if m.id != parent.id]
    chosen: list[Member] = []
    for name in objectives:
        if len(chosen) >= k:
            break
        left = [m for m in others if m not in chosen]
        if left:
            chosen.append(min(left, key=lambda m: (m.objective(name), m.id)))
    rest = [m for m in others if m not in chosen]
    while len(chosen) < k and rest:
        chosen.append(rest.pop(int(rng.integers(len(rest)))))
    return chosen


@dataclass(frozen=True)
class Difference:
    """How an inspiration differs from the parent, as numbers a prompt can state."""
    error: float           # inspiration − parent, predicted ensemble error
    params_ratio: float    # inspiration / parent
    latency_ratio: float

    def as_dict(self) -> dict[str, float]:
        return {"error": self.error, "params_ratio": self.params_ratio, "latency_ratio": self.latency_ratio}


def difference(parent: Member, other: Member) -> Difference:
    def ratio(a: float, b: float) -> float:
        return a / b if b else float("inf")
    return Difference(error=other.error - parent.error, params_ratio=ratio(other.params, parent.params),
                      latency_ratio=ratio(other.latency, parent.latency))
