"""The store's population tables: archive membership over time, bandit allocations, latency, upgrades."""
from __future__ import annotations

import json
import sqlite3

import numpy as np

from agent.store import RunStore


def _candidate(store: RunStore, cycle: int, **kw) -> int:
    with store.transaction() as db:
        return store.insert_candidate(db, cycle=cycle, proposer="random", parent_id=None, source="s", diff="",
                                      status="pending", **kw)


def test_archive_membership_is_kept_over_time(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    a, b, c = (_candidate(store, 1, island=i % 2, arm="random") for i in range(3))
    with store.transaction() as db:
        store.archive_enter(db, island=0, candidate_id=a, cycle=0, origin="seed")
        store.archive_enter(db, island=1, candidate_id=b, cycle=1, origin="entered")
    with store.transaction() as db:
        store.archive_leave(db, island=0, candidate_id=a, cycle=2, reason=f"dominated by #{c}")
        store.archive_enter(db, island=0, candidate_id=c, cycle=2, origin="entered")
        store.archive_enter(db, island=1, candidate_id=c, cycle=2, origin="migrated")
    assert [(r["island"], r["candidate_id"]) for r in store.archive()] == [(0, c), (1, b), (1, c)]
    assert [(r["island"], r["candidate_id"]) for r in store.archive(at_cycle=1)] == [(0, a), (1, b)]
    assert [r["candidate_id"] for r in store.archive(island=1, at_cycle=2)] == [b, c]
    gone = [r for r in store.archive_history() if r["left_cycle"] is not None]
    assert gone == [dict(island=0, candidate_id=a, entered_cycle=0, origin="seed", left_cycle=2,
                         left_reason=f"dominated by #{c}")]
    row = store.candidate(c)
    assert row.island == 0 and row.arm == "random"


def test_bandit_allocations_and_latency_are_stored(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    with store.transaction() as db:
        store.record_allocation(db, cycle=1, allocation={"llm:mutate": 3, "evolution": 1},
                                state={"llm:mutate": {"pulls": 4.0, "reward": 1.0}})
    assert store.allocations() == [dict(cycle=1, arm="llm:mutate", allocated=3, pulls=4.0, reward=1.0),
                                   dict(cycle=1, arm="evolution", allocated=1, pulls=None, reward=None)]
    cid = _candidate(store, 1)
    probs = np.full((2, 3, 4), 0.25)
    store.record_evaluation(cid, ok=True, reason=None, detail="", statistics={"member_error": 0.1}, param_count=10,
                            seconds=1.0, val=probs, test=probs, latency={"batch_1_ms": 0.2, "batch_256_ms": 3.0})
    assert store.candidate(cid).latency == {"batch_1_ms": 0.2, "batch_256_ms": 3.0}


OLD_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cycles(cycle INTEGER PRIMARY KEY, status TEXT NOT NULL, started REAL, finished REAL,
    incumbent_before INTEGER, incumbent_after INTEGER, diagnostic TEXT);
CREATE TABLE candidates(id INTEGER PRIMARY KEY AUTOINCREMENT, cycle INTEGER NOT NULL, proposer TEXT NOT NULL,
    parent_id INTEGER, source TEXT, diff TEXT, status TEXT NOT NULL, reason TEXT, detail TEXT,
    statistics TEXT, decision TEXT, param_count INTEGER, meta TEXT, created REAL,
    evaluated REAL, eval_seconds REAL, evaluations INTEGER NOT NULL DEFAULT 0);
CREATE TABLE adapters(version INTEGER PRIMARY KEY, cycle INTEGER UNIQUE, path TEXT, examples INTEGER,
    seconds REAL, metrics TEXT, created REAL);
CREATE TABLE state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES('format', 'ensnas-run'), ('schema', '1');
INSERT INTO candidates(cycle, proposer, source, status, statistics, meta, evaluations)
    VALUES(0, 'seed', 'src', 'seed', '{"member_error": 0.2}', '{}', 1);
"""


def test_a_run_from_before_the_population_tables_opens_and_gains_them(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    db = sqlite3.connect(run / "run.sqlite")
    db.executescript(OLD_SCHEMA)
    db.close()
    reader = RunStore(run, read_only=True)   # the inspect commands: nothing written, nothing missing
    assert reader.archive() == [] and reader.archive_history() == [] and reader.allocations() == []
    assert reader.candidate(1).latency is None
    reader.close()
    store = RunStore(run)
    row = store.candidate(1)
    assert row.status == "seed" and row.statistics == {"member_error": 0.2} and row.latency is None and row.island is None
    assert store.archive() == [] and store.allocations() == []
    cid = _candidate(store, 1, island=2, arm="evolution")
    assert store.candidate(cid).island == 2
    names = [r[1] for r in store.db.execute("PRAGMA table_info(candidates)")]
    assert names[-3:] == ["latency", "island", "arm"]
    RunStore(run)  # opening again changes nothing
    assert json.loads(store.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]) == 1
