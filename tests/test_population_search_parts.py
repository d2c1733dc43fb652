"""Parent/inspiration sampling, ring migration, the bandit and budgets: the population search's pure parts."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from agent.population import bandit
from agent.population.budgets import BudgetConfig, Spent, describe, evaluations_left, exhausted
from agent.population.migration import due, plan_migrations
from agent.population.pareto import Member
from agent.population.selection import difference, pick_inspirations, sample_pair, sample_parent

ARCHIVE = [Member(id=i, error=0.1 + 0.01 * i, params=1000 - 100 * i, latency=1.0 + (i % 3)) for i in range(6)]


def test_exploit_prefers_low_error_and_explore_is_uniform():
    rng = np.random.default_rng(0)
    exploit = Counter(sample_parent(ARCHIVE, rng, exploit=1.0)[0].id for _ in range(6000))
    explore = Counter(sample_parent(ARCHIVE, rng, exploit=0.0)[0].id for _ in range(6000))
    assert exploit[0] > exploit[1] > exploit[2] > exploit[5]
    assert exploit[0] / 6000 == pytest.approx(1 / sum(1 / np.arange(1, 7) ** 1.5), abs=0.03)
    assert all(abs(explore[i] / 6000 - 1 / 6) < 0.03 for i in range(6))
    assert sample_parent(ARCHIVE, rng, exploit=1.0)[1] == "exploit"
    with pytest.raises(ValueError):
        sample_parent([], rng)


def test_sampling_is_deterministic_for_a_seeded_generator():
    a = [sample_parent(ARCHIVE, np.random.default_rng([3, c]))[0].id for c in range(20)]
    b = [sample_parent(ARCHIVE, np.random.default_rng([3, c]))[0].id for c in range(20)]
    assert a == b and len(set(a)) > 1


def test_crossover_pairs_are_distinct_and_need_two_members():
    rng = np.random.default_rng(1)
    for _ in range(200):
        first, second = sample_pair(ARCHIVE, rng)
        assert first.id != second.id
    assert sample_pair(ARCHIVE[:1], rng) is None


def test_inspirations_are_the_other_axes_best_then_random_and_never_the_parent():
    rng = np.random.default_rng(2)
    parent = ARCHIVE[2]
    picks = pick_inspirations(ARCHIVE, parent, rng, k=3)
    ids = [m.id for m in picks]
    assert parent.id not in ids and len(set(ids)) == 3
    assert ids[0] == 0          # lowest error
    assert ids[1] == 5          # fewest parameters
    assert ids[2] == 3          # lowest latency among the rest (ids 0 and 3 have latency 1.0; 0 is taken)
    assert pick_inspirations(ARCHIVE[:1], ARCHIVE[0], rng, k=3) == []
    d = difference(ARCHIVE[2], ARCHIVE[5])
    assert d.error == pytest.approx(0.03) and d.params_ratio == pytest.approx(500 / 800)


def test_migration_is_a_ring_of_each_islands_error_best_and_skips_what_the_target_holds():
    islands = [[ARCHIVE[0], ARCHIVE[3]], [ARCHIVE[1]], [ARCHIVE[2], ARCHIVE[4]]]
    moves = plan_migrations(islands)
    assert [(m.member.id, m.source, m.target) for m in moves] == [(0, 0, 1), (1, 1, 2), (2, 2, 0)]
    islands[1].append(ARCHIVE[0])
    # 0 is already on island 1 (and is now island 1's best, so it moves on to island 2)
    assert [(m.member.id, m.source, m.target) for m in plan_migrations(islands)] == [(0, 1, 2), (2, 2, 0)]
    assert plan_migrations([[ARCHIVE[0]]]) == [] and plan_migrations([[], [ARCHIVE[1]]])[0].target == 0
    assert due(4, 2, 3) and not due(3, 2, 3) and not due(4, 2, 1) and not due(0, 2, 3)


# -- the bandit ------------------------------------------------------------------------------
def simulate(policy: str, probabilities: dict[str, float], cycles: int, budget: int, seed: int = 0):
    rng, reward_rng = np.random.default_rng(seed), np.random.default_rng(seed + 100)
    state = bandit.empty_state(list(probabilities))
    log = []
    for _ in range(cycles):
        alloc = bandit.allocate(state, budget, rng, policy=policy)
        log.append(alloc)
        outcomes = [(arm, float(reward_rng.random() < probabilities[arm])) for arm, n in alloc.items() for _ in range(n)]
        state = bandit.update(state, outcomes)
    return log, state


@pytest.mark.parametrize("policy", ["thompson", "ucb1"])
def test_bandit_stops_spending_on_a_useless_arm(policy):
    probs = {"good": 0.5, "fair": 0.25, "useless": 0.0}
    log, state = simulate(policy, probs, cycles=60, budget=4)
    late = Counter()
    for alloc in log[-15:]:
        late.update(alloc)
    total_useless = sum(a["useless"] for a in log)
    assert late["useless"] <= {"thompson": 1, "ucb1": 4}[policy]
    assert total_useless < 0.1 * 60 * 4
    assert late["good"] > late["fair"] >= late["useless"]
    assert bandit.means(state)["useless"] == 0.0


@pytest.mark.parametrize("policy", ["thompson", "ucb1"])
def test_two_levels_stop_a_proposer_whose_every_operator_fails_sooner(policy):
    """Three operator arms of one useless proposer: pooled at the proposer level, their failures add
    up, so together they get fewer slots than the same arms treated one by one."""
    probs = {"evolution": 0.3, "random": 0.25, "llm:mutate": 0.0, "llm:crossover": 0.0, "llm:hint:0": 0.0}

    def run(group):
        rng, reward_rng = np.random.default_rng(0), np.random.default_rng(1)
        state, useless = bandit.empty_state(list(probs)), 0
        for _ in range(15):
            alloc = bandit.allocate(state, 4, rng, policy=policy, group=group)
            useless += sum(n for a, n in alloc.items() if a.startswith("llm"))
            state = bandit.update(state, [(a, float(reward_rng.random() < probs[a])) for a, n in alloc.items()
                                          for _ in range(n)])
        return useless

    flat, grouped = run(None), run(lambda arm: arm.split(":")[0])
    assert grouped < flat
    assert grouped <= {"thompson": 9, "ucb1": 16}[policy]   # of 60 slots; flat: 19-34 (thompson), 27-33 (ucb1)


def test_bandit_allocation_sums_to_the_budget_and_tries_every_arm_first_under_ucb1():
    state = bandit.empty_state(["a", "b", "c", "d"])
    alloc = bandit.allocate(state, 4, np.random.default_rng(0), policy="ucb1")
    assert alloc == {"a": 1, "b": 1, "c": 1, "d": 1}
    alloc = bandit.allocate(state, 7, np.random.default_rng(0), policy="thompson")
    assert sum(alloc.values()) == 7
    assert bandit.allocate(state, 0, np.random.default_rng(0)) == dict.fromkeys("abcd", 0)
    with pytest.raises(ValueError):
        bandit.allocate(state, 2, np.random.default_rng(0), policy="greedy")


def test_bandit_state_round_trips_and_resumes_identically():
    import json
    log_a, state_a = simulate("thompson", {"x": 0.3, "y": 0.6}, cycles=10, budget=3)
    restored = json.loads(json.dumps(state_a))
    next_a = bandit.allocate(state_a, 5, np.random.default_rng([0, 11]))
    next_b = bandit.allocate(restored, 5, np.random.default_rng([0, 11]))
    assert next_a == next_b
    assert bandit.with_arms(restored, ["y", "z"]) == {"y": state_a["y"], "z": {"pulls": 0.0, "reward": 0.0}}
    clipped = bandit.update(bandit.empty_state(["x"]), [("x", 3.0), ("x", -1.0)])
    assert clipped["x"] == {"pulls": 2.0, "reward": 1.0}


# -- budgets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("field,spent,under,at", [
    ("max_wall_s", "wall_s", 59.9, 60.0),
    ("max_evaluations", "evaluations", 9, 10),
    ("max_tokens", "tokens", 999, 1000),
])
def test_each_budget_stops_exactly_when_reached(field, spent, under, at):
    cap = {"max_wall_s": 60.0, "max_evaluations": 10, "max_tokens": 1000}[field]
    budget = BudgetConfig(**{field: cap})
    assert exhausted(budget, Spent(**{spent: under})) is None
    reason = exhausted(budget, Spent(**{spent: at}))
    assert reason and "budget spent" in reason
    assert exhausted(BudgetConfig(), Spent(wall_s=1e9, evaluations=10**9, tokens=10**9)) is None


def test_evaluations_left_cuts_the_last_cycle_and_describe_shows_spent_and_caps():
    budget = BudgetConfig(max_evaluations=10, max_tokens=5000)
    assert evaluations_left(budget, Spent(evaluations=7), in_flight=2) == 1
    assert evaluations_left(budget, Spent(evaluations=12)) == 0
    assert evaluations_left(BudgetConfig(), Spent(evaluations=12)) is None
    text = describe(budget, Spent(wall_s=12.4, evaluations=7, tokens=1234))
    assert "evaluations 7 / 10" in text and "tokens 1,234 / 5,000" in text and "wall 12s" in text
    with pytest.raises(ValueError):
        BudgetConfig(max_evaluations=0)
