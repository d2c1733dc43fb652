"""Warm starts (sandbox.warm): same results as a cold start, the wall clock counts from the job,
hostile programs stay contained while the next sandbox waits beside them, nothing outlives close()."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from evaluator.failures import FailureReason as R
from sandbox import Limits, SandboxJob, make_sandbox
from tests.test_sandbox_hostile import HOSTILE, NORMAL, _processes_with

LIMITS = Limits(timeout_s=20, memory_mb=1024, pids=64, max_output_bytes=64 << 10, max_log_bytes=4 << 20,
                max_file_mb=16)


@pytest.fixture(params=["subprocess", "process", "docker"])
def warm(request, digits_task, cache_dir, tmp_path):
    from evaluator.evaluate import Evaluator
    sandbox = request.getfixturevalue("docker_sandbox") if request.param == "docker" else make_sandbox(request.param)
    task = digits_task.model_copy(update={"budget": digits_task.budget.model_copy(update={"epochs": 1})})
    work_root = tmp_path / "work"
    work_root.mkdir()
    work_root.chmod(0o755)
    make = lambda size: Evaluator(task=task, sandbox=sandbox, limits=LIMITS, cache_dir=cache_dir,  # noqa: E731
                                  work_root=work_root, warm_start=size)
    evaluator = make(1)
    yield request.param, evaluator, make, work_root
    evaluator.close()


def _no_leftovers(kind, evaluator, work_root) -> None:
    if kind == "docker":
        from sandbox.docker_backend import LABEL, leftover_containers
        mine = [c for c in leftover_containers(evaluator.sandbox.client())
                if c.labels.get(LABEL + ".work", "").startswith(str(work_root))]
        assert not mine, "a warm container outlived close()"
    assert not list(work_root.iterdir()), "a warm work dir outlived close()"


@pytest.mark.slow
@pytest.mark.docker
def test_warm_matches_cold_and_leaves_nothing(warm):
    kind, evaluator, make, work_root = warm
    cold = make(0)
    reference = cold.evaluate(NORMAL, seed_base=3)
    assert reference.ok, reference.detail
    evaluator.prewarm()
    results = [evaluator.evaluate(NORMAL, seed_base=3) for _ in range(2)]
    for result in results:
        assert result.ok, (result.detail, result.stderr_tail[-400:])
        np.testing.assert_allclose(result.val_probs, reference.val_probs, atol=1e-5)
    check = evaluator.check("def build_model(s, k):\n    return None\n")
    assert not check.ok and check.reason in (R.build_error, R.shape_mismatch, R.forward_error), check.reason
    assert len(list(work_root.iterdir())) == 1  # exactly the replacement, warming for the next candidate
    evaluator.close()
    _no_leftovers(kind, evaluator, work_root)
    after = evaluator.evaluate(NORMAL, seed_base=3)  # a closed pool falls back to cold starts
    assert after.ok and np.allclose(after.val_probs, reference.val_probs, atol=1e-5)


@pytest.mark.slow
@pytest.mark.docker
def test_time_limit_counts_from_the_job_not_the_launch(warm):
    kind, evaluator, make, work_root = warm
    import dataclasses
    from sandbox.warm import WarmPool
    limits = dataclasses.replace(LIMITS, timeout_s=8)
    pool = WarmPool(sandbox=evaluator.sandbox, data_dir=evaluator.data.inputs_dir, limits=limits,
                    make_work_dir=lambda: evaluator._new_work_dir("ensnas-job-"))
    try:
        pool.fill()
        time.sleep(limits.timeout_s + 2)  # longer than the job may run: waiting is not running
        work, launched = pool.take()
        assert launched.alive()
        evaluator._write_job(work, NORMAL, [0, 1])
        run = launched.finish()
        assert not run.timed_out and run.exit_code == 0, run.stderr_tail[-400:]
        assert (work / "out" / "predictions.npz").exists()
        # and a job that runs too long is still killed at the limit, counted from its start
        work2, launched2 = pool.take()
        evaluator._write_job(work2, (HOSTILE / "sleep_forever.py").read_text(), [0, 1])
        started = time.perf_counter()
        run2 = launched2.finish()
        assert run2.timed_out and limits.timeout_s - 1 < time.perf_counter() - started < limits.timeout_s + 15
    finally:
        pool.close()


@pytest.mark.slow
@pytest.mark.docker
def test_abandoned_warm_worker_exits_on_its_own(warm):
    kind, evaluator, make, work_root = warm
    work = evaluator._new_work_dir("ensnas-job-")
    launched = evaluator.sandbox.start(SandboxJob(work_dir=work, data_dir=evaluator.data.inputs_dir, limits=LIMITS,
                                                  wait_for_job_s=3))
    try:
        deadline = time.time() + 60
        while launched.alive() and time.time() < deadline:
            time.sleep(0.5)
        assert not launched.alive(), "a warm worker with no job kept waiting past its deadline"
        assert not (work / "out" / "result.json").exists()  # no verdict for a job never sent
    finally:
        launched.cancel()


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("warm", ["process", "docker"], indirect=True)  # the hardened ones
@pytest.mark.parametrize("name, expected", [("kill_everything", R.crashed), ("fork_bomb", R.timeout),
                                            ("detached_child", None), ("write_predictions", R.invalid_output)])
def test_hostile_program_cannot_touch_the_sandbox_warming_beside_it(warm, name, expected):
    kind, evaluator, make, work_root = warm
    import dataclasses
    if expected == R.timeout:
        evaluator.close()
        evaluator = make(1)
        evaluator.limits = dataclasses.replace(LIMITS, timeout_s=6)
        evaluator.warm_pool.limits = evaluator.limits
    token = f"ensnas-token-{uuid.uuid4().hex}"
    evaluator.prewarm()
    source = (HOSTILE / f"{name}.py").read_text().replace("__TOKEN__", token).replace(
        "__MARKER__", str(work_root / f"marker-{token}"))
    result = evaluator.evaluate(source)
    assert result.reason == expected, f"{kind}/{name}: {result.reason} {result.detail} {result.stderr_tail[-400:]}"
    normal = evaluator.evaluate(NORMAL)  # runs in the sandbox that was warming beside the hostile one
    assert normal.ok and normal.statistics.accuracy > 0.5, (normal.detail, normal.stderr_tail[-400:])
    deadline = time.time() + 10
    while time.time() < deadline and _processes_with(token):
        time.sleep(0.5)
    assert not _processes_with(token), "a detached child outlived the sandbox"
    evaluator.close()
    _no_leftovers(kind, evaluator, work_root)


@pytest.mark.docker
def test_containers_of_a_killed_host_process_are_reaped(docker_sandbox, tmp_path):
    """What a run killed with -9 left (a warm container, or one mid-evaluation) is removed by the
    next run on this machine; containers of live processes are not touched."""
    import socket
    import subprocess
    import sys

    from sandbox.docker_backend import LABEL, leftover_containers, reap_orphans
    from sandbox.docker_image import ensure_base_image
    client = docker_sandbox.client()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    made = {}
    for who, pid in (("dead", dead.pid), ("alive", os.getpid())):
        made[who] = client.containers.create(ensure_base_image(client), ["/bin/true"], network_mode="none",
                                             labels={LABEL: "1", LABEL + ".work": str(tmp_path / who),
                                                     LABEL + ".owner": f"{host}:{pid}"})
    try:
        removed = reap_orphans(client)
        assert made["dead"].id in removed and made["alive"].id not in removed
        ids = {c.id for c in leftover_containers(client)}
        assert made["dead"].id not in ids and made["alive"].id in ids
    finally:
        for container in made.values():
            try:
                container.remove(force=True)
            except Exception:
                pass


@pytest.mark.slow
@pytest.mark.parametrize("when", ["waiting", "launching"])
@pytest.mark.parametrize("backend", ["subprocess", "process"])
def test_warm_sandboxes_die_with_a_host_killed_with_minus_nine(backend, when, tmp_path, cache_dir):
    """A host killed with -9 never calls close(): its warm workers must notice and go, also when
    the kill lands while they are still starting (before they could look at their parent)."""
    import signal
    import subprocess
    import sys
    code = ("import sys, time\n"
            "from evaluator.evaluate import Evaluator\nfrom evaluator.tasks import get_task\n"
            "from sandbox import Limits, make_sandbox\n"
            f"ev = Evaluator(task=get_task('digits'), sandbox=make_sandbox({backend!r}), limits=Limits(timeout_s=60),"
            f" cache_dir={str(cache_dir)!r}, work_root={str(tmp_path)!r}, warm_start=2)\n"
            "ev.prewarm()\n"
            + ("for slot in list(ev.warm_pool._slots):\n    slot.result()\n" if when == "waiting" else
               "time.sleep(0.3)\n")  # the launcher thread is starting the sandboxes right now
            + "print('warm', flush=True)\ntime.sleep(600)\n")
    host = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[1])
    try:
        assert host.stdout.readline().strip() == "warm"
        if when == "waiting":
            time.sleep(3)
            assert _processes_with(str(tmp_path)), "no warm sandbox to test"
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    deadline = time.time() + 20
    while time.time() < deadline and _processes_with(str(tmp_path)):
        time.sleep(0.2)
    assert not _processes_with(str(tmp_path)), "a warm sandbox outlived its killed host"
