"""Executors: where evaluations run. Submit jobs; collect (job, Evaluation) as each one finishes.

`local` runs them on this machine in a thread pool, through the evaluator and its warm sandboxes.
`ray` (sandbox.ray_executor) runs each as a Ray task on whichever node takes it, in that node's
own sandbox, on inputs shipped through Ray's object store. Either way the predictions are scored
here, by the `Evaluator` that holds the labels, and the caller is the single writer of its store.

Job ids are idempotent. The loop names a job by candidate and seeds (`job_id_for`), so a job
submitted again (the same instances of the same candidate, e.g. by a head restarted on a store
where it is still pending) is the same job. An executor runs an id at most once while it is in
flight and reports each run once, even when Ray re-ran it after losing a node. Whether a
finished job counts is the store's decision (`RunStore.record_evaluation` ignores a row that is
no longer pending).
"""
from __future__ import annotations

import hashlib
import json
import queue
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from evaluator.evaluate import Evaluation, Evaluator
from evaluator.failures import EnsnasError
from evaluator.registry import Registry


class ExecutorError(EnsnasError):
    """The executor itself failed (a cluster lost the job on every retry, a node cannot sandbox):
    nothing is recorded for the job, so `ensnas resume` evaluates it again."""


@dataclass(frozen=True, kw_only=True)
class EvalJob:
    """Train `instances` copies of `source` with seeds seed_base, seed_base+1, ... ."""
    source: str
    instances: int = 2
    seed_base: int = 0
    job_id: str = ""  # default: a hash of the source and the seeds

    def __post_init__(self) -> None:
        if not self.job_id:
            ident = json.dumps({"source": self.source, "seeds": self.seeds}, sort_keys=True)
            object.__setattr__(self, "job_id", hashlib.sha256(ident.encode()).hexdigest()[:20])

    @property
    def seeds(self) -> list[int]:
        return [self.seed_base + i for i in range(self.instances)]


def job_id_for(cand_id: int, *, seed_base: int, instances: int) -> str:
    """The id of a run's evaluation of candidate `cand_id` on those seeds (stable across restarts)."""
    return f"c{cand_id}/s{seed_base}+{instances}"


class Executor(ABC):
    """Runs evaluations for one task and scores them with `evaluator`. Thread-safe: a proposer may
    submit while another thread waits."""
    name = "abstract"

    def __init__(self, *, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._error: BaseException | None = None  # an executor failure, raised by the next wait()

    def _raise_held_error(self) -> None:
        """Raise the failure held back so that the jobs finishing beside it were handed over first."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    @abstractmethod
    def submit(self, job: EvalJob) -> bool:
        """Start `job`; False (and nothing started) when a job with its id is already in flight."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> list[tuple[EvalJob, Evaluation]]:
        """Block until a job finished or `timeout` passed; return every finished job ([] if none).
        A job the executor itself failed on (ExecutorError, a bug) raises: at once, or, when other
        jobs finished beside it, at the next call, after those were returned (nothing finished is
        thrown away; nothing unfinished is waited for)."""

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Jobs submitted and not yet returned by `wait`."""

    @abstractmethod
    def evaluate(self, job: EvalJob) -> Evaluation:
        """Run `job` now and wait for it, apart from the jobs in flight (which `wait` reports)."""

    def completed(self) -> Iterator[tuple[EvalJob, Evaluation]]:
        """Every job in flight, as each finishes."""
        while self.in_flight:
            yield from self.wait()

    def map(self, jobs: Iterable[EvalJob]) -> Iterator[tuple[EvalJob, Evaluation]]:
        for job in jobs:
            self.submit(job)
        yield from self.completed()

    def prewarm(self) -> None:
        """Get sandboxes ready ahead of the first job, where the executor can."""

    def close(self) -> None:
        """Release what the executor holds (threads, cluster connections); the evaluator stays open."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


EXECUTORS: Registry[Executor] = Registry("executor", lazy={"ray": "sandbox.ray_executor"})  # ray: the `ray` extra
register_executor = EXECUTORS.register


def make_executor(name: str, **options) -> Executor:
    return EXECUTORS.make(name, **options)


@register_executor("local")
class LocalExecutor(Executor):
    """`workers` threads on this machine, each job through `evaluator.evaluate` (so through its warm
    sandboxes when it keeps any): what the loop did with a thread pool, behind the interface."""

    def __init__(self, *, evaluator: Evaluator, workers: int = 1) -> None:
        super().__init__(evaluator=evaluator)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ensnas-eval")
        self._done: queue.Queue[tuple[EvalJob, Future]] = queue.Queue()
        self._flight: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, job: EvalJob) -> bool:
        with self._lock:
            if job.job_id in self._flight:
                return False
            self._flight.add(job.job_id)
        future = self._pool.submit(self.evaluator.evaluate, job.source, instances=job.instances,
                                   seed_base=job.seed_base)
        future.add_done_callback(lambda f, job=job: self._done.put((job, f)))
        return True

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._flight) + (self._error is not None)  # an error still to report counts

    def wait(self, timeout: float | None = None) -> list[tuple[EvalJob, Evaluation]]:
        self._raise_held_error()
        with self._lock:
            if not self._flight:
                return []
        try:
            finished = [self._done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                finished.append(self._done.get_nowait())
            except queue.Empty:
                break
        out = []
        for job, future in finished:
            with self._lock:
                self._flight.discard(job.job_id)
            if future.exception() is not None:  # not a candidate's failure: raised after the others
                self._error = self._error or future.exception()
                continue
            out.append((job, future.result()))
        if not out:  # never wait on the rest first: they may never finish
            self._raise_held_error()
        return out

    def evaluate(self, job: EvalJob) -> Evaluation:
        return self.evaluator.evaluate(job.source, instances=job.instances, seed_base=job.seed_base)

    def prewarm(self) -> None:
        self.evaluator.prewarm()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ExecutorEvaluator:
    """The evaluator as proposers see it, its trainings sent through the run's executor (on Ray:
    to the cluster). A proposer that trains programs while it proposes (closed_form's dual runs)
    calls `evaluate`; everything else (check, data, task) is the evaluator's own, on this machine.
    Before the run opens its executor, `evaluate` is the evaluator's."""

    def __init__(self, *, evaluator: Evaluator, executor: Callable[[], Executor | None]) -> None:
        self._evaluator, self._executor = evaluator, executor

    def evaluate(self, source: str, *, instances: int = 2, seed_base: int = 0, **local_only) -> Evaluation:
        executor = self._executor()
        if executor is None or local_only:  # keep_dir / save_weights need this machine's work dir
            return self._evaluator.evaluate(source, instances=instances, seed_base=seed_base, **local_only)
        return executor.evaluate(EvalJob(source=source, instances=instances, seed_base=seed_base))

    def __getattr__(self, name: str):
        return getattr(self._evaluator, name)
