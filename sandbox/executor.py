"""Executors: where evaluations run. One interface, `Executor.map(jobs) -> (job_id, Evaluation)`.

`local` runs them one after another on this machine; `ray` (sandbox.ray_executor) spreads them
over a Ray cluster, each node running its own Docker or process sandbox. Either way results
come back to the caller, the single writer of the run's store.

Job ids are idempotent: the same candidate (source, task, instances, seeds) gets the same id,
`map` yields each id at most once even when a node died and the job was retried elsewhere, and
a caller that sees an id it already stored can drop it. Nothing is lost: every submitted id is
yielded, failed runs as an Evaluation with a typed reason.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from evaluator.evaluate import Evaluation, Evaluator
from evaluator.failures import FailureReason, SandboxUnavailable
from evaluator.registry import Registry
from evaluator.tasks import TaskConfig
from sandbox.base import Limits


@dataclass(frozen=True, kw_only=True)
class EvalJob:
    """One candidate to evaluate. `job_id` defaults to a hash of everything that determines the result."""
    source: str
    task: TaskConfig
    instances: int = 2
    seed_base: int = 0
    sandbox: str = "auto"
    limits: Limits = field(default_factory=Limits)
    job_id: str = ""

    def __post_init__(self) -> None:
        if not self.job_id:
            object.__setattr__(self, "job_id", self.content_id())

    def content_id(self) -> str:
        ident = {"source": self.source, "task": self.task.model_dump(mode="json"), "instances": self.instances,
                 "seed_base": self.seed_base}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


class Executor(ABC):
    name = "abstract"

    @abstractmethod
    def map(self, jobs: Iterable[EvalJob]) -> Iterator[tuple[str, Evaluation]]:
        """Evaluate `jobs` (in any order); yield (job_id, Evaluation) exactly once per distinct id."""

    def close(self) -> None:
        """Release what the executor holds (cluster connections)."""


EXECUTORS: Registry[Executor] = Registry("executor", lazy={"ray": "sandbox.ray_executor"})  # ray: the `ray` extra
register_executor = EXECUTORS.register


def make_executor(name: str, **options) -> Executor:
    return EXECUTORS.make(name, **options)


class EvaluatorCache:
    """Evaluators per (task, sandbox, limits), so a node materialises each task's data once."""

    def __init__(self, *, cache_dir: Path | None = None, work_root: Path | None = None) -> None:
        self.cache_dir, self.work_root = cache_dir, work_root
        self._evaluators: dict[str, Evaluator] = {}

    def evaluator(self, job: EvalJob) -> Evaluator:
        from sandbox.base import make_sandbox
        from sandbox.select import resolve_sandbox_name
        key = json.dumps([job.task.model_dump(mode="json"), job.sandbox, repr(job.limits)], sort_keys=True)
        if key not in self._evaluators:
            sandbox = make_sandbox(resolve_sandbox_name(job.sandbox))
            sandbox.check_available()
            self._evaluators[key] = Evaluator(task=job.task, sandbox=sandbox, limits=job.limits,
                                              cache_dir=self.cache_dir, work_root=self.work_root)
        return self._evaluators[key]

    def run(self, job: EvalJob) -> Evaluation:
        """Evaluate one job here; an unusable sandbox becomes a typed failure, not an exception."""
        try:
            return self.evaluator(job).evaluate(job.source, instances=job.instances, seed_base=job.seed_base)
        except SandboxUnavailable as exc:
            return Evaluation(ok=False, reason=FailureReason.sandbox_unavailable, detail=str(exc))


@register_executor("local")
class LocalExecutor(Executor):
    """Serial, in this process: the default for one machine."""

    def __init__(self, *, cache_dir: Path | None = None, work_root: Path | None = None) -> None:
        self.cache = EvaluatorCache(cache_dir=cache_dir, work_root=work_root)

    def map(self, jobs: Iterable[EvalJob]) -> Iterator[tuple[str, Evaluation]]:
        seen: set[str] = set()
        for job in jobs:
            if job.job_id in seen:
                continue
            seen.add(job.job_id)
            yield job.job_id, self.cache.run(job)
