"""A cycle's proposal stage: what its proposals may see, who proposes what, one insert.

Proposals for cycle n see the decisions of cycles <= n - lag (lag 2 under the overlapped pipeline,
so they can be written while cycle n-1 trains). The hill climber gives every proposer one context
around the incumbent; the population search asks its plan (agent.population.engine) for one slot per
candidate, each with its island, parent(s) and inspirations, and calls the slot's proposer once.
All of a cycle's proposals, the bandit's allocation and the proposers' states commit in one
transaction, so a resumed run either has the whole cycle or proposes it again from the same state.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from agent import progress
from agent.delta import unified_diff
from agent.population.budgets import Spent, evaluations_left
from agent.population.plan import Slot, arm_name, split_arm
from agent.proposers.base import Candidate, ProgramRecord, ProposalContext
from agent.store import CandidateRow
from evaluator.statistics import predicted_from_dict

if TYPE_CHECKING:
    from agent.loop import SearchLoop

log = logging.getLogger("ensnas")


def through(loop: "SearchLoop", cycle: int) -> int:
    """The last cycle whose decisions proposals for `cycle` see (0: the seed)."""
    return max(0, cycle - loop.lag)


def snapshot(loop: "SearchLoop", cycle: int) -> list[CandidateRow]:
    """The seed and the candidates of cycles <= through(cycle), most recent first."""
    return [r for r in loop.store.candidates(order="recent") if r.cycle <= through(loop, cycle)]


def incumbent_after(loop: "SearchLoop", cycle: int) -> int:
    if cycle < 1:
        return loop.store.get_state("seed_id")
    rows = [c for c in loop.store.cycles() if c["cycle"] == cycle]
    return rows[0]["incumbent_after"] if rows and rows[0]["incumbent_after"] is not None \
        else loop.store.get_state("incumbent")


def hill_context(loop: "SearchLoop", cycle: int, seen: list[CandidateRow]) -> ProposalContext:
    from agent.loop import record
    incumbent = loop.store.candidate(incumbent_after(loop, through(loop, cycle)))
    elite_rows = sorted((r for r in seen if r.status in ("accepted", "seed", "rejected") and r.statistics),
                        key=lambda r: predicted_from_dict(r.statistics, loop.members))[: loop.config.elites]
    return ProposalContext(task=loop.task, incumbent=record(incumbent), cycle=cycle, members=loop.members,
                           history=[record(r) for r in seen[: max(loop.config.history, 32)]],
                           elites=[record(r) for r in elite_rows], rng=np.random.default_rng([loop.config.seed, cycle]))


def slot_context(loop: "SearchLoop", cycle: int, j: int, slot: Slot, seen: list[CandidateRow],
                 archive: list[ProgramRecord]) -> ProposalContext:
    from agent.loop import record
    known = {r.id: r for r in archive}
    get = lambda cid: known.get(cid) or record(loop.store.candidate(cid))  # noqa: E731
    return ProposalContext(task=loop.task, incumbent=get(slot.parent), cycle=cycle, members=loop.members,
                           history=[record(r) for r in seen[: max(loop.config.history, 32)]],
                           elites=archive, rng=np.random.default_rng([loop.config.seed, cycle, j]),
                           second_parent=get(slot.second_parent) if slot.second_parent is not None else None,
                           inspirations=[get(i) for i in slot.inspirations], operator=slot.operator,
                           island=slot.island)


def cycle_budget(loop: "SearchLoop") -> int:
    """Candidates this cycle may propose: the configured number, cut to the evaluations left."""
    total = loop.config.population.candidates or sum(spec.candidates for spec, _ in loop.proposers)
    left = evaluations_left(loop.config.budget, Spent(evaluations=loop.planned_evaluations()))
    return total if left is None else min(total, left)


def propose_cycle(loop: "SearchLoop", cycle: int) -> None:
    from agent.loop import record
    with loop.store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO cycles(cycle, status, started, incumbent_before) VALUES(?,?,?,?)",
                   (cycle, "proposing", time.time(), loop.store.get_state("incumbent")))
    seen = snapshot(loop, cycle)
    budget = cycle_budget(loop)
    proposals: list[tuple[Candidate, str, int | None]] = []   # (candidate, arm, island)
    allocation, arm_state = None, {}
    if loop.population is not None:
        fixed = {arm_name(spec.name, "mutate" if spec.name == "llm" else None): spec.candidates
                 for spec, _ in loop.proposers}
        plan = loop.population.plan(cycle, loop.arms, budget, through_cycle=through(loop, cycle), fixed=fixed)
        allocation, arm_state = plan.allocation, plan.state
        records = [sorted((record(loop.store.candidate(m.id)) for m in a),
                          key=lambda r: predicted_from_dict(r.statistics, loop.members))
                   for a in loop.population.archives(at_cycle=through(loop, cycle))]
        by_name = {spec.name: proposer for spec, proposer in loop.proposers}
        for j, slot in enumerate(plan.slots):
            start = time.perf_counter()
            ctx = slot_context(loop, cycle, j, slot, seen, records[slot.island])
            with progress.phase(f"cycle {cycle}: {slot.arm} proposing ({j + 1}/{len(plan.slots)})"):
                for cand in by_name[split_arm(slot.arm)[0]].propose(ctx, 1):
                    proposals.append((dataclasses.replace(cand, meta=dict(cand.meta, slot=slot.as_dict())),
                                      slot.arm, slot.island))
            loop.time_spent("proposal", time.perf_counter() - start)
    else:
        ctx = hill_context(loop, cycle, seen)
        for spec, proposer in loop.proposers:
            n = min(spec.candidates, budget - len(proposals))
            if n <= 0:
                break
            start = time.perf_counter()
            with progress.phase(f"cycle {cycle}: {spec.name} proposing {n}"):
                proposals += [(cand, spec.name, None) for cand in proposer.propose(ctx, n)]
            loop.time_spent("proposal", time.perf_counter() - start)
    insert_proposals(loop, cycle, proposals, allocation, arm_state)


def insert_proposals(loop: "SearchLoop", cycle: int, proposals: list, allocation: dict | None,
                     arm_state: dict) -> None:
    """Pre-filter and insert the cycle's proposals, with the allocation and proposer states, at once."""
    start = time.perf_counter()
    store, parents = loop.store, {}
    with store.transaction() as db:
        for cand, arm, island in proposals:
            if cand.parent_id is not None and cand.parent_id not in parents:
                parents[cand.parent_id] = store.candidate(cand.parent_id).source or ""
            diff = unified_diff(parents.get(cand.parent_id, ""), cand.source or "", parent_name=f"#{cand.parent_id}",
                                child_name="candidate")
            common = dict(cycle=cycle, proposer=cand.proposer, parent_id=cand.parent_id, diff=diff, island=island,
                          arm=arm)
            if cand.failure or not cand.source:
                store.insert_candidate(db, source=cand.source or None, status="proposal_failed",
                                       reason=cand.failure or "empty", detail=cand.failure_detail, meta=cand.meta,
                                       **common)
                continue
            verdict = loop.prefilter.check(cand.source)
            meta = dict(cand.meta, novelty={"similarity": verdict.similarity, "nearest": verdict.nearest_id})
            cid = store.insert_candidate(db, source=cand.source, status="pending" if verdict.passed else "filtered",
                                         reason=verdict.reason.value if verdict.reason else None,
                                         detail=verdict.detail, meta=meta, **common)
            if verdict.passed:
                loop.prefilter.archive(cid, cand.source)  # later proposals in this cycle see it
        if allocation is not None:
            store.record_allocation(db, cycle=cycle, allocation=allocation, state=arm_state)
        # with the proposals, so a resumed run continues each proposer exactly where they left it
        for spec, proposer in loop.proposers:
            store.set_state(f"proposer:{spec.name}", proposer.state_dict(), db)
        db.execute("UPDATE cycles SET status = 'evaluating' WHERE cycle = ?", (cycle,))
    loop.time_spent("store", time.perf_counter() - start)
    log.info("cycle %d: %d proposals%s, %d passed the pre-filter", cycle, len(proposals),
             f" ({', '.join(f'{a} {n}' for a, n in allocation.items() if n)})" if allocation else "",
             len(store.candidates(cycle=cycle, status="pending")))
