"""One cycle's plan: the bandit's arms, and for every candidate slot its island, parent(s) and
inspirations. Pure: the same archives, bandit state and generator give the same plan, so a
resumed or re-run cycle proposes exactly what the first attempt did."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from agent.population.pareto import Member
from agent.population.selection import pick_inspirations, sample_pair, sample_parent

LLM_OPERATORS = ("mutate", "crossover")


def arm_name(proposer: str, operator: str | None = None) -> str:
    return f"{proposer}:{operator}" if operator else proposer


def split_arm(arm: str) -> tuple[str, str | None]:
    proposer, _, operator = arm.partition(":")
    return proposer, operator or None


def arms_for(proposers: Sequence[str], llm_operators: Sequence[str] = LLM_OPERATORS) -> list[str]:
    """Each proposer is an arm; the LLM is one arm per operator (mutate, crossover, hints...)."""
    out: list[str] = []
    for name in proposers:
        out += [arm_name(name, op) for op in llm_operators] if name == "llm" else [name]
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Slot:
    """One candidate to propose."""
    arm: str
    island: int
    parent: int                           # candidate id the edit applies to
    second_parent: int | None = None      # crossover
    inspirations: tuple[int, ...] = ()
    how: str = "exploit"                  # how the parent was drawn
    operator: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PlanConfig:
    exploit: float = 0.7
    power: float = 1.5
    inspirations: int = 2
    objectives: tuple[str, ...] = ("error", "params", "latency")
    crossover_arms: frozenset[str] = field(default_factory=lambda: frozenset({"crossover", "llm:crossover"}))


def plan_slots(allocation: dict[str, int], archives: Sequence[Sequence[Member]], rng: np.random.Generator,
               config: PlanConfig = PlanConfig()) -> list[Slot]:
    """Slots in arm order; slot j goes to island j mod k (skipping empty islands), so every island
    gets work each cycle. Crossover draws a pair from the island when it has two members, otherwise
    its second parent comes from the next island that has another member (or it mutates)."""
    islands = [i for i, a in enumerate(archives) if a]
    if not islands:
        raise ValueError("every island archive is empty: evaluate the seed first")
    slots, j = [], 0
    for arm, n in allocation.items():
        proposer, operator = split_arm(arm)
        for _ in range(n):
            island = islands[j % len(islands)]
            j += 1
            archive = archives[island]
            second = None
            if arm in config.crossover_arms:
                pair = sample_pair(archive, rng, exploit=config.exploit, power=config.power)
                if pair is None:
                    parent, how = sample_parent(archive, rng, exploit=config.exploit, power=config.power)
                    pool = [m for a in archives for m in a if m.id != parent.id]
                    second = pool[int(rng.integers(len(pool)))] if pool else None
                else:
                    (parent, second), how = pair, "pair"
            else:
                parent, how = sample_parent(archive, rng, exploit=config.exploit, power=config.power)
            others = [m for m in archive if second is None or m.id != second.id]  # the second parent is shown already
            inspirations = pick_inspirations(others, parent, rng, config.inspirations, config.objectives)
            slots.append(Slot(arm=arm, island=island, parent=parent.id, second_parent=second.id if second else None,
                              inspirations=tuple(m.id for m in inspirations), how=how,
                              operator=operator or ("crossover" if arm in config.crossover_arms else None)))
    return slots
