"""The Ray executor: each evaluation is a Ray task; the head scores what the nodes send back.

What runs where:
- the head (this process) holds the task's labels and the run's store. It puts the task's
  inputs (x_train, y_train, x_val, x_test: no validation or test labels) into Ray's object
  store once; every task carries a reference to that one object.
- a node that takes a task runs the candidate in its own sandbox (`auto`: Docker where its
  daemon answers, else the process backend; or the backend named), exactly as `ensnas evaluate`
  would there. It materialises the inputs into its own cache the first time (never reading a
  path of the head's), and returns the raw predictions (`RawRun`), unscored.
- the head validates and scores them (`Evaluator.score`).

Warm starts fit Ray as they fit a thread: Ray reuses a worker process for the next task, so each
worker process keeps its `SandboxRunner` and, with `warm_start`, one sandbox launched ahead of
the next candidate (interpreter, torch, data) while the current one trains.

A task asks for the sandbox's CPUs, memory, (`Limits(gpu=True)`) one GPU, and any custom
`resources` (e.g. {"ensnas": 1} keeps evaluations on nodes started with `--resources`). When a node dies
mid-evaluation, Ray runs the task again elsewhere (`max_retries`); the executor reports the job
once. If every retry is lost, or a node cannot run the sandbox, `ExecutorError`: nothing is
recorded for the job and `ensnas resume` evaluates it again.

`address`: "auto" (RAY_ADDRESS, else a cluster started on this machine with `ray start`),
"host:port" / "ray://host:port", or None to start a private local Ray instance.
`attempt_log` (a directory every node can write, optional) gets one file per attempt,
`<job>.<node>.<pid>` with '/' in the job id as '_', empty while it runs and "done" once its
sandbox returned: where each job ran, which were re-run, which were cut off.
"""
from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from evaluator.evaluate import Evaluation, Evaluator, RawRun, SandboxRunner
from evaluator.failures import ConfigError, SandboxUnavailable
from evaluator.task_data import cached_inputs, pack_inputs, unpack_inputs
from evaluator.tasks import TaskConfig
from sandbox.base import Limits
from sandbox.executor import EvalJob, Executor, ExecutorError, register_executor

try:
    import ray
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError("the ray executor needs Ray: pip install 'ensnas[ray]'") from exc


@dataclass(frozen=True)
class NodeSpec:
    """Everything a node needs to build its runner, except the inputs (shipped by reference)."""
    task: TaskConfig
    sandbox: str
    limits: Limits
    threads: int
    warm_start: int
    cache_dir: str | None  # the node's own cache (None: its ENSNAS_CACHE or ~/.cache/ensnas)
    inputs_key: str        # content hash of the shipped inputs


@dataclass
class NodeResult:
    raw: RawRun
    node_id: str
    backend: str
    inputs_dir: str


# One runner per Ray worker process, kept between its tasks (with its warm sandbox); a task with
# another spec (another run, task or limits) replaces it, so no warm sandbox waits for a spec gone.
_RUNNERS: dict[str, SandboxRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def _runner(spec: NodeSpec, inputs_ref) -> SandboxRunner:
    from sandbox.base import make_sandbox
    from sandbox.select import resolve_sandbox_name
    key = repr(spec)
    with _RUNNERS_LOCK:
        if key not in _RUNNERS:
            for old in _RUNNERS.values():
                old.close()
            _RUNNERS.clear()
            sandbox = make_sandbox(resolve_sandbox_name(spec.sandbox))
            sandbox.check_available()
            cache = Path(spec.cache_dir) if spec.cache_dir else None
            inputs = cached_inputs(spec.inputs_key, cache)  # fetched and unpacked once per node
            if inputs is None:
                inputs = unpack_inputs(ray.get(inputs_ref), cache)
            _RUNNERS[key] = SandboxRunner(task=spec.task, inputs=inputs, sandbox=sandbox, limits=spec.limits,
                                          threads=spec.threads, warm_start=spec.warm_start)
        return _RUNNERS[key]


def _run_on_node(spec: NodeSpec, inputs: list, source: str, seeds: list[int], job_id: str,
                 attempt_log: str | None) -> NodeResult:
    """A Ray task: run one job in this node's sandbox and send back what it wrote, unscored."""
    node = ray.get_runtime_context().get_node_id()
    attempt = Path(attempt_log, f"{job_id.replace('/', '_')}.{node}.{os.getpid()}") if attempt_log else None
    if attempt:
        attempt.touch()
    try:
        runner = _runner(spec, inputs[0])
    except SandboxUnavailable as exc:
        raise ExecutorError(f"node {node[:12]} cannot run the {spec.sandbox} sandbox: {exc}") from exc
    raw = runner.run(source, seeds)
    if attempt:
        attempt.write_text("done\n")
    return NodeResult(raw=raw, node_id=node, backend=runner.sandbox.name, inputs_dir=str(runner.inputs.inputs_dir))


def _check_reachable(address: str | None) -> None:
    """Fail fast on a host:port nobody answers (Ray itself would retry for minutes)."""
    if not address or address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc}); start one there with "
                          "`ray start --head --port=PORT` or fix --ray-address") from exc


@register_executor("ray")
class RayExecutor(Executor):
    def __init__(self, *, evaluator: Evaluator, address: str | None = "auto", sandbox: str = "auto",
                 max_retries: int = 3, warm_start: bool = True, node_cache_dir: str | Path | None = None,
                 attempt_log: str | Path | None = None, resources: dict[str, float] | None = None,
                 init_options: dict | None = None) -> None:
        super().__init__(evaluator=evaluator)
        self.attempt_log = str(attempt_log) if attempt_log else None
        self.nodes: dict[str, str] = {}  # job_id -> the node whose result was reported
        self.inputs_dirs: dict[str, str] = {}  # job_id -> where that node's sandbox read the inputs
        self._refs: dict = {}  # ObjectRef -> EvalJob, in flight
        self._lock = threading.Lock()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _check_reachable(address)
            options = {"address": address, "log_to_driver": False, "logging_level": "WARNING",
                       **(init_options or {})}
            try:
                ray.init(**options)
            except ConnectionError as exc:
                raise ConfigError(f"no Ray cluster at {address!r} ({exc}); start one with `ray start --head` "
                                  "and pass its address with --ray-address") from exc
        limits = evaluator.limits
        bundle = pack_inputs(evaluator.data.inputs)
        self.spec = NodeSpec(task=evaluator.task, sandbox=sandbox, limits=limits, threads=evaluator.threads,
                             warm_start=1 if warm_start else 0,
                             cache_dir=str(node_cache_dir) if node_cache_dir else None, inputs_key=bundle.key)
        self._inputs = ray.put(bundle)  # once; tasks carry the reference
        self._remote = ray.remote(_run_on_node).options(
            num_cpus=limits.cpus, memory=int(limits.memory_mb) << 20, num_gpus=1 if limits.gpu else 0,
            resources=dict(resources or {}), max_retries=max_retries, retry_exceptions=False)
        self.max_retries = max_retries

    def submit(self, job: EvalJob) -> bool:
        with self._lock:
            if any(j.job_id == job.job_id for j in self._refs.values()):
                return False
            # the reference inside a list: Ray hands the task the ref, not the bytes, and the node
            # fetches them only when its worker process has no runner yet
            ref = self._remote.remote(self.spec, [self._inputs], job.source, job.seeds, job.job_id,
                                      self.attempt_log)
            self._refs[ref] = job
        return True

    def evaluate(self, job: EvalJob) -> Evaluation:
        ref = self._remote.remote(self.spec, [self._inputs], job.source, job.seeds, job.job_id, self.attempt_log)
        return self._score(job, ref)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._refs) + (self._error is not None)  # an error still to report counts

    def wait(self, timeout: float | None = None) -> list[tuple[EvalJob, Evaluation]]:
        self._raise_held_error()
        with self._lock:
            refs = list(self._refs)
        if not refs:
            return []
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # and whatever else is done by now
        out = []
        for ref in ready:
            with self._lock:
                job = self._refs.pop(ref)
            try:
                out.append((job, self._score(job, ref)))
            except ExecutorError as exc:
                self._error = self._error or exc
        if not out:  # never wait on the rest first: with its node gone, they may never run
            self._raise_held_error()
        return out

    def _score(self, job: EvalJob, ref) -> Evaluation:
        try:
            result: NodeResult = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # raised by our code on the node (not the candidate's)
            cause = exc.cause if isinstance(getattr(exc, "cause", None), ExecutorError) else exc
            raise ExecutorError(f"job {job.job_id}: {cause}"[:2000]) from exc
        except ray.exceptions.RayError as exc:  # its node(s) died on every attempt
            raise ExecutorError(f"job {job.job_id} was lost on {self.max_retries + 1} attempts "
                                f"({type(exc).__name__}); nothing was recorded for it") from exc
        self.nodes[job.job_id] = result.node_id
        self.inputs_dirs[job.job_id] = result.inputs_dir
        return self.evaluator.score(result.raw)

    def close(self) -> None:
        with self._lock:
            refs, self._refs = list(self._refs), {}
        for ref in refs:
            ray.cancel(ref, force=True)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
