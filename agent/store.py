"""One run = one directory: a SQLite database, prediction artifacts, adapters, the resolved config.

Every state change that must survive `kill -9` is one SQLite transaction (WAL journal), and
artifacts are written to a temporary name and renamed before the row that points at them is
committed, so a resumed run finds either nothing or a complete record — never half of one.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from evaluator.failures import EnsnasError
from evaluator.parse_lock import load_npz

FORMAT = "ensnas-run"
SCHEMA_VERSION = 1
DB_NAME = "run.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles(
    cycle INTEGER PRIMARY KEY, status TEXT NOT NULL, started REAL, finished REAL,
    incumbent_before INTEGER, incumbent_after INTEGER, diagnostic TEXT);
CREATE TABLE IF NOT EXISTS candidates(
    id INTEGER PRIMARY KEY AUTOINCREMENT, cycle INTEGER NOT NULL, proposer TEXT NOT NULL,
    parent_id INTEGER, source TEXT, diff TEXT, status TEXT NOT NULL, reason TEXT, detail TEXT,
    statistics TEXT, decision TEXT, param_count INTEGER, meta TEXT, created REAL,
    evaluated REAL, eval_seconds REAL, evaluations INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS candidates_cycle ON candidates(cycle);
CREATE TABLE IF NOT EXISTS adapters(
    version INTEGER PRIMARY KEY, cycle INTEGER UNIQUE, path TEXT, examples INTEGER,
    seconds REAL, metrics TEXT, created REAL);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + """
CREATE TABLE IF NOT EXISTS archive(
    island INTEGER NOT NULL, candidate_id INTEGER NOT NULL, entered_cycle INTEGER NOT NULL, origin TEXT NOT NULL,
    left_cycle INTEGER, left_reason TEXT, PRIMARY KEY (island, candidate_id, entered_cycle));
CREATE TABLE IF NOT EXISTS bandit(
    cycle INTEGER NOT NULL, arm TEXT NOT NULL, allocated INTEGER NOT NULL, pulls REAL, reward REAL,
    PRIMARY KEY (cycle, arm));
"""
# Columns added after the first release: opening an older run adds them (ALTER TABLE ... ADD COLUMN).
# candidates.latency: evaluator.latency's {"batch_1_ms", "batch_256_ms"} (JSON); island: the archive the
# candidate competes in; arm: the bandit arm that proposed it (proposer, or "llm:<operator>").
ADDED_COLUMNS = {"candidates": [("latency", "TEXT"), ("island", "INTEGER"), ("arm", "TEXT")]}

# pending: waiting for the sandbox; evaluated: scored, waiting for the gate; then one of
# accepted / rejected / failed (typed reason) / filtered (pre-filter) / proposal_failed.
TERMINAL = ("accepted", "rejected", "failed", "filtered", "proposal_failed", "seed")


class RunDirError(EnsnasError):
    """The directory is not a usable ensnas run (missing, foreign, corrupt, or from a newer version)."""


@dataclass(frozen=True)
class CandidateRow:
    id: int
    cycle: int
    proposer: str
    parent_id: int | None
    source: str | None
    diff: str | None
    status: str
    reason: str | None
    detail: str | None
    statistics: dict | None
    decision: dict | None
    param_count: int | None
    meta: dict
    created: float | None
    evaluated: float | None
    eval_seconds: float | None
    evaluations: int
    latency: dict | None = None
    island: int | None = None
    arm: str | None = None


def check_run_dir(run_dir: Path, *, create: bool) -> None:
    """Refuse a directory that is not a run (to resume or read), or that holds something else (to
    create a run in), before anything is written to it."""
    run_dir = Path(run_dir)
    db = run_dir / DB_NAME
    if create:
        if run_dir.exists() and not db.exists() and any(p.name != "run.lock" for p in run_dir.iterdir()):
            raise RunDirError(f"{run_dir} exists and is not an ensnas run directory; choose another --run-dir")
    elif not db.exists():
        what = "does not exist" if not run_dir.exists() else f"has no {DB_NAME}"
        raise RunDirError(f"{run_dir} is not an ensnas run directory ({what})")


def run_dir_state(run_dir: Path) -> str:
    """What a directory holds, read without changing anything: "absent" (no run.sqlite),
    "incomplete" (a run killed while its database was being created: `ensnas run` may start it
    again), "started" (a run with its config: `ensnas resume` it) or "foreign" (another database)."""
    db = Path(run_dir) / DB_NAME
    if not db.exists():
        return "absent"
    if db.stat().st_size == 0:
        return "incomplete"
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" not in tables:
                return "incomplete" if not tables - set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA)) \
                    else "foreign"
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return "foreign"
    if meta.get("format", FORMAT) != FORMAT:
        return "foreign"
    return "started" if "config" in meta else "incomplete"


def _mapped(exc: sqlite3.DatabaseError, path: Path) -> RunDirError:
    """One typed error, with the path and what to do, for whatever SQLite raised at any query."""
    text = str(exc)
    if "unable to open" in text:
        fix = "check that the path exists and is readable"
    elif "no such table" in text or "no such column" in text:
        fix = "the run was written by an older ensnas; `ensnas resume` it once to upgrade it"
    elif "locked" in text or "busy" in text:
        fix = "another process holds it for too long; retry, or stop the other process"
    elif "disk is full" in text or "disk I/O" in text:
        fix = "free disk space (or check the device), then `ensnas resume` the run"
    elif "readonly" in text or "read-only" in text:
        fix = "the file or its directory is not writable; fix the permissions"
    else:
        fix = ("the file is corrupt or not an ensnas database: restore run.sqlite from a copy, or start a new "
               "run (artifacts/ and export/ are separate files)")
    return RunDirError(f"{path}: {text}; {fix}")


class _Cursor:
    """A statement's result, fetched in full while the store's lock was held (so another thread's
    open transaction on the shared connection is never read half-done); SQLite errors found while
    stepping through rows are mapped to RunDirError like any other."""

    def __init__(self, cursor: sqlite3.Cursor, path: Path) -> None:
        try:
            self._rows = cursor.fetchall()
        except sqlite3.DatabaseError as exc:
            raise _mapped(exc, path) from exc
        self.description, self.lastrowid, self.rowcount = cursor.description, cursor.lastrowid, cursor.rowcount

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self):
        return iter(self.fetchall())


class _Connection:
    """The store's SQLite connection, shared by the loop's threads: every statement runs and is
    fetched under the store's lock, which a transaction holds from BEGIN to COMMIT; every error
    is a RunDirError naming the file."""

    def __init__(self, db: sqlite3.Connection, path: Path, lock: threading.RLock) -> None:
        self._db, self.path, self._lock = db, path, lock

    def execute(self, sql: str, args=()) -> _Cursor:
        with self._lock:
            try:
                return _Cursor(self._db.execute(sql, args), self.path)
            except sqlite3.DatabaseError as exc:
                raise _mapped(exc, self.path) from exc

    def executemany(self, sql: str, rows) -> _Cursor:
        with self._lock:
            try:
                return _Cursor(self._db.executemany(sql, rows), self.path)
            except sqlite3.DatabaseError as exc:
                raise _mapped(exc, self.path) from exc

    def executescript(self, script: str) -> None:
        with self._lock:
            try:
                self._db.executescript(script)
            except sqlite3.DatabaseError as exc:
                raise _mapped(exc, self.path) from exc

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class StoredInstances:
    seeds: tuple[int, ...]
    val: np.ndarray
    test: np.ndarray
    origin: tuple[int, ...]   # per instance: the candidate whose decision trained it (-1: its own evaluation)


def _loads(value: str | None) -> Any:
    return json.loads(value) if value else None


class RunStore:
    """``read_only=True`` (the inspect commands): opened with SQLite's read-only mode, so nothing
    in the directory is created or changed, and it works while a run writes (WAL readers)."""

    def __init__(self, run_dir: Path, *, create: bool = False, read_only: bool = False) -> None:
        self.dir = Path(run_dir)
        self.artifacts = self.dir / "artifacts"
        self.path = db = self.dir / DB_NAME
        self.read_only = read_only and not create
        self._reader = None
        check_run_dir(self.dir, create=create)
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)   # run.sqlite first: a kill then leaves an "incomplete" run
        elif db.stat().st_size == 0:
            raise RunDirError(f"{db} is empty (the run was killed before its first commit, or the file was "
                              f"truncated); start a new run")
        self._lock = threading.RLock()
        self._artifact_lock = threading.Lock()
        try:
            if self.read_only:
                self.db = _Connection(self._connect_read_only(db), db, self._lock)
            else:
                self.db = _Connection(sqlite3.connect(db, isolation_level=None, check_same_thread=False,
                                                      timeout=30), db, self._lock)
            if create:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.artifacts.mkdir(exist_ok=True)
                self.db.executescript(SCHEMA)
                self._add_columns()
                with self.transaction():
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES('format', ?)", (FORMAT,))
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES('created', ?)", (str(time.time()),))
            self._check_format()  # before any write: a foreign or empty file is refused untouched
            if not self.read_only:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                if not create:
                    self._upgrade()
        except (RunDirError, sqlite3.DatabaseError) as exc:
            self.close()
            if isinstance(exc, RunDirError):
                raise
            raise _mapped(exc, db) from exc

    def _connect_read_only(self, db: Path) -> sqlite3.Connection:
        from agent.run_lock import reader
        self._reader = reader(self.dir)
        writer = self._reader.__enter__()
        # No writer and nothing in the WAL: the file is complete and cannot change while we hold
        # the shared lock, so open it immutable (mode=ro alone would create -wal/-shm files).
        # Otherwise (a live writer, or one killed with commits still in its WAL) read through the
        # WAL like any SQLite reader; that shares SQLite's -shm index file, nothing else.
        wal = db.with_name(db.name + "-wal")
        empty_wal = not wal.exists() or wal.stat().st_size == 0
        mode = "ro&immutable=1" if writer is None and empty_wal else "ro"
        return sqlite3.connect(f"{db.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None,
                               check_same_thread=False, timeout=30)

    def _check_format(self) -> None:
        rows = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if rows.get("format") != FORMAT:
            raise RunDirError(f"{self.dir}: database is not an ensnas run (format {rows.get('format')!r})")
        if int(rows.get("schema", 0)) > SCHEMA_VERSION:
            raise RunDirError(f"{self.dir}: written by a newer ensnas (schema {rows['schema']}); upgrade to read it")

    def _add_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def _upgrade(self) -> None:
        """Bring a run written by an older ensnas up to this schema (new tables and columns only)."""
        have = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing_columns = any(name not in {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
                              for table, columns in ADDED_COLUMNS.items() for name, _ in columns)
        if set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA)) <= have and not missing_columns:
            return  # nothing to write: read-only views never take the write lock
        with self.transaction():
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self.db.execute(stmt)
            self._add_columns()

    # -- transactions -----------------------------------------------------------------
    class _Tx:
        def __init__(self, store: "RunStore") -> None:
            self.store = store

        def __enter__(self):
            self.store._lock.acquire()
            self.store.db.execute("BEGIN IMMEDIATE")
            return self.store.db

        def __exit__(self, exc_type, exc, tb):
            try:
                self.store.db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()

    def transaction(self) -> "_Tx":
        return RunStore._Tx(self)

    def checkpoint(self) -> None:
        """Move every commit from the WAL into run.sqlite (readers then need no WAL at all)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
        if self._reader is not None:
            self._reader.release()

    # -- meta and state ---------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except json.JSONDecodeError:
            return row[0]

    def set_state(self, key: str, value: Any, db: _Connection | None = None) -> None:
        stmt, args = "INSERT OR REPLACE INTO state VALUES(?, ?)", (key, json.dumps(value))
        if db is not None:
            db.execute(stmt, args)
        else:
            with self.transaction() as tx:
                tx.execute(stmt, args)

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- candidates -------------------------------------------------------------------
    def insert_candidate(self, db: _Connection, *, cycle: int, proposer: str, parent_id: int | None,
                         source: str | None, diff: str | None, status: str, reason: str | None = None,
                         detail: str | None = None, meta: dict | None = None, island: int | None = None,
                         arm: str | None = None) -> int:
        cur = db.execute(
            "INSERT INTO candidates(cycle, proposer, parent_id, source, diff, status, reason, detail, meta, created,"
            " island, arm) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (cycle, proposer, parent_id, source, diff, status, reason, detail, json.dumps(meta or {}), time.time(),
             island, arm))
        return int(cur.lastrowid)

    def record_evaluation(self, cand_id: int, *, ok: bool, reason: str | None, detail: str, statistics: dict | None,
                          param_count: int | None, seconds: float, val: np.ndarray | None,
                          test: np.ndarray | None, latency: dict | None = None, seeds=None) -> bool:
        """Store one finished evaluation: artifact first (atomic rename), then the row, in one commit.
        Only a pending candidate takes it: a job run again (a lost node, a restarted head) whose
        candidate is already recorded changes nothing, neither row nor predictions. False then."""
        with self._lock:  # the pending check and the artifact belong together
            if not self._pending(cand_id):
                return False
            if ok:
                self.save_predictions(cand_id, val, test, seeds=seeds)
            with self.transaction() as db:
                if not self._pending(cand_id, db):
                    return False
                db.execute("UPDATE candidates SET status = ?, reason = ?, detail = ?, statistics = ?, param_count = ?,"
                           " evaluated = ?, eval_seconds = ?, evaluations = evaluations + 1, latency = ? WHERE id = ?",
                           ("evaluated" if ok else "failed", reason, detail,
                            json.dumps(statistics) if statistics else None, param_count, time.time(), seconds,
                            json.dumps(latency) if latency else None, cand_id))
        return True

    def _pending(self, cand_id: int, db: sqlite3.Connection | None = None) -> bool:
        row = (db or self.db).execute("SELECT status FROM candidates WHERE id = ?", (cand_id,)).fetchone()
        return row is not None and row[0] == "pending"

    def save_predictions(self, cand_id: int, val: np.ndarray, test: np.ndarray, *, seeds=None, origin=None) -> Path:
        """All of a candidate's instances in one artifact: probabilities [K, n, C] with each instance's
        training seed and `origin` (the candidate whose decision asked for it; -1: its own evaluation)."""
        path = self.artifacts / f"{cand_id}.npz"
        tmp = path.with_suffix(".tmp.npz")
        k = len(val)
        seeds = np.arange(k) if seeds is None else np.asarray(seeds, np.int64)
        origin = np.full(k, -1) if origin is None else np.asarray(origin, np.int64)
        np.savez(tmp, val=val.astype(np.float32), test=test.astype(np.float32), seeds=seeds, origin=origin)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def load_predictions(self, cand_id: int) -> tuple[np.ndarray, np.ndarray]:
        stored = self.load_instances(cand_id)
        return stored.val, stored.test

    def load_instances(self, cand_id: int) -> "StoredInstances":
        """Every stored instance of a candidate with its seed (artifacts older than per-instance seeds
        hold the instances of one evaluation, seeds 0..K−1)."""
        path = self.artifacts / f"{cand_id}.npz"
        try:
            z = load_npz(path)
            val, test = z["val"].astype(np.float64), z["test"].astype(np.float64)
            seeds = z["seeds"] if "seeds" in z else np.arange(len(val))
            origin = z["origin"] if "origin" in z else np.full(len(val), -1)
        except (OSError, KeyError, ValueError) as exc:
            raise RunDirError(f"predictions of candidate {cand_id} are missing or corrupt ({path}): {exc}") from exc
        return StoredInstances(tuple(int(s) for s in seeds), val, test, tuple(int(o) for o in origin))

    def add_instances(self, cand_id: int, *, seeds, val: np.ndarray, test: np.ndarray, origin: int) -> "StoredInstances":
        """Add instances trained later (new seeds) to a candidate's artifact, atomically; seeds it
        already holds are kept as they are, so a job that finishes twice counts once."""
        with self._artifact_lock:
            have = self.load_instances(cand_id)
            new = [i for i, s in enumerate(seeds) if s not in have.seeds]
            if new:
                self.save_predictions(cand_id, np.concatenate([have.val, val[new]]),
                                      np.concatenate([have.test, test[new]]),
                                      seeds=list(have.seeds) + [int(seeds[i]) for i in new],
                                      origin=list(have.origin) + [origin] * len(new))
                have = self.load_instances(cand_id)
            return have

    def set_statistics(self, db: sqlite3.Connection, cand_id: int, statistics: dict) -> None:
        """Statistics recomputed over all of a candidate's instances (after the gate added some)."""
        db.execute("UPDATE candidates SET statistics = ? WHERE id = ?", (json.dumps(statistics), cand_id))

    def set_decision(self, db: _Connection, cand_id: int, *, accepted: bool, decision: dict) -> None:
        db.execute("UPDATE candidates SET status = ?, decision = ?, reason = ? WHERE id = ?",
                   ("accepted" if accepted else "rejected", json.dumps(decision), decision.get("reason"), cand_id))

    def candidate(self, cand_id: int) -> CandidateRow:
        cur = self.db.execute("SELECT * FROM candidates WHERE id = ?", (cand_id,))
        row = cur.fetchone()
        if row is None:
            raise RunDirError(f"no candidate {cand_id} in {self.dir}")
        return self._row(row, [d[0] for d in cur.description])

    def candidates(self, *, cycle: int | None = None, status: str | tuple[str, ...] | None = None,
                   order: str = "id") -> list[CandidateRow]:
        sql, args = "SELECT * FROM candidates WHERE 1=1", []
        if cycle is not None:
            sql += " AND cycle = ?"
            args.append(cycle)
        if status is not None:
            statuses = (status,) if isinstance(status, str) else status
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        sql += " ORDER BY " + {"id": "id", "recent": "id DESC"}[order]
        cur = self.db.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [self._row(r, names) for r in cur.fetchall()]

    @staticmethod
    def _row(r: tuple, names: list[str]) -> CandidateRow:
        """By column name: a run upgraded with ALTER TABLE has its added columns in another order."""
        v = dict(zip(names, r))
        return CandidateRow(id=v["id"], cycle=v["cycle"], proposer=v["proposer"], parent_id=v["parent_id"],
                            source=v["source"], diff=v["diff"], status=v["status"], reason=v["reason"],
                            detail=v["detail"], statistics=_loads(v["statistics"]), decision=_loads(v["decision"]),
                            param_count=v["param_count"], meta=_loads(v["meta"]) or {}, created=v["created"],
                            evaluated=v["evaluated"], eval_seconds=v["eval_seconds"], evaluations=v["evaluations"],
                            latency=_loads(v.get("latency")), island=v.get("island"), arm=v.get("arm"))

    # -- cycles -----------------------------------------------------------------------
    def cycle_status(self, cycle: int) -> str | None:
        row = self.db.execute("SELECT status FROM cycles WHERE cycle = ?", (cycle,)).fetchone()
        return row[0] if row else None

    def cycles(self) -> Iterator[dict]:
        for r in self.db.execute("SELECT cycle, status, started, finished, incumbent_before, incumbent_after, diagnostic"
                                 " FROM cycles ORDER BY cycle"):
            yield dict(cycle=r[0], status=r[1], started=r[2], finished=r[3], incumbent_before=r[4],
                       incumbent_after=r[5], diagnostic=_loads(r[6]))

    def adapters(self) -> list[dict]:
        return [dict(version=r[0], cycle=r[1], path=r[2], examples=r[3], seconds=r[4], metrics=_loads(r[5]))
                for r in self.db.execute("SELECT version, cycle, path, examples, seconds, metrics FROM adapters"
                                         " ORDER BY version")]

    # -- the population: island archives (membership over time) and the bandit's allocations --------
    def archive_enter(self, db: _Connection, *, island: int, candidate_id: int, cycle: int, origin: str) -> None:
        """origin: "seed", "entered" (its own evaluation) or "migrated" (copied from island (island - 1) mod k)."""
        db.execute("INSERT OR IGNORE INTO archive(island, candidate_id, entered_cycle, origin) VALUES(?,?,?,?)",
                   (island, candidate_id, cycle, origin))

    def archive_leave(self, db: _Connection, *, island: int, candidate_id: int, cycle: int, reason: str) -> None:
        """reason: "dominated by #<id>" or "pruned" (over capacity, most crowded)."""
        db.execute("UPDATE archive SET left_cycle = ?, left_reason = ? WHERE island = ? AND candidate_id = ?"
                   " AND left_cycle IS NULL", (cycle, reason, island, candidate_id))

    def archive(self, *, island: int | None = None, at_cycle: int | None = None) -> list[dict]:
        """Archive membership rows; with at_cycle, the members present at the end of that cycle,
        otherwise the current members. Ordered by island, then candidate id."""
        if not self._has_table("archive"):  # a run from before the population, read read-only
            return []
        sql, args = "SELECT island, candidate_id, entered_cycle, origin, left_cycle, left_reason FROM archive WHERE", []
        if at_cycle is None:
            sql += " left_cycle IS NULL"
        else:
            sql += " entered_cycle <= ? AND (left_cycle IS NULL OR left_cycle > ?)"
            args += [at_cycle, at_cycle]
        if island is not None:
            sql += " AND island = ?"
            args.append(island)
        return [dict(island=r[0], candidate_id=r[1], entered_cycle=r[2], origin=r[3], left_cycle=r[4], left_reason=r[5])
                for r in self.db.execute(sql + " ORDER BY island, candidate_id", args)]

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def archive_history(self) -> list[dict]:
        if not self._has_table("archive"):
            return []
        return [dict(island=r[0], candidate_id=r[1], entered_cycle=r[2], origin=r[3], left_cycle=r[4], left_reason=r[5])
                for r in self.db.execute("SELECT island, candidate_id, entered_cycle, origin, left_cycle, left_reason"
                                         " FROM archive ORDER BY entered_cycle, island, candidate_id")]

    def record_allocation(self, db: _Connection, *, cycle: int, allocation: dict[str, int],
                          state: dict[str, dict[str, float]]) -> None:
        """The bandit's split of one cycle's budget, with each arm's pulls and summed reward before it."""
        for arm, n in allocation.items():
            st = state.get(arm, {})
            db.execute("INSERT OR REPLACE INTO bandit(cycle, arm, allocated, pulls, reward) VALUES(?,?,?,?,?)",
                       (cycle, arm, int(n), st.get("pulls"), st.get("reward")))

    def allocations(self) -> list[dict]:
        if not self._has_table("bandit"):
            return []
        return [dict(cycle=r[0], arm=r[1], allocated=r[2], pulls=r[3], reward=r[4])
                for r in self.db.execute("SELECT cycle, arm, allocated, pulls, reward FROM bandit ORDER BY cycle, rowid")]
