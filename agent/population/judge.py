"""The error axis of dominance: the run's acceptance gate (agent.gate.Gate) between two programs.

relation(a, b) is the gate's dominance reading on the instances stored now (one paired Student-t
look, no training): BETTER when a's predicted M-ensemble error is confidently lower than b's,
WORSE when confidently higher, otherwise UNDECIDED; never a difference of point estimates.
decision(candidate, baseline) runs the gate's full test (the sequential test trains the instances
it asks for), which the population search spends on each candidate against its island's best.
"""
from __future__ import annotations

from agent.population.pareto import Member, Relation

READING = {"better": Relation.BETTER, "worse": Relation.WORSE, "undecided": Relation.UNDECIDED}


class GateJudge:
    def __init__(self, gate) -> None:
        self.gate = gate

    def relation(self, a: Member, b: Member) -> Relation:
        return READING[self.gate.dominance(a.id, b.id)]

    __call__ = relation

    def decision(self, candidate: int, baseline: int) -> dict:
        """The gate's decision record (accept, T2 numbers, looks, instances trained, baseline)."""
        return self.gate.decide(candidate, baseline)

    def statistics(self, cid: int, current: dict | None) -> dict | None:
        """T1 statistics over all stored instances, if the gate added instances since `current`."""
        return self.gate.statistics(cid, current)
