"""The population search over the run store: island archives, the bandit's plan, decisions, migration.

The loop owns proposing and evaluating; this module turns stored candidates into archive members,
asks the pure parts (pareto, plan, bandit, migration) what to do, and writes the result through
the store. Everything a later cycle needs is read back from the store (archive membership at a
cycle, rewards per arm from decided candidates), so a resumed run continues exactly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from agent.population import bandit
from agent.population.config import PopulationConfig
from agent.population.migration import due, plan_migrations
from agent.population.pareto import (DominanceRule, Member, Relation, error_best, hypervolume, normalised, place,
                                     proven_best)
from agent.population.plan import PlanConfig, Slot, arm_name, plan_slots, split_arm
from agent.proposers.base import ProgramRecord
from agent.store import TERMINAL, CandidateRow, RunStore
from evaluator.statistics import predicted_from_dict


class Judge(Protocol):   # agent.population.judge.GateJudge
    def relation(self, a: Member, b: Member) -> Relation: ...
    def decision(self, candidate: int, baseline: int) -> dict: ...
    def statistics(self, cid: int, current: dict | None) -> dict | None: ...


def member_of(row: CandidateRow | ProgramRecord, members: int, latency_batch: int = 1) -> Member:
    """A stored, evaluated candidate (or a proposer's record of one) as an archive member;
    unmeasured costs count as infinite."""
    latency = (row.latency or {}).get(f"batch_{latency_batch}_ms")
    return Member(id=row.id, error=predicted_from_dict(row.statistics, members),
                  params=float(row.param_count) if row.param_count is not None else math.inf,
                  latency=float(latency) if latency else math.inf)


@dataclass(frozen=True)
class CyclePlan:
    allocation: dict[str, int]
    slots: list[Slot]
    state: dict[str, dict[str, float]]      # the bandit's per-arm pulls/reward it was drawn from


class Population:
    def __init__(self, *, store: RunStore, config: PopulationConfig, members: int, seed: int) -> None:
        self.store, self.config, self.members, self.seed = store, config, members, seed
        self.rule = DominanceRule(objectives=tuple(config.objectives), tolerance=dict(config.tolerance))

    # -- reading the store -------------------------------------------------------------
    def member(self, cid: int) -> Member:
        """Read afresh: the gate may have trained more instances and updated the statistics."""
        return member_of(self.store.candidate(cid), self.members, self.config.latency_batch)

    def archives(self, at_cycle: int | None = None) -> list[list[Member]]:
        out: list[list[Member]] = [[] for _ in range(self.config.islands)]
        for row in self.store.archive(at_cycle=at_cycle):
            out[row["island"]].append(self.member(row["candidate_id"]))
        return out

    def bandit_state(self, arms: Sequence[str], through_cycle: int) -> dict[str, dict[str, float]]:
        """Per-arm pulls and summed reward over the decided candidates of cycles ≤ through_cycle."""
        outcomes = [(r.arm, float((r.decision or {}).get("reward", 0.0)))
                    for r in self.store.candidates(status=TERMINAL) if r.arm and 0 < r.cycle <= through_cycle]
        return bandit.update(bandit.with_arms(None, arms), [o for o in outcomes if o[0] in arms])

    # -- the seed and the plan ---------------------------------------------------------
    def add_seed(self, db, seed_id: int) -> None:
        for island in range(self.config.islands):
            self.store.archive_enter(db, island=island, candidate_id=seed_id, cycle=0, origin="seed")

    def plan(self, cycle: int, arms: Sequence[str], budget: int, *, through_cycle: int,
             fixed: dict[str, int] | None = None) -> CyclePlan:
        """The cycle's allocation and slots from the state after cycle `through_cycle` (the loop's lag)."""
        rng = np.random.default_rng([self.seed, cycle, 15])
        archives = self.archives(at_cycle=through_cycle)
        crossing = {"crossover", arm_name("llm", "crossover")}
        if len({m.id for a in archives for m in a}) < 2:  # nothing to cross yet: those arms sit this cycle out
            arms = [a for a in arms if a not in crossing] or list(arms)
        state = self.bandit_state(arms, through_cycle)
        if self.config.bandit == "off":
            allocation = {a: n for a, n in (fixed or {}).items() if a in arms}
        else:
            allocation = bandit.allocate(state, budget, rng, policy=self.config.bandit,
                                         group=lambda arm: split_arm(arm)[0])
        c = self.config
        slots = plan_slots({a: n for a, n in allocation.items() if n}, archives, rng,
                           PlanConfig(exploit=c.exploit, power=c.rank_power, inspirations=c.inspirations,
                                      objectives=tuple(c.objectives),
                                      crossover_arms=frozenset(crossing)))
        return CyclePlan(allocation=allocation, slots=slots, state=state)

    # -- decisions ---------------------------------------------------------------------
    def decide(self, cycle: int, judge: Judge) -> dict:
        """Place each evaluated candidate of the cycle on its island (in id order), then migrate if
        due; every other terminal candidate of the cycle gets reward 0. Returns the cycle summary
        (stored as state population:cycle:<n> with the migrations, so deciding again is a no-op)."""
        done = self.store.get_state(f"population:cycle:{cycle}")
        if done is not None:  # decided before a kill: everything below committed with this summary
            return done
        archives = self.archives()
        for row in self.store.candidates(cycle=cycle, status="evaluated"):
            island = row.island if row.island is not None else 0
            twin = behavioural_twin(self.store, row.id, [m.id for a in archives for m in a])
            if twin is not None:   # equal on every objective, it would enter and crowd the front
                with self.store.transaction() as db:
                    self.store.set_decision(db, row.id, accepted=False, decision=dict(
                        mode="pareto", accept=False, gate_accept=False, island=island, twin=twin,
                        dominated_by=[twin], removed=[], pruned=[], error_relations={}, reward=0.0,
                        reason=f"behaves exactly as #{twin}: the same predictions on every shared seed"))
                continue
            # the gate's full test against the proven incumbent (training what it asks for): an
            # accept is a gain for the program the run deploys, as along the hill climber's chain
            # (against an island's point-estimate best, an unproven and optimistically selected
            # baseline, proof got harder the luckier the front); then dominance readings against
            # every member on the instances stored now
            best = self.member(self.store.get_state("incumbent") or self.store.get_state("seed_id"))
            gate = judge.decision(row.id, best.id)
            stats = {cid: judge.statistics(cid, self.store.candidate(cid).statistics) for cid in (row.id, best.id)}
            fresh = {cid: dataclasses.replace(self.member(cid), error=predicted_from_dict(st, self.members))
                     for cid, st in stats.items() if st is not None}
            archives[island] = [fresh.get(m.id, m) for m in archives[island]]
            cand = fresh.get(row.id) or self.member(row.id)
            placement = place(archives[island], cand, judge.relation, self.rule, self.config.capacity)
            reward = float(placement.entered)
            if self.config.reward == "hypervolume" and placement.entered:
                before, after = self.hypervolumes([archives[island], placement.members_after(archives[island], cand)])
                reward = float(after > before * (1 + 1e-9))
            info = dict(gate, gate_accept=gate["accept"], accept=placement.entered, vs_baseline=gate["reason"],
                        mode="pareto", island=island, dominated_by=list(placement.update.dominated_by),
                        removed=list(placement.update.removed), pruned=list(placement.pruned),
                        error_relations=placement.update.error_relations, reward=reward,
                        reason=_explain(placement, island))
            with self.store.transaction() as db:
                for cid, st in stats.items():
                    if st is not None:
                        self.store.set_statistics(db, cid, st)
                self.store.set_decision(db, row.id, accepted=placement.entered, decision=info)
                self._apply(db, island, cand.id, placement, cycle, origin="entered")
            archives[island] = placement.members_after(archives[island], cand)
        migrations = []
        with self.store.transaction() as db:  # all of a cycle's migrations and the incumbent commit together
            if due(cycle, self.config.migrate_every, self.config.islands):
                for move in plan_migrations(archives):
                    placement = place(archives[move.target], move.member, judge.relation, self.rule,
                                      self.config.capacity)
                    self._apply(db, move.target, move.member.id, placement, cycle, origin="migrated")
                    archives[move.target] = placement.members_after(archives[move.target], move.member)
                    migrations.append({"candidate": move.member.id, "from": move.source, "to": move.target,
                                       "entered": placement.entered})
            seed_id = self.store.get_state("seed_id")
            proven = [member_of(r, self.members, self.config.latency_batch)
                      for r in self.store.candidates(status="accepted") if (r.decision or {}).get("gate_accept")]
            best = proven_best(proven, self.member(seed_id))
            self.store.set_state("incumbent", best.id, db)
            entered = sum(r.status == "accepted" for r in self.store.candidates(cycle=cycle))
            summary = {"entered": entered, "migrations": migrations, "incumbent": best.id,
                       "archive_sizes": [len(a) for a in archives], "hypervolume": self.hypervolumes(archives)}
            self.store.set_state(f"population:cycle:{cycle}", summary, db)
        return summary

    def _apply(self, db, island: int, cid: int, placement, cycle: int, *, origin: str) -> None:
        for gone in placement.update.removed:
            self.store.archive_leave(db, island=island, candidate_id=gone, cycle=cycle, reason=f"dominated by #{cid}")
        for gone in placement.pruned:
            if gone != cid:
                self.store.archive_leave(db, island=island, candidate_id=gone, cycle=cycle, reason="pruned")
        if placement.entered:
            self.store.archive_enter(db, island=island, candidate_id=cid, cycle=cycle, origin=origin)

    def hypervolumes(self, archives: Sequence[Sequence[Member]]) -> list[float]:
        """Each island front's hypervolume on objectives divided by the seed's, reference `config.reference`."""
        seed_id = self.store.get_state("seed_id")
        if seed_id is None:
            return []
        seed = self.member(seed_id)
        names = tuple(self.config.objectives)
        scale = {n: seed.objective(n) or 1.0 for n in names}
        ref = [self.config.reference[n] for n in names]
        return [hypervolume(normalised(a, scale, names), ref) if a else 0.0 for a in archives]


def behavioural_twin(store: RunStore, cid: int, others: Sequence[int]) -> int | None:
    """The first of `others` whose stored predictions equal the candidate's bit for bit on every
    seed both have (at least one): the same function written differently (e.g. `nn.Linear(width,
    k)` -> `nn.Linear(HIDDEN, k)` where width == HIDDEN), which MinHash novelty on the text cannot
    see. Training is deterministic per seed, so a real change of architecture shows in the bits."""
    mine = store.load_instances(cid)
    for other in others:
        if other == cid:
            continue
        theirs = store.load_instances(other)
        shared = [s for s in mine.seeds if s in theirs.seeds]
        if shared and all(np.array_equal(mine.val[mine.seeds.index(s)], theirs.val[theirs.seeds.index(s)])
                          for s in shared):
            return other
    return None


def _explain(placement, island: int) -> str:
    u = placement.update
    if not u.entered:
        return f"dominated on island {island} by " + ", ".join(f"#{i}" for i in u.dominated_by)
    if not placement.entered:
        return f"not dominated on island {island}, but the most crowded member at capacity"
    out = f"entered island {island}'s Pareto archive"
    if u.removed:
        out += "; it dominates " + ", ".join(f"#{i}" for i in u.removed)
    if placement.pruned:
        out += "; pruned (crowded) " + ", ".join(f"#{i}" for i in placement.pruned)
    return out
