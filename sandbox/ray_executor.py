"""The Ray executor: evaluations become Ray tasks on a cluster; results come back to the caller.

Each task runs on some node the node's own sandbox (`auto`: Docker where its daemon answers,
else the process backend) through `EvaluatorCache`, so a node materialises a task's data once
in its own cache. When a node dies mid-evaluation Ray re-runs the task elsewhere
(`max_retries`); the driver yields each job id once, whatever happened in between, and a job
whose retries are all spent comes back as a typed `crashed` failure rather than vanishing.

Connect to an existing cluster with `address="ray://..."` or `"host:port"`, or leave it None to
start a local one. `trace_dir` (optional, on a filesystem the nodes share) records every
attempt as `<job_id>.<node_id>.<pid>` — where each job ran and which were retried.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from evaluator.evaluate import Evaluation
from evaluator.failures import ConfigError, FailureReason
from sandbox.executor import EvalJob, EvaluatorCache, Executor, register_executor

try:
    import ray
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError("the ray executor needs Ray: pip install 'ensnas[ray]'") from exc

_NODE_CACHE: dict[tuple, EvaluatorCache] = {}  # per Ray worker process


def _evaluate_on_node(job: EvalJob, cache_dir: str | None, trace_dir: str | None) -> tuple[str, Evaluation, str]:
    """Runs inside a Ray worker: evaluate `job` with this node's sandbox."""
    node = ray.get_runtime_context().get_node_id()
    if trace_dir:
        Path(trace_dir, f"{job.job_id}.{node}.{os.getpid()}").touch()
    key = (cache_dir,)
    if key not in _NODE_CACHE:
        _NODE_CACHE[key] = EvaluatorCache(cache_dir=Path(cache_dir) if cache_dir else None)
    return job.job_id, _NODE_CACHE[key].run(job), node


@register_executor("ray")
class RayExecutor(Executor):
    def __init__(self, *, address: str | None = None, num_cpus: float = 1.0, resources: dict[str, float] | None = None,
                 max_retries: int = 3, max_in_flight: int = 64, cache_dir: Path | str | None = None,
                 trace_dir: Path | str | None = None, init_options: dict | None = None) -> None:
        self.max_in_flight = max_in_flight
        self.cache_dir = str(cache_dir) if cache_dir else None
        self.trace_dir = str(trace_dir) if trace_dir else None
        self.nodes: dict[str, str] = {}  # job_id -> node that produced the yielded result
        if not ray.is_initialized():
            options = {"address": address, "ignore_reinit_error": True, "log_to_driver": False,
                       "logging_level": "WARNING", **(init_options or {})}
            ray.init(**options)
        self._remote = ray.remote(_evaluate_on_node).options(
            num_cpus=num_cpus, resources=resources or {}, max_retries=max_retries, retry_exceptions=False)

    def map(self, jobs: Iterable[EvalJob]) -> Iterator[tuple[str, Evaluation]]:
        pending: dict = {}  # ObjectRef -> job_id
        submitted: set[str] = set()
        yielded: set[str] = set()
        queue = iter(jobs)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.max_in_flight:
                job = next(queue, None)
                if job is None:
                    exhausted = True
                    break
                if job.job_id in submitted:  # idempotent ids: a duplicate submission is one job
                    continue
                submitted.add(job.job_id)
                pending[self._remote.remote(job, self.cache_dir, self.trace_dir)] = job.job_id
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job_id = pending.pop(ref)
                try:
                    _, evaluation, node = ray.get(ref)
                    self.nodes[job_id] = node
                except ray.exceptions.RayError as exc:  # retries exhausted: the job is reported, not lost
                    evaluation = Evaluation(ok=False, reason=FailureReason.crashed,
                                            detail=f"ray task failed after retries: {type(exc).__name__}: {exc}"[:2000])
                if job_id not in yielded:
                    yielded.add(job_id)
                    yield job_id, evaluation

    def close(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
