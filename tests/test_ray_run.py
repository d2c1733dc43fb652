"""`ensnas run --executor ray` on a real local cluster (a head and two worker raylets, loopback
only); one worker is SIGKILLed while it evaluates a candidate. The run finishes, every candidate
is in the store once, in a terminal state, with the decisions of an uninterrupted local run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.cli import main
from agent.store import TERMINAL, RunStore
from tests.ray_cluster import KillDuringAttempt, LocalRayCluster

TINY_TASK = """name: digits-tiny
dataset: digits
val_fraction: 0.25
budget: {epochs: 1, batch_size: 64, lr: 0.003}
seed_program: mlp.py
members: 3
"""


def _config(tmp_path: Path, **extra) -> str:
    (tmp_path / "task.yaml").write_text(TINY_TASK)
    config = {"task": str(tmp_path / "task.yaml"), "cycles": 3, "seed": 11, "noise_instances": 0,
              "proposers": [{"name": "random", "candidates": 2}, {"name": "evolution", "candidates": 1}],
              "sandbox": {"backend": "process", "workers": 2, "timeout_s": 120, "memory_mb": 2048},
              "deploy": {"export": False},
              # the default population search, on objectives that do not depend on timing: latency is
              # measured, so two runs (and the cluster's nodes against this machine) may place a candidate differently
              "population": {"objectives": ["error", "params"]}, **extra}
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _outcome(run_dir: Path) -> dict:
    store = RunStore(run_dir)
    rows = [(r.id, r.cycle, r.proposer, r.parent_id, r.source, r.status, r.reason, r.statistics,
             r.decision, r.evaluations) for r in store.candidates()]
    cycles = [(c["cycle"], c["status"], c["incumbent_after"]) for c in store.cycles()]
    store.close()
    return {"candidates": rows, "cycles": cycles}


def test_a_job_recorded_again_changes_nothing(tmp_path):
    """A re-run job (lost node, restarted head) finishing after its candidate was recorded: row and
    predictions stay those of the first result, whatever the second says, at every later status."""
    store = RunStore(tmp_path / "run", create=True)
    with store.transaction() as db:
        cid = store.insert_candidate(db, cycle=1, proposer="random", parent_id=None, source="x", diff="", status="pending")
    first, second = np.full((2, 3, 4), 0.25), np.eye(4)[[0, 1, 2]][None].repeat(2, 0)
    record = lambda ok, val, stats: store.record_evaluation(  # noqa: E731
        cid, ok=ok, reason=None if ok else "crashed", detail="", statistics=stats, param_count=1, seconds=1.0,
        val=val, test=val)
    assert record(True, first, {"member_error": 0.1}) is True
    for status in ("evaluated", "accepted", "rejected"):
        if status != "evaluated":
            with store.transaction() as db:
                store.set_decision(db, cid, accepted=status == "accepted", decision={"reason": "test"})
        assert record(True, second, {"member_error": 0.9}) is False and record(False, None, None) is False
        row = store.candidate(cid)
        assert (row.status, row.statistics, row.evaluations) == (status, {"member_error": 0.1}, 1)
        np.testing.assert_array_equal(store.load_predictions(cid)[0], first)
    store.close()


@pytest.mark.slow
@pytest.mark.integration
def test_ray_run_survives_a_killed_worker_with_the_decisions_of_a_local_run(ray_module, tmp_path, cache_dir,
                                                                           monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    assert main(["run", "--config", _config(tmp_path), "--run-dir", str(tmp_path / "local"), "--quiet"]) == 0
    local = _outcome(tmp_path / "local")

    attempts, node_cache = tmp_path / "attempts", tmp_path / "node-cache"
    attempts.mkdir()
    config = _config(tmp_path, ray={"attempt_log": str(attempts), "node_cache_dir": str(node_cache)})
    with LocalRayCluster(workers=2) as cluster:  # the head has no CPUs: every evaluation runs on a worker
        killer = KillDuringAttempt(cluster, "worker1", attempts, skip=lambda job: job.startswith("c1_s"))  # not the seed
        killer.start()
        code = main(["run", "--config", config, "--executor", "ray", "--ray-address", cluster.address,
                     "--run-dir", str(tmp_path / "ray"), "--quiet"])
        killer.join(5)
    assert not cluster.processes(), "a Ray process outlived the cluster"
    assert code == 0
    assert killer.killed, "worker 1 never ran a cycle's candidate long enough to be killed in the act"

    on_ray = _outcome(tmp_path / "ray")
    rows = on_ray["candidates"]
    assert all(r[5] in TERMINAL for r in rows), [r[:1] + r[5:7] for r in rows]
    assert all(r[9] == (1 if r[5] not in ("filtered", "proposal_failed") else 0) for r in rows), \
        "a candidate was recorded twice (or never)"
    assert on_ray == local  # same candidates, statistics, decisions and incumbents, cycle by cycle
    for job, runs in killer.retried().items():  # the cut-off evaluation ran again, on the other worker
        assert len(runs) >= 2 and any(killer.node not in r for r in runs), f"{job} was not re-run: {runs}"
    assert not list(node_cache.rglob("labels*"))  # the nodes got inputs only
    per_node = {}
    for p in attempts.iterdir():
        per_node[p.name.split(".")[1][:8]] = per_node.get(p.name.split(".")[1][:8], 0) + 1
    gate_jobs = {p.name.split(".")[0] for p in attempts.iterdir() if p.name.split(".")[0].endswith("+1")}
    print(f"\nray run: {len(rows)} candidates, {sum(r[5] == 'accepted' for r in rows)} accepted, decisions as the "
          f"local run; {len(gate_jobs)} instances trained for the sequential gate on Ray; attempts per node "
          f"{per_node}; killed worker 1 ({killer.node[:8]}) while it ran {killer.retried()}")


@pytest.mark.slow
@pytest.mark.integration
def test_a_job_lost_on_every_attempt_stops_the_run_and_resume_ends_it_as_a_local_run(ray_module, tmp_path, cache_dir,
                                                                                      monkeypatch, capsys):
    """No retries and the only worker killed mid-evaluation: the run stops with a one-line error and
    records nothing for that candidate; `ensnas resume` on a restarted head (here without the
    cluster: the local executor) evaluates what is pending, once, and ends as an uninterrupted run."""
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    assert main(["run", "--config", _config(tmp_path, cycles=1), "--run-dir", str(tmp_path / "local"), "--quiet"]) == 0
    local = _outcome(tmp_path / "local")

    attempts, run_dir = tmp_path / "attempts", tmp_path / "ray"
    attempts.mkdir()
    config = _config(tmp_path, cycles=1, ray={"attempt_log": str(attempts), "max_retries": 0})
    with LocalRayCluster(workers=1) as cluster:
        killer = KillDuringAttempt(cluster, "worker0", attempts, skip=lambda job: job.startswith("c1_s"))
        killer.start()
        code = main(["run", "--config", config, "--executor", "ray", "--ray-address", cluster.address,
                     "--run-dir", str(run_dir), "--quiet"])
        killer.join(5)
    assert killer.killed and code == 2
    err = capsys.readouterr().err
    assert "was lost on 1 attempts" in err and "nothing was recorded" in err, err
    lost = int(killer.killed[0].split("_")[0][1:])
    with RunStore(run_dir) as store:
        assert (store.candidate(lost).status, store.candidate(lost).evaluations) == ("pending", 0)

    assert main(["resume", str(run_dir), "--executor", "local", "--quiet"]) == 0
    assert _outcome(run_dir) == local
