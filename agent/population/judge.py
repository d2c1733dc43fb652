"""The error axis of dominance: the acceptance test's confidence bound between two stored programs.

relation(a, b) is BETTER when the (1−α) lower bound on "a's predicted M-ensemble error is below
b's" is above zero, WORSE when the upper bound is below zero, otherwise UNDECIDED; never a
difference of point estimates. Each pair is tested once and its decision kept for the record.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from agent.population.pareto import Member, Relation
from evaluator.acceptance import AcceptanceConfig, acceptance_test


class AcceptanceJudge:
    def __init__(self, *, load_val: Callable[[int], np.ndarray], labels: np.ndarray, config: AcceptanceConfig,
                 noise_variance: float | None = None) -> None:
        self.load_val, self.labels, self.config, self.noise = load_val, labels, config, noise_variance
        self._val: dict[int, np.ndarray] = {}
        self._decisions: dict[tuple[int, int], dict] = {}

    def _probs(self, cid: int) -> np.ndarray:
        if cid not in self._val:
            self._val[cid] = self.load_val(cid)
        return self._val[cid]

    def decision(self, candidate: int, baseline: int) -> dict:
        """The acceptance test of `candidate` against `baseline` (Decision.as_dict() plus the baseline id)."""
        key = (candidate, baseline)
        if key not in self._decisions:
            d = acceptance_test(self._probs(baseline), self._probs(candidate), self.labels, self.config,
                                noise_variance=self.noise)
            self._decisions[key] = dict(d.as_dict(), baseline=baseline)
        return self._decisions[key]

    def relation(self, a: Member, b: Member) -> Relation:
        d = self.decision(a.id, b.id)
        if d["lower_bound"] > 0:
            return Relation.BETTER
        if d["upper_bound"] < 0:
            return Relation.WORSE
        return Relation.UNDECIDED

    __call__ = relation
