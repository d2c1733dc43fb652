"""Everything the report shows, read once from a run's store into plain values.

The store's schema grows (islands, a Pareto archive, a bandit, latency, instances per
decision): every read here tolerates a missing table, column, key or a value of the wrong
type, so an older or newer run simply shows fewer sections. Nothing here formats or escapes;
`agent.report.sections` does that.
"""
from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.store import CandidateRow, RunStore
from evaluator.statistics import predicted_from_dict

KNOWN_TABLES = {"meta", "cycles", "candidates", "adapters", "state", "sqlite_sequence", "archive", "bandit"}
KNOWN_STATE = {"incumbent", "seed_id", "noise_variance", "noise_prior", "timings", "final_report", "sandbox_backend"}
LATENCY_KEYS = ("batch_1_ms", "latency_ms")  # the store's candidates.latency {"batch_1_ms", "batch_256_ms"}
EVALUATED = ("accepted", "rejected", "evaluated", "seed")


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Candidate:
    """One store row plus what the report derives from it."""
    row: CandidateRow
    predicted: float | None          # T1 predicted M-ensemble error, None when not evaluated
    latency: float | None            # measured CPU latency when the store has one

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)

    @property
    def instances(self) -> int | None:
        inst = (self.row.statistics or {}).get("instances") if isinstance(self.row.statistics, dict) else None
        return len(inst) if isinstance(inst, list) else None


@dataclass
class RunView:
    run_dir: str
    config: dict
    versions: dict
    members: int
    candidates: list[Candidate]
    cycles: list[dict]
    adapters: list[dict]
    incumbent: int | None
    seed_id: int | None
    timings: dict[str, float]
    final: dict | None
    noise_variance: float | None
    noise_prior: dict
    proposer_state: dict[str, Any]
    archive: list[dict] = field(default_factory=list)       # membership rows over time (population search)
    allocations: list[dict] = field(default_factory=list)   # the bandit's split of each cycle
    sandbox: str | None = None
    extra_state: dict[str, Any] = field(default_factory=dict)
    extra_tables: dict[str, tuple[list[str], list[tuple], int]] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[int, Candidate]:
        return {c.id: c for c in self.candidates}


def mapping(value: Any) -> dict:
    """The value if it is a dict, else {} (a store field of an unexpected type reads as empty)."""
    return value if isinstance(value, dict) else {}


def _latency(row: CandidateRow) -> float | None:
    """Batch-1 CPU latency (ms) when the run measured it."""
    for source in (getattr(row, "latency", None), row.meta):
        for key in LATENCY_KEYS:
            value = number(mapping(source).get(key))
            if value is not None:
                return value
    return None


def _predicted(row: CandidateRow, members: int) -> float | None:
    stats = mapping(row.statistics)
    if number(stats.get("member_error")) is None or number(stats.get("diversity")) is None:
        return None
    return number(predicted_from_dict(stats, members))


def _tables(db) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _extra_tables(db: sqlite3.Connection, limit: int) -> dict[str, tuple[list[str], list[tuple], int]]:
    """Tables this report has no dedicated section for (islands, archive, bandit, ...): shown raw."""
    out = {}
    for name in sorted(_tables(db)):
        if name in KNOWN_TABLES:
            continue
        quoted = '"' + name.replace('"', '""') + '"'
        cur = db.execute(f"SELECT * FROM {quoted} LIMIT {int(limit)}")
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
        total = db.execute(f"SELECT COUNT(*) FROM {quoted}").fetchone()[0]
        out[name] = (columns, rows, int(total))
    return out


def load(store: RunStore, *, extra_rows: int = 50) -> RunView:
    config = mapping(store.get_meta("config"))
    members = config.get("acceptance", {}).get("members") if isinstance(config.get("acceptance"), dict) else None
    members = int(members) if isinstance(members, int) and members >= 2 else 5
    candidates = [Candidate(row=r, predicted=_predicted(r, members), latency=_latency(r)) for r in store.candidates()]
    proposer_state, extra_state = {}, {}
    for (key,) in store.db.execute("SELECT key FROM state ORDER BY key").fetchall():
        if key.startswith("proposer:"):
            proposer_state[key.split(":", 1)[1]] = store.get_state(key)
        elif key not in KNOWN_STATE:  # e.g. a bandit's allocation, before it has its own section
            extra_state[key] = store.get_state(key)
    timings = {k: v for k, v in mapping(store.get_state("timings")).items() if number(v) is not None}
    tables = _tables(store.db)  # a run opened read-only keeps the schema it was written with
    archive = store.archive_history() if "archive" in tables else []
    allocations = store.allocations() if "bandit" in tables else []
    return RunView(
        run_dir=str(store.dir), config=config, versions=mapping(store.get_meta("versions")), members=members,
        candidates=candidates, cycles=list(store.cycles()), adapters=store.adapters(),
        incumbent=store.get_state("incumbent"), seed_id=store.get_state("seed_id"), timings=timings,
        final=store.get_state("final_report"), noise_variance=number(store.get_state("noise_variance")),
        noise_prior=mapping(store.get_state("noise_prior")),
        proposer_state=proposer_state, archive=archive, allocations=allocations, sandbox=store.get_state("sandbox_backend"), extra_state=extra_state,
        extra_tables=_extra_tables(store.db, extra_rows))


# -- derived series: small pure functions over the view ---------------------------------------
def evaluation_order(view: RunView) -> list[Candidate]:
    """Evaluated candidates in the order their evaluations finished (ties and gaps: by id)."""
    done = [c for c in view.candidates if c.predicted is not None]
    return sorted(done, key=lambda c: (c.cycle, number(c.evaluated) or math.inf, c.id))


def best_so_far(values: list[float]) -> list[float]:
    out, best = [], math.inf
    for v in values:
        best = min(best, v)
        out.append(best)
    return out


def incumbent_trace(view: RunView) -> list[float | None]:
    """The incumbent's predicted error after each evaluation (it moves only on accepted ones)."""
    order = evaluation_order(view)
    current, out = None, []
    for c in order:
        if c.status in ("seed", "accepted"):
            current = c.predicted
        out.append(current)
    return out


def pareto_front(points: list[tuple[float, ...]]) -> list[int]:
    """Indices of the points no other point dominates on point estimates: every coordinate
    minimised, compared exactly (agent.population.pareto.dominates with zero tolerance, vectorised).
    Only for runs without a population archive, whose own dominance asks the acceptance bound."""
    if not points:
        return []
    pts = np.asarray(points, dtype=float)
    return [i for i, p in enumerate(pts) if not ((pts <= p).all(1) & (pts < p).any(1)).any()]


def current_archive(view: RunView) -> dict[int, list[int]]:
    """Island → the candidate ids in its archive now (the population search's Pareto fronts)."""
    out: dict[int, list[int]] = {}
    for r in view.archive:
        if r.get("left_cycle") is None:
            out.setdefault(r["island"], []).append(r["candidate_id"])
    return out


def outcome(c: Candidate) -> str:
    """One of proposed-stage outcomes: filtered, failed, evaluated (then accepted or not), pending."""
    if c.status in ("filtered",):
        return "filtered"
    if c.status in ("failed", "proposal_failed"):
        return "failed"
    if c.status in ("accepted", "rejected", "evaluated", "seed"):
        return "evaluated"
    return "pending"


def failure_label(c: Candidate) -> str:
    reason = str(c.reason or "unknown")
    return f"proposal: {reason}" if c.status == "proposal_failed" else reason


def proposer_table(view: RunView) -> list[dict]:
    """Per cycle and proposer: proposed / filtered / failed by reason / evaluated / accepted."""
    rows: dict[tuple[int, str], dict] = {}
    for c in view.candidates:
        if c.status == "seed":
            continue
        r = rows.setdefault((c.cycle, str(c.proposer)), {"cycle": c.cycle, "proposer": str(c.proposer),
                                                         "proposed": 0, "filtered": 0, "failed": {},
                                                         "evaluated": 0, "accepted": 0, "pending": 0})
        r["proposed"] += 1
        kind = outcome(c)
        if kind == "failed":
            label = failure_label(c)
            r["failed"][label] = r["failed"].get(label, 0) + 1
        else:
            r[kind] += 1
        r["accepted"] += c.status == "accepted"
    return [rows[k] for k in sorted(rows)]


def ancestry(view: RunView) -> tuple[dict[int | None, list[int]], set[int]]:
    """Children by parent id (program ancestry; None: roots) and the ids whose subtree holds an
    accepted or seed node. A parent always has a smaller id than its child (it was stored first);
    a row that claims otherwise is shown as a root, so the tree has no cycles whatever the store holds."""
    ids = {c.id for c in view.candidates}
    children: dict[int | None, list[int]] = {}
    for c in view.candidates:
        parent = c.parent_id if c.parent_id in ids and c.parent_id < c.id and c.id != view.seed_id else None
        children.setdefault(parent, []).append(c.id)
    keep: set[int] = set()
    for c in sorted(view.candidates, key=lambda c: -c.id):  # children before parents
        if c.status in ("accepted", "seed") or any(k in keep for k in children.get(c.id, [])):
            keep.add(c.id)
    return children, keep
