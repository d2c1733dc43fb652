"""Crossover of two programs: every child mixes both parents' differing hunks and parses."""
from __future__ import annotations

import ast

import numpy as np

from agent.proposers.base import ProgramRecord, ProposalContext, make_proposer
from agent.proposers.mutation import crossover, mutate
from evaluator.tasks import get_task

SEED = get_task("digits").seed_source()


def two_parents(seed: int) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    a, _ = mutate(SEED, rng, edits=3)
    b, _ = mutate(SEED, rng, edits=3)
    return a, b


def test_children_take_some_but_not_all_differing_hunks_and_parse():
    mixed = 0
    for seed in range(30):
        a, b = two_parents(seed)
        child, taken = crossover(a, b, np.random.default_rng(seed))
        ast.parse(child)
        if a == b:
            assert child == a and taken == []
            continue
        assert taken and child != a
        hunks = sum(op[0] != "equal" for op in __import__("difflib").SequenceMatcher(
            None, a.splitlines(True), b.splitlines(True), autojunk=False).get_opcodes())
        if hunks > 1:
            assert child != b
            mixed += 1
        child_lines = set(child.splitlines())
        assert child_lines <= set(a.splitlines()) | set(b.splitlines())   # nothing invented
    assert mixed >= 10


def _ctx(second: ProgramRecord | None, elites: list[ProgramRecord]) -> ProposalContext:
    a, _ = two_parents(1)
    parent = ProgramRecord(id=5, source=a, status="accepted")
    return ProposalContext(task=get_task("digits"), incumbent=parent, history=[], elites=elites, cycle=1,
                           rng=np.random.default_rng(0), second_parent=second)


def test_the_proposer_uses_the_given_second_parent_or_an_elite_or_fails_typed():
    _, b = two_parents(1)
    other = ProgramRecord(id=9, source=b, status="rejected")
    prop = make_proposer("crossover")
    given = prop.propose(_ctx(other, []), 3)
    assert all(c.failure is None and c.parent_id == 5 and c.meta["second_parent"] == 9 for c in given)
    from_elites = prop.propose(_ctx(None, [other]), 2)
    assert all(c.meta["second_parent"] == 9 for c in from_elites)
    alone = prop.propose(_ctx(None, []), 1)
    assert alone[0].failure == "no_second_parent" and not alone[0].source
