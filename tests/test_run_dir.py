"""The run directory: one writer at a time (a lock naming its holder), readers that create and
change nothing, every store error a RunDirError with the path and the fix, and a report that
points into its own directory."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.run_lock import RunLock, RunLocked, live_holder
from agent.store import RunStore
from tests.test_loop import FAST_TASK, _config

ROOT = Path(__file__).resolve().parents[1]
READ_ONLY = [["status"], ["show"], ["show", "1"], ["show", "2", "--json"], ["diff", "2"], ["lineage", "--all"]]


@pytest.fixture()
def fast_task(tmp_path) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(FAST_TASK)
    return str(path)


def _snapshot(directory: Path) -> dict:
    """Every file under the directory: size, mtime and content hash."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns,
                                            hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _store_only_run(run_dir: Path, candidates: int = 3, source_bytes: int = 200) -> None:
    """A run directory written through the store alone (no training): a config, a seed, children."""
    store = RunStore(run_dir, create=True)
    store.set_meta("config", _config("digits", cycles=1).model_dump(mode="json"))
    seed_src = "def build_model(input_shape, num_classes):\n    return None\n"
    with store.transaction() as db:
        seed = store.insert_candidate(db, cycle=0, proposer="seed", parent_id=None, source=seed_src, diff="",
                                      status="seed")
        for i in range(candidates):
            store.insert_candidate(db, cycle=1, proposer="random", parent_id=seed,
                                   source=seed_src + f"# {i} " + "x" * source_bytes + "\n", diff="",
                                   status="failed", reason="build_error", detail=f"failure {i}")
        store.set_state("incumbent", seed, db)
        store.set_state("seed_id", seed, db)
    store.close()


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that takes the run's lock and keeps it until killed."""
    code = ("import sys, time; from pathlib import Path; from agent.run_lock import RunLock; "
            "lock = RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout.readline().strip() == b"held"
    return proc


# -- the lock ---------------------------------------------------------------------------------
def test_second_writer_is_refused_with_the_holder_and_a_killed_holder_blocks_nobody(tmp_path):
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    holder = _hold_lock(run_dir)
    try:
        found = live_holder(run_dir)
        assert found is not None and found.pid == holder.pid
        with pytest.raises(RunLocked, match=f"in use by pid {holder.pid} on {os.uname().nodename}"):
            RunLock(run_dir).acquire(wait_s=0.2)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert live_holder(run_dir) is None             # the kernel dropped the dead holder's lock
    with RunLock(run_dir) as lock:                   # and its stale file blocks nobody
        assert lock.held and live_holder(run_dir) is None or live_holder(run_dir).pid == os.getpid()


def test_resume_while_another_process_writes_exits_2_with_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    holder = _hold_lock(run_dir)
    try:
        before = _snapshot(run_dir)
        assert main(["resume", str(run_dir), "--cycles", "5"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"in use by pid {holder.pid}" in err
        assert main(["run", "--run-dir", str(run_dir), "--sandbox", "subprocess"]) == 2
        assert f"in use by pid {holder.pid}" in capsys.readouterr().err
        assert _snapshot(run_dir) == before            # refused before touching the config
        for argv in READ_ONLY:                         # readers work while the writer lives
            assert main([argv[0], str(run_dir), *argv[1:]]) == 0, argv
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_writers_wait_for_a_reader_instead_of_refusing(tmp_path):
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    RunLock(run_dir).acquire().release()
    reader = RunStore(run_dir, read_only=True)       # holds a shared lock while open
    try:
        start = time.monotonic()
        with pytest.raises(RunLocked):
            RunLock(run_dir).acquire(wait_s=0.3)
        assert time.monotonic() - start >= 0.3
    finally:
        reader.close()
    RunLock(run_dir).acquire(wait_s=0.3).release()


@pytest.mark.slow
def test_two_resumes_at_once_one_refuses_and_no_cycle_is_proposed_twice(tmp_path, fast_task, cache_dir):
    """Two real `ensnas resume` processes started together: exactly one runs, the other exits 2
    naming it; the run ends with each cycle proposed once and no duplicate program evaluated."""
    env = dict(os.environ, ENSNAS_CACHE=str(cache_dir))
    base = [sys.executable, "-m", "agent.cli"]
    run_dir = tmp_path / "run"
    subprocess.run(base + ["run", "--run-dir", str(run_dir), "--task", fast_task, "--cycles", "1", "--proposer",
                           "random", "--proposer", "evolution", "--candidates", "2", "--sandbox", "subprocess",
                           "--members", "3", "--quiet"], check=True, env=env, cwd=ROOT, capture_output=True)
    procs = [subprocess.Popen(base + ["resume", str(run_dir), "--cycles", "3", "--quiet"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=900), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    winner = next(p.pid for p, (code, _, _) in zip(procs, results) if code == 0)
    assert f"in use by pid {winner}" in refused and "Traceback" not in refused
    store = RunStore(run_dir, read_only=True)
    rows = store.candidates()
    for cycle in (1, 2, 3):
        assert len([r for r in rows if r.cycle == cycle]) == 4
    evaluated = [r.source for r in rows if r.status in ("accepted", "rejected", "seed")]
    assert len(evaluated) == len(set(evaluated))


# -- readers create and change nothing ----------------------------------------------------------
def test_read_only_commands_leave_a_finished_run_byte_identical(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    before = _snapshot(run_dir)
    assert not any(p.name.endswith(("-wal", "-shm")) for p in run_dir.iterdir())
    for argv in READ_ONLY:
        assert main([argv[0], str(run_dir), *argv[1:]]) == 0, argv
    assert _snapshot(run_dir) == before


def test_read_only_commands_on_a_killed_run_see_its_last_commits_and_change_nothing(tmp_path, capsys):
    """A writer killed with -9 leaves its WAL behind; readers read through it without recovering it."""
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    code = ("import os, sys; from pathlib import Path; from agent.store import RunStore; "
            "s = RunStore(Path(sys.argv[1])); s.set_state('incumbent', 3); os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert (run_dir / "run.sqlite-wal").stat().st_size > 0
    before = _snapshot(run_dir)
    with RunStore(run_dir, read_only=True) as store:
        assert store.get_state("incumbent") == 3
    for argv in READ_ONLY:
        assert main([argv[0], str(run_dir), *argv[1:]]) == 0, argv
    assert {k: v[0] for k, v in _snapshot(run_dir).items()} == {k: v[0] for k, v in before.items()}
    assert {k: v[2] for k, v in _snapshot(run_dir).items() if not k.endswith("-shm")} == \
        {k: v[2] for k, v in before.items() if not k.endswith("-shm")}


@pytest.mark.parametrize("command", [["status"], ["show"], ["show", "1"], ["diff", "2"], ["lineage"],
                                     ["export"]])
def test_empty_database_is_refused_untouched(tmp_path, capsys, command):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.sqlite").write_bytes(b"")
    assert main([command[0], str(run_dir), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert "run.sqlite is empty" in err and "Traceback" not in err
    assert [p.name for p in run_dir.iterdir()] == ["run.sqlite"] and (run_dir / "run.sqlite").stat().st_size == 0


def test_resume_of_an_empty_or_foreign_database_changes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.sqlite").write_bytes(b"")
    assert main(["resume", str(run_dir)]) == 2
    assert (run_dir / "run.sqlite").stat().st_size == 0
    other = tmp_path / "other"
    other.mkdir()
    import sqlite3
    con = sqlite3.connect(other / "run.sqlite")
    con.execute("CREATE TABLE notes(x)")
    con.commit()
    con.close()
    before = (other / "run.sqlite").read_bytes()
    assert main(["resume", str(other)]) == 2
    assert (other / "run.sqlite").read_bytes() == before
    assert "Traceback" not in capsys.readouterr().err


# -- corruption anywhere maps to one typed error -----------------------------------------------
@pytest.mark.parametrize("command", [["status"], ["show"], ["show", "100"], ["lineage", "--all"], ["resume"],
                                     ["export"]])
def test_corruption_in_the_middle_of_the_database_is_one_line_exit_2(tmp_path, capsys, command, cache_dir,
                                                                      monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    _store_only_run(run_dir, candidates=200, source_bytes=2000)
    db = run_dir / "run.sqlite"
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 40 * page
    for start in range(len(data) // 3 // page * page, 2 * len(data) // 3, page):  # the middle third
        data[start:start + page] = os.urandom(page)
    db.write_bytes(bytes(data))
    with RunStore(run_dir, read_only=True) as store:   # page 1 and the meta table are intact
        assert store.get_meta("config")["task"] == "digits"
    assert main([command[0], str(run_dir), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(db) in err and ("restore run.sqlite" in err)


# -- the report points into its own run directory ----------------------------------------------
def test_a_copied_run_dir_exports_its_own_export_without_retraining(tmp_path, fast_task, cache_dir, monkeypatch,
                                                                      capsys):
    from agent.loop import SearchLoop
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    original = tmp_path / "original"
    report = SearchLoop(run_dir=original, config=_config(fast_task, cycles=1), progress=False).run()
    assert not Path(report["export_dir"]).is_absolute()
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    before = _snapshot(copy)
    monkeypatch.chdir(tmp_path)                       # neither the run dir nor its parent
    start = time.monotonic()
    assert main(["export", str(copy)]) == 0
    assert time.monotonic() - start < 5               # nothing retrained
    assert _snapshot(copy) == before                  # nothing rewritten
    assert f"to {copy / 'export'}" in capsys.readouterr().out


def test_a_run_killed_while_being_created_can_be_started_again(tmp_path, capsys):
    """kill -9 can land between creating run.sqlite and saving the config: such a directory is
    "incomplete"; resume says to start it again, and run may (it is not "already a run")."""
    import sqlite3
    from agent.store import run_dir_state
    assert run_dir_state(tmp_path / "none") == "absent"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.sqlite").write_bytes(b"")
    schema_only = tmp_path / "schema"
    RunStore(schema_only, create=True).close()
    started = tmp_path / "started"
    _store_only_run(started)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    con = sqlite3.connect(foreign / "run.sqlite")
    con.execute("CREATE TABLE notes(x)")
    con.commit()
    con.close()
    assert [run_dir_state(d) for d in (empty, schema_only, started, foreign)] == \
        ["incomplete", "incomplete", "started", "foreign"]
    for d in (empty, schema_only):
        assert main(["resume", str(d)]) == 2
        assert f"start it again with `ensnas run --run-dir {d}`" in capsys.readouterr().err
    assert main(["run", "--run-dir", str(started), "--task", "nosuchtask"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["run", "--run-dir", str(foreign), "--task", "nosuchtask"]) == 2
    assert "not an ensnas run database" in capsys.readouterr().err
