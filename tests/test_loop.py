"""The search loop end to end with the no-LLM baselines: store, CLI views, kill -9 and resume."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import RunConfig
from agent.loop import SearchLoop
from agent.store import RunDirError, RunStore, run_dir_state

ROOT = Path(__file__).resolve().parents[1]
FAST_TASK = """name: digits-fast
dataset: digits
val_fraction: 0.25
budget: {epochs: 2, batch_size: 64, lr: 0.003}
seed_program: mlp.py
members: 5
"""


@pytest.fixture()
def fast_task(tmp_path) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(FAST_TASK)
    return str(path)


def _config(task: str, cycles: int = 2) -> RunConfig:
    return RunConfig.load(None, task=task, cycles=cycles, noise_instances=4,
                          proposers=[{"name": "random", "candidates": 2}, {"name": "evolution", "candidates": 2}],
                          sandbox={"backend": "subprocess", "workers": 2}, deploy={"members": 3})


def test_search_runs_and_everything_is_stored(tmp_path, fast_task, capsys, cache_dir, monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    loop = SearchLoop(run_dir=run_dir, config=_config(fast_task), progress=False)
    closed = []     # the run's end releases what proposers hold (an LLM proposer's model server)
    for _, proposer in loop.proposers:
        monkeypatch.setattr(proposer, "close", lambda p=proposer: closed.append(p.name))
    report = loop.run()
    assert sorted(closed) == ["evolution", "random"]
    store = RunStore(run_dir)
    rows = store.candidates()
    assert rows[0].proposer == "seed" and rows[0].status == "seed"
    assert len(rows) == 1 + 2 * 4
    assert all(r.status in ("accepted", "rejected", "failed", "filtered", "seed") for r in rows)
    for r in rows[1:]:
        assert r.parent_id is not None and r.diff.startswith("--- #")
        if r.status in ("accepted", "rejected"):
            assert r.decision["baseline"] is not None and r.statistics["kv_residual"] < 1e-9
            assert r.decision["method"] == "sequential" and r.decision["looks"]
            assert r.decision["instances"]["candidate"] == len(store.load_instances(r.id).seeds) >= 2
    assert [c["status"] for c in store.cycles()] == ["done", "done"]
    assert "brier" in report["final"] and (run_dir / report["export_dir"] / "manifest.json").exists()
    for argv in (["status", str(run_dir)], ["show", str(run_dir)], ["show", str(run_dir), "2"],
                 ["diff", str(run_dir), "2", "--color", "always"], ["lineage", str(run_dir), "--all"]):
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "\033[32m+" in out or "\033[31m-" in out  # the coloured diff
    assert "sequential decisions, instances per decision" in out  # the gate's cost in `status`
    assert "#1 seed" in out


def test_export_loads_with_plain_pytorch(tmp_path, fast_task, cache_dir, monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    report = SearchLoop(run_dir=run_dir, config=_config(fast_task, cycles=1), progress=False).run()
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); from load import load_ensemble; "
            "e = load_ensemble(sys.argv[1]); p = e(torch.randn(4, 1, 8, 8)); "
            "assert p.shape == (4, 10) and torch.allclose(p.sum(-1), torch.ones(4)); print(len(e.members))")
    out = subprocess.run([sys.executable, "-c", code, str(run_dir / report["export_dir"])], capture_output=True,
                         text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_corrupt_and_foreign_run_dirs_give_clear_errors(tmp_path, capsys):
    with pytest.raises(RunDirError, match="not an ensnas run directory"):
        RunStore(tmp_path / "missing")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not an ensnas run directory"):
        RunStore(foreign, create=True)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.sqlite").write_bytes(os.urandom(4096))
    with pytest.raises(RunDirError, match="corrupt"):
        RunStore(corrupt)
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "run.sqlite").execute("CREATE TABLE meta(key TEXT, value TEXT)").connection.commit()
    with pytest.raises(RunDirError, match="not an ensnas run"):
        RunStore(other)
    assert main(["status", str(corrupt)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"  # nothing lost


def _signature(run_dir: Path) -> tuple:
    """Everything a decision depends on and says: candidates, statuses, islands and bandit arms, the
    decision records (every look's numbers, exactly), each candidate's stored instances (seeds, and
    which decision trained them), and the population's archive history and bandit allocations."""
    store = RunStore(run_dir)
    out = []
    for r in store.candidates():
        stored = store.load_instances(r.id) if r.statistics else None
        out.append((r.cycle, r.proposer, r.parent_id, r.source, r.status, r.island, r.arm,
                    json.dumps(r.decision, sort_keys=True), (stored.seeds, stored.origin) if stored else None))
    return out, store.archive_history(), store.allocations()


# The gate never stops for futility here and the seed has 2 instances, so it trains extra instances
# of candidates and incumbents on most decisions and the kills land inside it too.
# max_instances 4: the sequential test accepts from 4 paired instances only, and the seed lacks seeds 2, 3
GATE = "noise_instances: 2\nacceptance: {futility: 0.0, max_instances: 4}\n"
# the population search with objectives that do not depend on timing (latency is measured, so two
# independent runs can differ in it; a resumed run reuses what it stored and never re-measures)
POPULATION = "population: {enabled: true, islands: 2, migrate_every: 2, objectives: [error, params]}\n"


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


@pytest.mark.slow
@pytest.mark.parametrize("search", ["hill-climber", "population"])
def test_kill_minus_nine_then_resume_loses_and_repeats_nothing(tmp_path, fast_task, cache_dir, search):
    """Kill the real CLI process at random moments, resume each time; the finished run must equal an
    uninterrupted one (same candidates, same decisions, same instances, same archives and bandit
    allocations), with every evaluation committed exactly once. Both searches run the overlapped
    pipeline, so kills land while cycle n trains, cycle n+1 is being proposed, or the gate trains."""
    env = dict(os.environ, ENSNAS_CACHE=str(cache_dir))
    base = [sys.executable, "-m", "agent.cli"]
    config = tmp_path / "config.yaml"
    config.write_text(GATE + (POPULATION if search == "population" else ""))
    common = ["--config", str(config), "--task", fast_task, "--cycles", "3", "--proposer", "random",
              "--proposer", "evolution", "--candidates", "2", "--sandbox", "subprocess", "--members", "3", "--quiet"]
    common += ["--proposer", "crossover"] if search == "population" else ["--hill-climber"]
    clean = tmp_path / "clean"
    subprocess.run(base + ["run", "--run-dir", str(clean)] + common, check=True, env=env, cwd=ROOT,
                   capture_output=True)
    killed = tmp_path / "killed"
    rng = random.Random(0)
    cmd = base + ["run", "--run-dir", str(killed)] + common
    kills, killed_pids = 0, []
    for attempt in range(10):  # eight kills at random moments (start-up included), then let it finish
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            proc.wait(timeout=rng.uniform(1.0, 8.0) if kills < 8 else 900)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            killed_pids.append(proc.pid)
            # setup is checked before anything is written: a run killed that early is started again
            started = run_dir_state(killed) == "started"
            cmd = base + (["resume", str(killed), "--quiet"] if started else ["run", "--run-dir", str(killed)] + common)
            continue
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        break
    else:
        pytest.fail("the run never finished")
    assert kills >= 3
    assert _signature(killed) == _signature(clean)
    if search == "population":
        assert _signature(clean)[1] and _signature(clean)[2]   # archives and allocations were compared
    store = RunStore(killed)
    trained = [d["instances"] for d in (r.decision for r in store.candidates()) if d and "instances" in d]
    assert sum(len(t["candidate_trained"]) for t in trained) >= 3  # the gate did train extra instances
    assert sum(len(t["incumbent_trained"]) for t in trained) >= 1
    assert all(r.evaluations <= 1 for r in store.candidates())
    assert all(r.evaluations == 1 for r in store.candidates(status=("accepted", "rejected", "seed")))
    assert store.get_state("final_report") is not None
    # the killed runs' warm sandboxes (own sessions, so killpg missed them) noticed and went
    orphans = [f"--parent-pid {pid} ".encode() for pid in killed_pids]
    deadline = time.time() + 15
    while True:
        left = [p for p in Path("/proc").glob("[0-9]*") if any(o in _cmdline(p) for o in orphans)]
        if not left or time.time() > deadline:
            break
        time.sleep(0.5)
    assert not left, "warm sandboxes outlived the run killed with -9"
