"""Host side of one evaluation: prepare a work dir, run the worker in a sandbox, score the result.

Two halves. `SandboxRunner` runs a program in a sandbox on a task's inputs and reads back what
the worker wrote (`RawRun`); it needs no labels, so it may run on another machine (the Ray
executor ships it the inputs only). `Evaluator` is a runner that also holds the labels: `score`
turns a `RawRun` from anywhere into a typed `Evaluation`, and `evaluate` does both here.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluator.failures import EvaluationFailed, FailureReason
from evaluator.latency import valid_latency
from evaluator.parse_lock import load_npz
from evaluator.statistics import EnsembleStatistics, compute_statistics, validate_probabilities
from evaluator.task_data import TaskData, TaskInputs, materialize
from evaluator.tasks import TaskConfig
from evaluator.worker import PROGRAM_NAME
from sandbox.base import Limits, Sandbox, SandboxJob, SandboxRun
from sandbox.warm import WarmPool

MAX_PREDICTIONS_BYTES = 1 << 30


@dataclass
class Evaluation:
    ok: bool
    reason: FailureReason | None = None
    detail: str = ""
    param_count: int | None = None
    val_probs: np.ndarray | None = None
    test_probs: np.ndarray | None = None
    statistics: EnsembleStatistics | None = None
    train_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    sandbox_seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)
    stderr_tail: str = ""
    feature_fraction: float = 1.0  # as the worker applied it (FEATURE_FRACTION)
    latency_ms: dict[str, float] | None = None  # evaluator.latency: {"batch_1_ms", "batch_256_ms"} of one instance

    def summary(self) -> dict:
        base = {"ok": self.ok, "reason": self.reason.value if self.reason else None, "detail": self.detail,
                "param_count": self.param_count, "train_seconds": self.train_seconds,
                "wall_seconds": self.wall_seconds, "seeds": self.seeds, "latency_ms": self.latency_ms}
        if self.statistics:
            base["statistics"] = self.statistics.as_dict()
        return base


@dataclass
class RawRun:
    """What one sandbox run left behind, read where it ran: no labels involved, nothing scored yet.
    `result` is out/result.json when it was safe to read (None: absent, unreadable or not read);
    `val`/`test` the raw predictions of an ok training run, or `unreadable` why they could not be read."""
    run: SandboxRun
    build_only: bool = False
    result: dict | None = None
    val: np.ndarray | None = None
    test: np.ndarray | None = None
    unreadable: tuple[FailureReason, str] | None = None
    seeds: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0


class SandboxRunner:
    """Runs programs on one task's inputs through one sandbox backend; reads results back unscored."""

    def __init__(self, *, task: TaskConfig, inputs: TaskInputs, sandbox: Sandbox, limits: Limits = Limits(),
                 work_root: Path | None = None, threads: int = 1, warm_start: int = 0) -> None:
        """warm_start=N keeps N sandboxes launched ahead of their candidates (sandbox.warm); 0 = off."""
        self.task, self.sandbox, self.limits, self.threads = task, sandbox, limits, threads
        self.inputs = inputs
        self.work_root = Path(work_root) if work_root else None
        self.warm_pool = WarmPool(sandbox=sandbox, data_dir=inputs.inputs_dir, limits=limits, size=warm_start,
                                  make_work_dir=lambda: self._new_work_dir("ensnas-job-")) if warm_start else None

    def prewarm(self) -> None:
        """Start warming sandboxes now (e.g. while the first proposals are being written)."""
        if self.warm_pool:
            self.warm_pool.fill()

    def close(self) -> None:
        if self.warm_pool:
            self.warm_pool.close()

    def run(self, source: str, seeds: list[int], *, build_only: bool = False, save_weights: bool = False,
            keep_dir: Path | None = None) -> RawRun:
        """Run `source` on `seeds` in a sandbox and read back what it wrote (keep_dir: a copy of the work dir)."""
        start = time.perf_counter()
        work, run = self._run(source, seeds, build_only=build_only, save_weights=save_weights)
        try:
            raw = self._collect(work, run, build_only)
            if keep_dir is not None:
                shutil.copytree(work, keep_dir, dirs_exist_ok=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        raw.seeds = list(seeds)
        raw.wall_seconds = time.perf_counter() - start
        return raw

    def _run(self, source: str, seeds: list[int], **flags) -> tuple[Path, SandboxRun]:
        """Write the job into a warm sandbox's work dir (or a new one) and run it to the end.
        The caller owns the returned work dir."""
        limits = self._limits_for(len(seeds), flags.get("save_weights", False))
        taken = self.warm_pool.take() if self.warm_pool and limits == self.limits else None
        work, launched = taken or (self._new_work_dir("ensnas-job-"), None)
        try:
            self._write_job(work, source, seeds, **flags)
            if launched is None:
                launched = self.sandbox.start(SandboxJob(work_dir=work, data_dir=self.inputs.inputs_dir,
                                                         limits=limits))
            return work, launched.finish()
        except BaseException:
            if launched is not None and launched.alive():
                launched.cancel()
            shutil.rmtree(work, ignore_errors=True)
            raise

    def _limits_for(self, instances: int, save_weights: bool) -> Limits:
        """The out/ quota must hold what a legitimate job writes: predictions, and with save_weights a
        state dict per instance (up to max_params, float64, plus buffers). Raised only when needed
        (a warm sandbox's quota is fixed at launch, so such a job starts a fresh one)."""
        n = self.inputs.n_predicted
        need = instances * n * self.inputs.num_classes * 4 + (instances * self.task.max_params * 8 * 1.25
                                                            if save_weights else 0)
        need_mb = int(need / 2**20) + 16
        return self.limits if need_mb <= self.limits.max_out_mb else dataclasses.replace(self.limits,
                                                                                          max_out_mb=need_mb)

    def _new_work_dir(self, prefix: str) -> Path:
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=self.work_root))
        (work / "out").mkdir()
        for p in (work, work / "out"):
            p.chmod(0o777)  # the sandbox may run as an unprivileged user
        return work

    def _write_job(self, work: Path, source: str, seeds: list[int], build_only: bool = False,
                   save_weights: bool = False) -> None:
        """program.py first, job.json last and atomically: a warm worker starts when job.json appears."""
        (work / PROGRAM_NAME).write_text(source)
        (work / PROGRAM_NAME).chmod(0o644)
        job = {"input_shape": list(self.inputs.input_shape), "num_classes": self.inputs.num_classes,
               "seeds": seeds, "budget": self.task.budget.model_dump(), "max_params": self.task.max_params,
               "threads": self.threads, "build_only": build_only, "save_weights": save_weights}
        pending = work / ".job.json.partial"
        pending.write_text(json.dumps(job))
        pending.chmod(0o644)
        os.replace(pending, work / "job.json")

    def _collect(self, work: Path, run: SandboxRun, build_only: bool) -> RawRun:
        """Read the verdict and predictions, unless the backend flagged out/ as unsafe or over its cap."""
        raw = RawRun(run=run, build_only=build_only)
        result = read_result(work, run)
        if result is None:
            return raw  # score() says why
        raw.result = result
        if result.get("status") == "ok" and not build_only:
            try:
                raw.val, raw.test = self._load_predictions(work / "out" / "predictions.npz")
            except EvaluationFailed as exc:
                raw.unreadable = (exc.reason, exc.detail)
        return raw

    @staticmethod
    def _load_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            if path.stat().st_size > MAX_PREDICTIONS_BYTES:
                raise EvaluationFailed(FailureReason.output_too_large, "predictions file above 1 GiB")
            z = load_npz(path)
            return np.asarray(z["val"]), np.asarray(z["test"])
        except EvaluationFailed:
            raise
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise EvaluationFailed(FailureReason.invalid_output, f"unreadable predictions: {exc}") from exc


class Evaluator(SandboxRunner):
    """Evaluates program sources on one task through one sandbox backend, and scores them here."""

    def __init__(self, *, task: TaskConfig, sandbox: Sandbox, limits: Limits = Limits(),
                 cache_dir: Path | None = None, work_root: Path | None = None, threads: int = 1,
                 warm_start: int = 0) -> None:
        """warm_start=N keeps N sandboxes launched ahead of their candidates (sandbox.warm); 0 = off."""
        self.data: TaskData = materialize(task, cache_dir)
        super().__init__(task=task, inputs=self.data.inputs, sandbox=sandbox, limits=limits, work_root=work_root,
                         threads=threads, warm_start=warm_start)

    def evaluate(self, source: str, *, instances: int = 2, seed_base: int = 0, keep_dir: Path | None = None,
                 save_weights: bool = False) -> Evaluation:
        """Train `instances` copies (seeds seed_base, seed_base+1, ...) and score them on the host
        (statistics need 2; one instance is what the sequential gate adds at a time).
        With save_weights, each instance's state dict is written to the job's out/ dir (copy it
        out with keep_dir)."""
        start = time.perf_counter()
        raw = self.run(source, [seed_base + i for i in range(instances)], save_weights=save_weights,
                       keep_dir=keep_dir)
        evaluation = self.score(raw)
        evaluation.wall_seconds = time.perf_counter() - start
        return evaluation

    def check(self, source: str) -> Evaluation:
        """Build, shape and parameter checks only, in the sandbox (no training): ok or a typed reason."""
        start = time.perf_counter()
        evaluation = self.score(self.run(source, [], build_only=True))
        evaluation.wall_seconds = time.perf_counter() - start
        return evaluation

    def score(self, raw: RawRun) -> Evaluation:
        """A typed Evaluation of a sandbox run (from this machine or another): validated against
        this task's shapes and scored with its labels, which never left this host."""
        evaluation = self._interpret(raw)
        if not raw.build_only:
            evaluation.sandbox_seconds = raw.run.wall_seconds
            evaluation.seeds = list(raw.seeds)
        evaluation.wall_seconds = raw.wall_seconds
        return evaluation

    def _interpret(self, raw: RawRun) -> Evaluation:
        run, build_only = raw.run, raw.build_only
        result, failed = verdict(raw.result, run, self.limits)
        if failed is not None:
            return failed
        fail = lambda reason, detail: Evaluation(ok=False, reason=reason, detail=detail, stderr_tail=run.stderr_tail)  # noqa: E731
        if build_only:
            return Evaluation(ok=True, param_count=int(result.get("param_count", 0)), stderr_tail=run.stderr_tail)
        try:
            if raw.unreadable is not None:
                raise EvaluationFailed(*raw.unreadable)
            val, test = raw.val, raw.test
            k = len(val)
            val = validate_probabilities(val, len(self.data.y_val), self.data.num_classes, "validation")
            test = validate_probabilities(test, len(self.data.y_test), self.data.num_classes, "test")
            if k != len(raw.seeds) or len(test) != k:
                raise EvaluationFailed(FailureReason.invalid_output,
                                       f"{k} instances in the predictions, {len(raw.seeds)} trained")
        except EvaluationFailed as exc:
            return fail(exc.reason, exc.detail)
        return Evaluation(ok=True, param_count=int(result.get("param_count", 0)), val_probs=val, test_probs=test,
                          statistics=compute_statistics(val, self.data.y_val) if k >= 2 else None,
                          train_seconds=[float(s) for s in result.get("train_seconds", [])],
                          feature_fraction=float(result.get("feature_fraction", 1.0)),
                          latency_ms=valid_latency(result.get("latency_ms")), stderr_tail=run.stderr_tail)


def unsafe_out(run: SandboxRun) -> bool:
    """The backend flagged out/ (a symlink, past a cap) or cut the run off: nothing in it is read."""
    return run.timed_out or "out_invalid" in run.notes or "output_too_large" in run.notes


def read_result(work: Path, run: SandboxRun) -> dict | None:
    """out/result.json as an object, or None (absent, unreadable, or out/ not safe to read)."""
    if unsafe_out(run):
        return None
    try:
        result = json.loads((work / "out" / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def read_verdict(work: Path, run: SandboxRun, limits: Limits) -> tuple[dict | None, Evaluation | None]:
    """The worker's result.json if the run ended with an "ok" verdict, else the typed failure.
    Shared by every job kind run on this machine."""
    return verdict(read_result(work, run), run, limits)


def verdict(result: dict | None, run: SandboxRun, limits: Limits) -> tuple[dict | None, Evaluation | None]:
    """`result` (result.json as read where the run happened) if the run ended with an "ok" verdict,
    else the typed failure: a timeout, a cap, a crash without a verdict, the worker's own reason."""
    fail = lambda reason, detail: Evaluation(ok=False, reason=reason, detail=detail, stderr_tail=run.stderr_tail)  # noqa: E731
    if run.timed_out:
        return None, fail(FailureReason.timeout, f"killed after {limits.timeout_s:.0f} s")
    if "out_invalid" in run.notes:  # e.g. a symlink in out/: never read through it
        return None, fail(FailureReason.invalid_output, next((n for n in run.notes if n.startswith("out/")), ""))
    if "output_too_large" in run.notes:  # printed past the cap, a file past its cap, or littered out/
        detail = next((n for n in run.notes if n.startswith(("quota:", "out/"))),
                      "the program's output went past its cap")
        return None, fail(FailureReason.output_too_large, detail)
    if result is None:
        if run.out_of_memory:
            return None, fail(FailureReason.out_of_memory, f"killed by the {limits.memory_mb} MiB memory limit")
        last = run.stderr_tail.strip().splitlines()[-1:] or [""]
        return None, fail(FailureReason.crashed, f"worker exited with code {run.exit_code} without a verdict {last[0][:300]}")
    if result.get("status") != "ok":
        try:
            reason = FailureReason(result.get("reason"))
        except ValueError:
            reason = FailureReason.invalid_output
        if reason in (FailureReason.build_error, FailureReason.forward_error, FailureReason.crashed) and any(
                m in str(result.get("detail", "")) for m in ("MemoryError", "can't allocate memory")):
            reason = FailureReason.out_of_memory  # the address-space limit surfaced as an exception
        elif "File too large" in str(result.get("detail", "")):
            reason = FailureReason.output_too_large  # EFBIG: the file-size limit (Python ignores SIGXFSZ)
        return None, fail(reason, str(result.get("detail", ""))[:4000])
    return result, None
