"""A cycle's plan (arms, islands, parents, inspirations) and the capacity-bounded placement."""
from __future__ import annotations

import numpy as np
import pytest

from agent.population.pareto import DominanceRule, Member, Relation, place
from agent.population.plan import PlanConfig, arms_for, plan_slots, split_arm


def by_point(a: Member, b: Member) -> Relation:
    return Relation.BETTER if a.error < b.error else Relation.WORSE if a.error > b.error else Relation.UNDECIDED


def test_arms_split_the_llm_by_operator():
    assert arms_for(["llm", "evolution", "random", "evolution"]) == ["llm:mutate", "llm:crossover", "evolution", "random"]
    assert arms_for(["llm"], ["mutate", "hint:width"]) == ["llm:mutate", "llm:hint:width"]
    assert split_arm("llm:hint:width") == ("llm", "hint:width") and split_arm("random") == ("random", None)


ISLANDS = [[Member(id=1, error=0.2, params=10, latency=1), Member(id=3, error=0.1, params=50, latency=1)],
           [Member(id=2, error=0.15, params=20, latency=1)],
           []]


def test_slots_cycle_over_nonempty_islands_and_parents_come_from_their_island():
    slots = plan_slots({"random": 3, "evolution": 2}, ISLANDS, np.random.default_rng(0))
    assert [s.island for s in slots] == [0, 1, 0, 1, 0]
    assert [s.arm for s in slots] == ["random"] * 3 + ["evolution"] * 2
    for s in slots:
        assert s.parent in {m.id for m in ISLANDS[s.island]}
        assert s.parent not in s.inspirations
        assert set(s.inspirations) <= {m.id for m in ISLANDS[s.island]}
    assert slots == plan_slots({"random": 3, "evolution": 2}, ISLANDS, np.random.default_rng(0))


def test_crossover_pairs_within_an_island_or_borrow_across_islands():
    slots = plan_slots({"llm:crossover": 2, "crossover": 2}, ISLANDS, np.random.default_rng(1),
                       PlanConfig(inspirations=1))
    on_0 = [s for s in slots if s.island == 0]
    on_1 = [s for s in slots if s.island == 1]
    assert all({s.parent, s.second_parent} == {1, 3} and s.how == "pair" for s in on_0)
    assert all(s.parent == 2 and s.second_parent in (1, 3) for s in on_1)
    assert all(s.operator == "crossover" for s in slots)
    with pytest.raises(ValueError):
        plan_slots({"random": 1}, [[], []], np.random.default_rng(0))


def test_place_enters_removes_and_prunes_to_capacity():
    rule = DominanceRule(tolerance={"params": 0.0, "latency": 0.0})
    archive = [Member(id=i, error=0.1 + 0.01 * i, params=100 - 10 * i, latency=1.0) for i in range(4)]
    # dominated: worse error, more params
    p = place(archive, Member(id=10, error=0.2, params=200, latency=1.0), by_point, rule, capacity=4)
    assert not p.entered and p.update.dominated_by and p.members_after(archive, None) == archive
    # dominates member 1 exactly: enters and replaces it, no prune needed
    new = Member(id=11, error=0.105, params=85, latency=1.0)
    p = place(archive, new, by_point, rule, capacity=4)
    assert p.entered and p.update.removed == (1,) and p.pruned == ()
    assert [m.id for m in p.members_after(archive, new)] == [0, 2, 3, 11]
    # a new trade-off point over capacity: the most crowded goes, never the error-best
    crowd = Member(id=12, error=0.1201, params=79.5, latency=1.0)
    p = place(archive, crowd, by_point, rule, capacity=4)
    assert p.update.entered and len(p.pruned) == 1 and 0 not in p.pruned
    assert len(p.members_after(archive, crowd)) == 4
    assert p.entered == (12 not in p.pruned)
