"""Host side of one evaluation: prepare a work dir, run the worker in a sandbox, score the result."""
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
from evaluator.statistics import EnsembleStatistics, compute_statistics, validate_probabilities
from evaluator.task_data import TaskData, materialize
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


class Evaluator:
    """Evaluates program sources on one task through one sandbox backend."""

    def __init__(self, *, task: TaskConfig, sandbox: Sandbox, limits: Limits = Limits(),
                 cache_dir: Path | None = None, work_root: Path | None = None, threads: int = 1,
                 warm_start: int = 0) -> None:
        """warm_start=N keeps N sandboxes launched ahead of their candidates (sandbox.warm); 0 = off."""
        self.task, self.sandbox, self.limits, self.threads = task, sandbox, limits, threads
        self.data: TaskData = materialize(task, cache_dir)
        self.work_root = Path(work_root) if work_root else None
        self.warm_pool = WarmPool(sandbox=sandbox, data_dir=self.data.inputs_dir, limits=limits, size=warm_start,
                                  make_work_dir=lambda: self._new_work_dir("ensnas-job-")) if warm_start else None

    def prewarm(self) -> None:
        """Start warming sandboxes now (e.g. while the first proposals are being written)."""
        if self.warm_pool:
            self.warm_pool.fill()

    def close(self) -> None:
        if self.warm_pool:
            self.warm_pool.close()

    def evaluate(self, source: str, *, instances: int = 2, seed_base: int = 0, keep_dir: Path | None = None,
                 save_weights: bool = False) -> Evaluation:
        """Train `instances` copies (seeds seed_base, seed_base+1, ...) and score them on the host
        (statistics need 2; one instance is what the sequential gate adds at a time).
        With save_weights, each instance's state dict is written to the job's out/ dir (copy it
        out with keep_dir)."""
        seeds = [seed_base + i for i in range(instances)]
        start = time.perf_counter()
        work, run = self._run(source, seeds, save_weights=save_weights)
        try:
            evaluation = self._interpret(work, run, instances=instances)
            evaluation.sandbox_seconds = run.wall_seconds
            if keep_dir is not None:
                shutil.copytree(work, keep_dir, dirs_exist_ok=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        evaluation.seeds = seeds
        evaluation.wall_seconds = time.perf_counter() - start
        return evaluation

    def check(self, source: str) -> Evaluation:
        """Build, shape and parameter checks only, in the sandbox (no training): ok or a typed reason."""
        start = time.perf_counter()
        work, run = self._run(source, [], build_only=True)
        try:
            evaluation = self._interpret(work, run, build_only=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        evaluation.wall_seconds = time.perf_counter() - start
        return evaluation

    def _run(self, source: str, seeds: list[int], **flags) -> tuple[Path, SandboxRun]:
        """Write the job into a warm sandbox's work dir (or a new one) and run it to the end.
        The caller owns the returned work dir."""
        limits = self._limits_for(len(seeds), flags.get("save_weights", False))
        taken = self.warm_pool.take() if self.warm_pool and limits == self.limits else None
        work, launched = taken or (self._new_work_dir("ensnas-job-"), None)
        try:
            self._write_job(work, source, seeds, **flags)
            if launched is None:
                launched = self.sandbox.start(SandboxJob(work_dir=work, data_dir=self.data.inputs_dir,
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
        n = len(self.data.y_val) + len(self.data.y_test)
        need = instances * n * self.data.num_classes * 4 + (instances * self.task.max_params * 8 * 1.25
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
        job = {"input_shape": list(self.data.input_shape), "num_classes": self.data.num_classes,
               "seeds": seeds, "budget": self.task.budget.model_dump(), "max_params": self.task.max_params,
               "threads": self.threads, "build_only": build_only, "save_weights": save_weights}
        pending = work / ".job.json.partial"
        pending.write_text(json.dumps(job))
        pending.chmod(0o644)
        os.replace(pending, work / "job.json")

    def _interpret(self, work: Path, run: SandboxRun, build_only: bool = False, instances: int = 2) -> Evaluation:
        result, failed = read_verdict(work, run, self.limits)
        if failed is not None:
            return failed
        fail = lambda reason, detail: Evaluation(ok=False, reason=reason, detail=detail, stderr_tail=run.stderr_tail)  # noqa: E731
        if build_only:
            return Evaluation(ok=True, param_count=int(result.get("param_count", 0)), stderr_tail=run.stderr_tail)
        try:
            val, test = self._load_predictions(work / "out" / "predictions.npz")
            k = len(val)
            val = validate_probabilities(val, len(self.data.y_val), self.data.num_classes, "validation")
            test = validate_probabilities(test, len(self.data.y_test), self.data.num_classes, "test")
            if k != instances or len(test) != k:
                raise EvaluationFailed(FailureReason.invalid_output,
                                       f"{k} instances in the predictions, {instances} trained")
        except EvaluationFailed as exc:
            return fail(exc.reason, exc.detail)
        return Evaluation(ok=True, param_count=int(result.get("param_count", 0)), val_probs=val, test_probs=test,
                          statistics=compute_statistics(val, self.data.y_val) if k >= 2 else None,
                          train_seconds=[float(s) for s in result.get("train_seconds", [])],
                          feature_fraction=float(result.get("feature_fraction", 1.0)),
                          latency_ms=valid_latency(result.get("latency_ms")), stderr_tail=run.stderr_tail)

    @staticmethod
    def _load_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            if path.stat().st_size > MAX_PREDICTIONS_BYTES:
                raise EvaluationFailed(FailureReason.output_too_large, "predictions file above 1 GiB")
            with np.load(path, allow_pickle=False) as z:
                return np.asarray(z["val"]), np.asarray(z["test"])
        except EvaluationFailed:
            raise
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise EvaluationFailed(FailureReason.invalid_output, f"unreadable predictions: {exc}") from exc


def read_verdict(work: Path, run: SandboxRun, limits: Limits) -> tuple[dict | None, Evaluation | None]:
    """The worker's result.json if the run ended with an "ok" verdict, else the typed failure (a
    timeout, a cap, a crash without a verdict, the worker's own reason). Shared by every job kind."""
    fail = lambda reason, detail: Evaluation(ok=False, reason=reason, detail=detail, stderr_tail=run.stderr_tail)  # noqa: E731
    if run.timed_out:
        return None, fail(FailureReason.timeout, f"killed after {limits.timeout_s:.0f} s")
    if "out_invalid" in run.notes:  # e.g. a symlink in out/: never read through it
        return None, fail(FailureReason.invalid_output, next((n for n in run.notes if n.startswith("out/")), ""))
    if "output_too_large" in run.notes:  # printed past the cap, a file past its cap, or littered out/
        detail = next((n for n in run.notes if n.startswith(("quota:", "out/"))),
                      "the program's output went past its cap")
        return None, fail(FailureReason.output_too_large, detail)
    result_path = work / "out" / "result.json"
    try:
        result = json.loads(result_path.read_text())
        if not isinstance(result, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
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

