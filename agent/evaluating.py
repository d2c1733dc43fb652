"""A cycle's evaluation stage: every candidate through the run's executor, each recorded as it finishes.

The executor (sandbox.executor) is where evaluations run: `local` threads with warm sandboxes on
this machine, or `ray` tasks on a cluster's nodes. Either way the predictions are scored on this
machine, which holds the labels, and the loop is the store's single writer. A job's id names its
candidate and seeds, so one run again (a lost node, a restarted head) is the same job, and the
store records a candidate once (`RunStore.record_evaluation` ignores a row no longer pending).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from agent import progress, run_state
from agent.config import RunConfig
from agent.store import CandidateRow
from evaluator.evaluate import Evaluation, Evaluator
from sandbox.executor import EvalJob, Executor, job_id_for, make_executor

if TYPE_CHECKING:
    from agent.loop import SearchLoop

log = logging.getLogger("ensnas")


def open_executor(config: RunConfig, evaluator: Evaluator) -> Executor:
    """The executor the run's config names, scoring with `evaluator`."""
    if config.executor == "ray":  # each node resolves the configured backend (auto: its strongest) itself
        ray = config.ray
        return make_executor("ray", evaluator=evaluator, address=ray.address, sandbox=config.sandbox.backend,
                             max_retries=ray.max_retries, warm_start=config.sandbox.warm_start and ray.warm_start,
                             node_cache_dir=ray.node_cache_dir, attempt_log=ray.attempt_log,
                             resources=ray.resources)
    return make_executor(config.executor, evaluator=evaluator, workers=config.sandbox.workers)


def evaluate_cycle(loop: "SearchLoop", pending: list[CandidateRow], cycle: int) -> None:
    """The cycle's pending candidates, two instances each, with a progress bar."""
    run_state.set_phase(loop.store, "evaluating", cycle)
    with progress.phase(f"cycle {cycle}: evaluating in the sandbox", total=len(pending)) as bar:
        evaluate_jobs(loop, [(row.id, row.source) for row in pending], on_result=lambda: bar.advance())


def evaluate_jobs(loop: "SearchLoop", rows: list[tuple[int, str]], *, instances: int = 2,
                  on_result: Callable[[], None] = lambda: None) -> dict[int, Evaluation]:
    """Evaluate (candidate id, source) pairs through the loop's executor, recording each as it finishes."""
    owners: dict[str, int] = {}
    for cand_id, source in rows:
        job = EvalJob(source=source, instances=instances, job_id=job_id_for(cand_id, seed_base=0, instances=instances))
        owners[job.job_id] = cand_id
        loop.executor.submit(job)
    results: dict[int, Evaluation] = {}
    for job, result in loop.executor.completed():
        cand_id = owners[job.job_id]
        record_result(loop, cand_id, result)
        results[cand_id] = result
        on_result()
        log.debug("candidate %d: %s", cand_id, "ok" if result.ok else result.reason.value)
    return results


def record_result(loop: "SearchLoop", cand_id: int, result: Evaluation) -> None:
    """Commit one evaluation (a no-op for a candidate no longer pending) and account its time."""
    start = time.perf_counter()
    loop.store.record_evaluation(
        cand_id, ok=result.ok, reason=result.reason.value if result.reason else None, detail=result.detail,
        statistics=result.statistics.as_dict() if result.statistics else None, param_count=result.param_count,
        seconds=result.wall_seconds, val=result.val_probs, test=result.test_probs, latency=result.latency_ms,
        seeds=result.seeds)
    loop.time_spent("store", time.perf_counter() - start)
    loop.time_spent("sandbox", result.sandbox_seconds - sum(result.train_seconds))
    loop.time_spent("training", sum(result.train_seconds))
