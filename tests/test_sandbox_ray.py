"""Executors: the local one is the loop's thread pool behind submit/wait; the Ray one runs each
job on a node of a real local cluster (separate raylets, loopback only), ships only inputs,
scores on the head, and survives a node killed mid-run. Every job is reported exactly once."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from evaluator.evaluate import Evaluator, SandboxRunner
from evaluator.task_data import INPUT_FILES, cached_inputs, pack_inputs, unpack_inputs
from sandbox import Limits, make_sandbox
from sandbox.executor import EvalJob, ExecutorEvaluator, LocalExecutor, job_id_for
from tests.ray_cluster import KillDuringAttempt, LocalRayCluster

SOURCE = "import torch.nn as nn\n\ndef build_model(s, k):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, {h}), nn.ReLU(), nn.Linear({h}, k))\n"
BROKEN = "def build_model(s, k):\n    raise RuntimeError('no model')\n"


def _jobs(n: int) -> list[EvalJob]:
    return [EvalJob(source=SOURCE.format(h=16 + i), job_id=job_id_for(i, seed_base=0, instances=2)) for i in range(n)]


@pytest.fixture(scope="module")
def quick_evaluator(digits_task, cache_dir):
    task = digits_task.model_copy(update={"budget": digits_task.budget.model_copy(update={"epochs": 2})})
    evaluator = Evaluator(task=task, sandbox=make_sandbox("subprocess"), limits=Limits(timeout_s=120, memory_mb=2048),
                          cache_dir=cache_dir)
    yield evaluator
    evaluator.close()


def test_job_ids_name_candidate_and_seeds():
    a = EvalJob(source="x", instances=2)
    assert a.seeds == [0, 1] and a.job_id == EvalJob(source="x", instances=2).job_id
    assert a.job_id != EvalJob(source="x", instances=2, seed_base=2).job_id != EvalJob(source="x", instances=3).job_id
    assert job_id_for(7, seed_base=2, instances=2) != job_id_for(7, seed_base=0, instances=2)


def test_inputs_bundle_carries_inputs_and_never_labels(quick_evaluator, tmp_path):
    bundle = pack_inputs(quick_evaluator.data.inputs)
    assert cached_inputs(bundle.key, tmp_path) is None
    inputs = unpack_inputs(bundle, tmp_path)
    assert cached_inputs(bundle.key, tmp_path) == inputs
    assert sorted(p.name for p in inputs.inputs_dir.iterdir()) == sorted(INPUT_FILES)
    assert not [p for p in tmp_path.rglob("*") if "label" in p.name or p.name.startswith("y_v") or p.name.startswith("y_te")]
    for name in INPUT_FILES:
        assert (inputs.inputs_dir / name).read_bytes() == (quick_evaluator.data.inputs_dir / name).read_bytes()
    assert unpack_inputs(bundle, tmp_path) == inputs  # a second arrival reuses the first
    assert inputs.input_shape == quick_evaluator.data.input_shape
    # the out/ quota is sized on the node from the rows it predicts, without the labels
    assert inputs.n_predicted == len(quick_evaluator.data.y_val) + len(quick_evaluator.data.y_test)


def test_scoring_a_run_from_elsewhere_equals_evaluating_here(quick_evaluator, tmp_path):
    """The Ray path without Ray: a runner on shipped inputs (no labels) runs, the labelled evaluator scores."""
    inputs = unpack_inputs(pack_inputs(quick_evaluator.data.inputs), tmp_path)
    remote = SandboxRunner(task=quick_evaluator.task, inputs=inputs, sandbox=make_sandbox("subprocess"),
                           limits=quick_evaluator.limits)
    for source in (SOURCE.format(h=16), BROKEN):
        here = quick_evaluator.evaluate(source, seed_base=3)
        there = quick_evaluator.score(remote.run(source, [3, 4]))
        assert (here.ok, here.reason, here.seeds) == (there.ok, there.reason, there.seeds)
        if here.ok:
            np.testing.assert_array_equal(here.val_probs, there.val_probs)
            assert here.statistics.as_dict() == there.statistics.as_dict()


def test_local_executor_runs_each_id_once_and_matches_direct_evaluation(quick_evaluator):
    jobs = _jobs(3)
    with LocalExecutor(evaluator=quick_evaluator, workers=2) as executor:
        assert executor.submit(jobs[0]) and not executor.submit(jobs[0])  # in flight: one run
        for job in jobs[1:]:
            executor.submit(job)
        out = list(executor.completed())
        assert sorted(j.job_id for j, _ in out) == sorted(j.job_id for j in jobs)
        assert executor.in_flight == 0 and executor.wait(timeout=0) == []
    direct = quick_evaluator.evaluate(jobs[1].source)
    got = dict((j.job_id, e) for j, e in out)[jobs[1].job_id]
    np.testing.assert_array_equal(got.val_probs, direct.val_probs)


def test_a_job_the_executor_fails_on_is_raised_after_the_results_beside_it(quick_evaluator):
    """A job that raises in the executor (not a candidate's failure: here a source that cannot be
    written as UTF-8) stops the caller: after the jobs that finished with it were handed over, and
    without waiting for the ones still running (on a lost cluster they might never end)."""
    good = _jobs(2)
    bad = EvalJob(source="def build_model(s, k):\n    return '\udc80'\n", job_id="unwritable")
    with LocalExecutor(evaluator=quick_evaluator, workers=1) as executor:
        executor.submit(good[0])
        executor.submit(bad)
        while executor._done.qsize() < 2:  # both finished (one way or the other) before anyone asked
            time.sleep(0.05)
        assert [job.job_id for job, _ in executor.wait()] == [good[0].job_id]
        with pytest.raises(UnicodeEncodeError):
            executor.wait()
        executor.submit(bad)
        executor.submit(good[1])  # queued behind the bad one: still running when that one fails
        started = time.perf_counter()
        with pytest.raises(UnicodeEncodeError):
            executor.wait()
        assert time.perf_counter() - started < 1.0 and executor.in_flight == 1
        assert [job.job_id for job, _ in executor.completed()] == [good[1].job_id]


def test_proposers_trainings_go_through_the_executor(quick_evaluator):
    class Observed(LocalExecutor):  # the real local executor, noting what it was asked to run
        def evaluate(self, job):
            self.jobs = [*getattr(self, "jobs", []), job]
            return super().evaluate(job)

    executor = None
    facade = ExecutorEvaluator(evaluator=quick_evaluator, executor=lambda: executor)
    assert facade.data is quick_evaluator.data and facade.task is quick_evaluator.task
    before = facade.evaluate(SOURCE.format(h=20), seed_base=5)  # no executor open yet: the evaluator's own
    executor = Observed(evaluator=quick_evaluator)
    after = facade.evaluate(SOURCE.format(h=20), seed_base=5)
    assert [j.seeds for j in executor.jobs] == [[5, 6]]
    np.testing.assert_array_equal(before.val_probs, after.val_probs)
    executor.close()


@pytest.mark.parametrize("address", ["127.0.0.2:{port}", "127.0.0.2:notaport"])
def test_ray_executor_fails_fast_without_a_cluster(ray_module, quick_evaluator, address):
    import socket
    from evaluator.failures import ConfigError
    from sandbox.ray_executor import RayExecutor
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]  # closed again below: nobody listens there
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="no Ray cluster"):
        RayExecutor(evaluator=quick_evaluator, address=address.format(port=port))
    assert time.perf_counter() - started < 15 and not ray_module.is_initialized()


@pytest.mark.slow
@pytest.mark.integration
def test_ray_executor_survives_a_killed_node(ray_module, quick_evaluator, tmp_path):
    from sandbox.ray_executor import RayExecutor

    ray = ray_module
    jobs = _jobs(5)
    reference = {j.job_id: e for j, e in LocalExecutor(evaluator=quick_evaluator).map(jobs)}
    node_cache, attempts = tmp_path / "node-cache", tmp_path / "attempts"
    attempts.mkdir()
    with LocalRayCluster(workers=2) as cluster:
        executor = RayExecutor(evaluator=quick_evaluator, address=cluster.address, sandbox="process",
                               node_cache_dir=node_cache, attempt_log=attempts, max_retries=3)
        try:
            cluster.wait_for_nodes(ray, 3)
            killer = KillDuringAttempt(cluster, "worker1", attempts)
            killer.start()
            submitted = [executor.submit(job) for job in jobs + jobs[:2]]  # duplicates while in flight
            results: dict[str, list] = {}
            for job, evaluation in executor.completed():
                results.setdefault(job.job_id, []).append(evaluation)
            killer.join(5)
            again = executor.evaluate(jobs[0])  # synchronous, apart from the queue (proposers' trainings)
        finally:
            executor.close()
    assert not cluster.processes(), "a Ray process outlived the cluster"

    assert submitted == [True] * len(jobs) + [False, False]
    assert killer.killed, "worker 1 never ran a job long enough to be killed in the act"
    assert sorted(results) == sorted(j.job_id for j in jobs) and all(len(v) == 1 for v in results.values())
    for job_id, (evaluation,) in results.items():  # scored on the head: the same numbers as here
        assert evaluation.ok, (evaluation.reason, evaluation.detail)
        np.testing.assert_array_equal(evaluation.val_probs, reference[job_id].val_probs)
        assert evaluation.statistics.as_dict() == reference[job_id].statistics.as_dict()
    np.testing.assert_array_equal(again.val_probs, reference[jobs[0].job_id].val_probs)
    for job_id, runs in killer.retried().items():  # re-run elsewhere; the result came from there
        assert len(runs) >= 2, f"the killed node's job was not run again: {runs}"
        assert executor.nodes[next(j.job_id for j in jobs if j.job_id.replace("/", "_") == job_id)] != killer.node
    # every node read the inputs it was shipped, from its own cache, never the head's files or labels
    assert {Path(d).parents[1] for d in executor.inputs_dirs.values()} == {node_cache}
    assert not list(node_cache.rglob("labels*")) and not list(node_cache.rglob("y_val*"))
    placed = {n: sum(1 for p in attempts.iterdir() if n in p.name) for n in {p.name.split(".")[1] for p in attempts.iterdir()}}
    print(f"\nray: {len(jobs)} jobs (+2 duplicate submissions), attempts per node {placed}, killed "
          f"{killer.node[:8]} during {killer.retried()}, each reported once")
