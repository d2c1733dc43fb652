"""A multi-armed bandit that splits each cycle's candidate budget across arms (proposers, and the
LLM's operators). Rewards are in [0, 1] (1: the candidate entered its archive or grew the front's
hypervolume). State is a plain dict of per-arm pulls and summed reward, stored in the run, so a
resumed run continues the same allocation; draws come from a caller-seeded generator.

- thompson: Beta(1 + reward, 1 + pulls − reward) posterior per arm; each slot goes to the arm
  with the largest draw. A useless arm's posterior sinks towards 0 and it stops being drawn.
- ucb1: mean + c·sqrt(2 ln T / n) (Auer et al. 2002); each slot goes to the largest index, counting
  slots already given this cycle as pulls at the arm's current mean.
Either runs flat over the arms or in two levels, proposers then their operators (`group`).
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np

Policy = Literal["thompson", "ucb1"]


def empty_state(arms: Sequence[str]) -> dict[str, dict[str, float]]:
    return {arm: {"pulls": 0.0, "reward": 0.0} for arm in arms}


def with_arms(state: dict | None, arms: Sequence[str]) -> dict[str, dict[str, float]]:
    """The stored state restricted to, and completed with, the configured arms."""
    state = state or {}
    return {arm: dict(state.get(arm, {"pulls": 0.0, "reward": 0.0})) for arm in arms}


def allocate(state: dict[str, dict[str, float]], budget: int, rng: np.random.Generator, *,
             policy: Policy = "thompson", exploration: float = 1.0,
             group: Callable[[str], str] | None = None) -> dict[str, int]:
    """Split `budget` slots across the arms of `state` (insertion order breaks ties).

    With `group` (arm -> proposer), two levels: the slots go to proposers first, each judged on
    all of its arms' outcomes pooled, then within a proposer to its arms (operators). A proposer
    whose every operator fails is then recognised as fast as a single arm would be, instead of
    each operator having to fail on its own."""
    if group is not None:
        members: dict[str, list[str]] = {}
        for arm in state:
            members.setdefault(group(arm), []).append(arm)
        pooled = {g: {"pulls": sum(state[a]["pulls"] for a in arms), "reward": sum(state[a]["reward"] for a in arms)}
                  for g, arms in members.items()}
        counts = dict.fromkeys(state, 0)
        for g, n in allocate(pooled, budget, rng, policy=policy, exploration=exploration).items():
            if n:
                counts.update(allocate({a: state[a] for a in members[g]}, n, rng, policy=policy,
                                       exploration=exploration))
        return counts
    arms = list(state)
    counts = dict.fromkeys(arms, 0)
    if not arms or budget <= 0:
        return counts
    pulls = np.array([state[a]["pulls"] for a in arms], float)
    reward = np.array([state[a]["reward"] for a in arms], float)
    if policy == "thompson":
        for _ in range(budget):
            draws = rng.beta(1.0 + reward, 1.0 + pulls - reward)
            counts[arms[int(np.argmax(draws))]] += 1
        return counts
    if policy != "ucb1":
        raise ValueError(f"unknown bandit policy {policy!r}")
    virtual = np.zeros(len(arms))
    means = np.divide(reward, pulls, out=np.zeros(len(arms)), where=pulls > 0)
    for _ in range(budget):
        n = pulls + virtual
        total = max(n.sum(), 1.0)
        with np.errstate(divide="ignore"):
            index = np.where(n > 0, means + exploration * np.sqrt(2.0 * np.log(total) / np.maximum(n, 1e-12)), np.inf)
        best = int(np.argmax(index))
        virtual[best] += 1
        counts[arms[best]] += 1
    return counts


def update(state: dict[str, dict[str, float]], outcomes: Sequence[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """A new state with each (arm, reward) outcome counted as one pull; rewards are clipped to [0, 1]."""
    new = {arm: dict(v) for arm, v in state.items()}
    for arm, reward in outcomes:
        slot = new.setdefault(arm, {"pulls": 0.0, "reward": 0.0})
        slot["pulls"] += 1.0
        slot["reward"] += float(min(1.0, max(0.0, reward)))
    return new


def means(state: dict[str, dict[str, float]]) -> dict[str, float | None]:
    return {arm: (v["reward"] / v["pulls"] if v["pulls"] else None) for arm, v in state.items()}
