"""The population search over a real run store: placement, rewards, migration, incumbent, resume."""
from __future__ import annotations

import numpy as np
import pytest

from agent.gate import Gate
from agent.population.config import PopulationConfig
from agent.population.engine import Population
from agent.population.judge import GateJudge
from agent.population.pareto import Relation
from agent.store import RunStore
from evaluator.acceptance import AcceptanceConfig
from evaluator.statistics import compute_statistics


def probs(labels: np.ndarray, quality: float, seed: int, k: int = 2) -> np.ndarray:
    """k instances whose logits favour the true class by `quality` (higher: lower Brier)."""
    rng = np.random.default_rng(seed)
    c = int(labels.max()) + 1
    logits = quality * np.eye(c)[labels] + rng.normal(0, 1.0, (k, len(labels), c))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Run:
    """A run store with synthetic evaluations on the digits task's validation labels, judged by the
    real gate (fixed test for decisions, so nothing needs training; dominance readings as in a run)."""

    def __init__(self, path, config: PopulationConfig, evaluator):
        self.store = RunStore(path, create=True)
        self.labels = evaluator.data.y_val
        self.pop = Population(store=self.store, config=config, members=5, seed=0)
        gate = Gate(store=self.store, evaluator=evaluator, config=AcceptanceConfig(members=5, method="fixed",
                                                                                   bootstrap=400))
        self.judge = GateJudge(gate)
        self.seed_id = self.add(0, quality=2.0, params=1000, latency=1.0, status="seed", k=4)
        with self.store.transaction() as db:
            self.store.set_state("seed_id", self.seed_id, db)
            gate.set_prior(db, self.seed_id)
            self.pop.add_seed(db, self.seed_id)

    def add(self, cycle: int, *, quality: float, params: int, latency: float, island: int = 0, arm: str = "random",
            status: str = "pending", parent: int | None = None, k: int = 2) -> int:
        with self.store.transaction() as db:
            cid = self.store.insert_candidate(db, cycle=cycle, proposer=arm, parent_id=parent, source="s", diff="",
                                              status="pending", island=island, arm=arm)
        p = probs(self.labels, quality, cid, k)
        self.store.record_evaluation(cid, ok=True, reason=None, detail="",
                                     statistics=compute_statistics(p, self.labels).as_dict(), param_count=params,
                                     seconds=1.0, val=p, test=p, latency={"batch_1_ms": latency, "batch_256_ms": latency * 50})
        if status == "seed":
            with self.store.transaction() as db:
                db.execute("UPDATE candidates SET status = 'seed' WHERE id = ?", (cid,))
        return cid


@pytest.fixture()
def run_factory(tmp_path, digits_evaluator):
    return lambda config: Run(tmp_path / "r", config, digits_evaluator)


CONFIG = PopulationConfig(enabled=True, islands=2, migrate_every=2, capacity=4)


def test_the_judge_reads_the_gates_dominance(run_factory):
    run = run_factory(CONFIG)
    better = run.add(1, quality=3.5, params=1000, latency=1.0, parent=run.seed_id)
    same = run.add(1, quality=2.0, params=1000, latency=1.0, parent=run.seed_id)
    m = run.pop.member
    assert run.judge.relation(m(better), m(run.seed_id)) == Relation.BETTER
    assert run.judge.relation(m(run.seed_id), m(better)) == Relation.WORSE
    assert run.judge.relation(m(same), m(run.seed_id)) == Relation.UNDECIDED  # same quality, other noise


def test_decide_places_rewards_migrates_and_sets_the_incumbent(run_factory):
    run = run_factory(CONFIG)
    s = run.seed_id
    better = run.add(1, quality=3.5, params=1000, latency=1.0, island=0, parent=s)         # dominates the seed
    worse = run.add(1, quality=1.0, params=2000, latency=2.0, island=1, parent=s)          # dominated
    small = run.add(1, quality=1.2, params=100, latency=1.0, island=1, parent=s, arm="evolution")  # trade-off
    with run.store.transaction() as db:
        failed = run.store.insert_candidate(db, cycle=1, proposer="llm", parent_id=s, source=None, diff="",
                                            status="proposal_failed", island=0, arm="llm:mutate")
    summary = run.pop.decide(1, run.judge)
    rows = {r.id: r for r in run.store.candidates()}
    assert rows[better].status == "accepted" and rows[better].decision["removed"] == [s]
    assert rows[worse].status == "rejected" and s in rows[worse].decision["dominated_by"]
    assert rows[small].status == "accepted" and rows[small].decision["removed"] == []
    assert rows[better].decision["baseline"] == s and rows[better].decision["lower_bound"] > 0
    archives = run.pop.archives()
    assert [m.id for m in archives[0]] == [better]
    assert sorted(m.id for m in archives[1]) == [s, small]
    assert summary["incumbent"] == better == run.store.get_state("incumbent")
    assert summary["entered"] == 2 and summary["migrations"] == []
    gone = [r for r in run.store.archive_history() if r["left_cycle"] == 1]
    assert gone == [dict(island=0, candidate_id=s, entered_cycle=0, origin="seed", left_cycle=1,
                         left_reason=f"dominated by #{better}")]
    arms = ["random", "evolution", "llm:mutate"]
    state = run.pop.bandit_state(arms, through_cycle=1)
    assert state == {"random": {"pulls": 2.0, "reward": 1.0}, "evolution": {"pulls": 1.0, "reward": 1.0},
                     "llm:mutate": {"pulls": 1.0, "reward": 0.0}}
    assert run.pop.bandit_state(arms, through_cycle=0)["random"]["pulls"] == 0
    # the archive as it was before cycle 1 is still readable
    assert [[m.id for m in a] for a in run.pop.archives(at_cycle=0)] == [[s], [s]]
    hv = summary["hypervolume"]
    assert hv[0] > 0 and hv[1] > 0

    # cycle 2: migration is due; island 0's best (better) dominates the seed on island 1
    summary = run.pop.decide(2, run.judge)
    assert {(m["candidate"], m["from"], m["to"]) for m in summary["migrations"]} == {(better, 0, 1), (s, 1, 0)}
    migrated = {m["candidate"]: m["entered"] for m in summary["migrations"]}
    assert migrated[better] is True and migrated[s] is False   # the seed is dominated on island 0
    assert sorted(m.id for m in run.pop.archives()[1]) == sorted([better, small])
    origins = {(r["island"], r["candidate_id"]): r["origin"] for r in run.store.archive()}
    assert origins[(1, better)] == "migrated"


def test_plan_is_reproducible_from_the_store_and_follows_the_bandit(run_factory):
    run = run_factory(CONFIG)
    arms = ["random", "evolution"]
    a = run.pop.plan(1, arms, 6, through_cycle=0)
    b = run.pop.plan(1, arms, 6, through_cycle=0)
    assert a == b and sum(a.allocation.values()) == 6 and len(a.slots) == 6
    assert all(slot.parent == run.seed_id for slot in a.slots)
    assert [s.island for s in a.slots] == [0, 1, 0, 1, 0, 1]
    fixed = Population(store=run.store, config=CONFIG.model_copy(update={"bandit": "off"}), members=5, seed=0)
    assert fixed.plan(1, arms, 6, through_cycle=0, fixed={"random": 4, "evolution": 2}).allocation == {"random": 4,
                                                                                                      "evolution": 2}


@pytest.mark.parametrize("objectives", [["error", "params", "latency"], ["error", "params"], ["error"]])
def test_archive_stays_mutually_nondominated(run_factory, objectives):
    config = CONFIG.model_copy(update={"objectives": objectives, "capacity": 6, "islands": 1})
    run = run_factory(config)
    rng = np.random.default_rng(1)
    for i in range(9):
        run.add(1, quality=float(rng.uniform(1.0, 4.0)), params=int(rng.integers(100, 3000)),
                latency=float(rng.uniform(0.5, 2.0)), parent=run.seed_id)
    run.pop.decide(1, run.judge)
    archive = run.pop.archives()[0]
    assert 1 <= len(archive) <= 6
    from agent.population.pareto import dominates
    for a in archive:
        for b in archive:
            if a.id != b.id:
                assert not dominates(run.pop.rule.relations(a, b, run.judge.relation(a, b)))
    if objectives == ["error"]:  # one axis: only members no one is confidently better than stay
        assert len(archive) <= 3


def test_crossover_arms_sit_out_until_there_are_two_programs_to_cross(run_factory):
    run = run_factory(CONFIG)
    arms = ["random", "crossover", "llm:crossover"]
    early = run.pop.plan(1, arms, 8, through_cycle=0)
    assert set(early.allocation) == {"random"} and early.allocation["random"] == 8
    run.add(1, quality=1.2, params=100, latency=1.0, island=1, parent=run.seed_id)
    run.pop.decide(1, run.judge)
    later = run.pop.plan(3, arms, 30, through_cycle=1)
    assert later.allocation["crossover"] > 0 and later.allocation["llm:crossover"] > 0
    assert all(s.second_parent is not None for s in later.slots if s.arm != "random")


def test_hypervolume_reward_pays_only_for_a_larger_front(run_factory):
    run = run_factory(CONFIG.model_copy(update={"reward": "hypervolume", "tolerance": {"params": 0.0,
                                                                                       "latency": 0.0}}))
    s = run.seed_id
    grows = run.add(1, quality=3.5, params=900, latency=0.9, island=0, parent=s)      # dominates the seed
    # a tie on error with the seed's costs exactly: it enters (nothing dominates it) but adds no volume
    twin = run.add(1, quality=2.0, params=1000, latency=1.0, island=1, parent=s)
    run.pop.decide(1, run.judge)
    rows = {r.id: r for r in run.store.candidates()}
    assert rows[grows].decision["reward"] == 1.0
    # one candidate per island: its reward is exactly "the island's front grew"
    before, after = run.pop.hypervolumes(run.pop.archives(at_cycle=0)), run.pop.hypervolumes(run.pop.archives(at_cycle=1))
    for cid, island in ((grows, 0), (twin, 1)):
        grew = after[island] > before[island] * (1 + 1e-9)
        assert rows[cid].decision["reward"] == float(grew and rows[cid].status == "accepted")


def test_a_behavioural_twin_is_rejected_and_never_enters(run_factory):
    """A candidate whose predictions equal an archive member's on every shared seed is the same
    function written differently: rejected with reward 0, not a member of any front. A candidate of
    the same quality with its own predictions is judged as usual."""
    run = run_factory(CONFIG)
    s = run.seed_id
    twin = run.add(1, quality=2.0, params=1000, latency=1.0, island=0, parent=s)
    near = run.add(1, quality=2.0, params=1000, latency=1.0, island=1, parent=s)
    seed = run.store.load_instances(s)
    run.store.save_predictions(twin, seed.val[:2], seed.test[:2], seeds=list(seed.seeds[:2]), origin=[-1, -1])
    run.pop.decide(1, run.judge)
    rows = {r.id: r for r in run.store.candidates()}
    assert rows[twin].status == "rejected" and rows[twin].decision["twin"] == s
    assert rows[twin].decision["reward"] == 0 and "behaves exactly as" in rows[twin].decision["reason"]
    assert "twin" not in rows[near].decision
    assert twin not in {a["candidate_id"] for a in run.store.archive()}


def test_a_proven_program_stays_deployed_after_a_cheaper_tie_drops_it_from_the_front(run_factory):
    """Seen in a default run: #3 passed the gate and became the incumbent; #7, a tie on error within
    the bound but cheaper, dominated it off the front; the incumbent went back to the seed. A program
    proven better stays the deployed one until another is proven better."""
    run = run_factory(PopulationConfig(enabled=True, islands=1, migrate_every=0, capacity=4))
    better = run.add(1, quality=3.5, params=1000, latency=1.0, parent=run.seed_id)
    assert run.pop.decide(1, run.judge)["incumbent"] == better
    cheaper_tie = run.add(2, quality=3.5, params=100, latency=1.0, parent=better)
    summary = run.pop.decide(2, run.judge)
    row = run.store.candidate(cheaper_tie)
    assert row.status == "accepted" and row.decision["removed"] == [better]     # off the front
    assert not row.decision["gate_accept"]                                       # not proven better than #better
    assert summary["incumbent"] == better == run.store.get_state("incumbent")
