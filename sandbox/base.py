"""The Sandbox interface every backend implements, and the registry that names them.

A backend runs the evaluator's worker on one prepared work directory under limits and
reports what happened to the process; the host (evaluator.evaluate) turns that, plus the
worker's own verdict file, into a typed result.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.registry import Registry

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # where `evaluator` can be imported from


@dataclass(frozen=True, kw_only=True)
class Limits:
    timeout_s: float = 900.0
    memory_mb: int = 4096
    cpus: float = 1.0
    pids: int = 256
    max_output_bytes: int = 1 << 20      # stdout/stderr kept per stream
    max_log_bytes: int = 64 << 20        # printed per stream before a hardened backend kills the run
    max_file_mb: int = 512               # largest file the program may write
    max_out_mb: int = 256                # all it may leave in out/ (a tmpfs; full = output_too_large at once)
    gpu: bool = False


@dataclass(frozen=True, kw_only=True)
class SandboxJob:
    work_dir: Path          # job.json + program.py in; out/ back
    data_dir: Path          # read-only training data and val/test inputs
    limits: Limits = field(default_factory=Limits)
    # > 0: a warm start. The worker is launched before job.json exists, imports torch and loads the
    # data, then waits up to this many seconds for the host to write job.json (see sandbox.warm).
    wait_for_job_s: float = 0.0


@dataclass(kw_only=True)
class SandboxRun:
    exit_code: int | None
    wall_seconds: float
    timed_out: bool = False
    out_of_memory: bool = False
    output_truncated: bool = False
    stdout_tail: str = ""
    stderr_tail: str = ""
    notes: list[str] = field(default_factory=list)


class Launched(ABC):
    """A sandbox that is running the worker. `finish` waits for it (the job's wall-clock limit
    counts from that call, so a warm worker may wait for its job as long as it was told to)."""

    @abstractmethod
    def finish(self) -> SandboxRun:
        """Wait for the worker (killing it at the time limit), collect what happened, clean up."""

    @abstractmethod
    def alive(self) -> bool:
        """Still running (a warm worker that gave up waiting for its job is not)."""

    @abstractmethod
    def cancel(self) -> None:
        """Kill it and clean up without a result."""


class Sandbox(ABC):
    name: str = "abstract"

    @abstractmethod
    def start(self, job: SandboxJob) -> Launched:
        """Launch the worker on `job` and return at once; never raises for anything the program does."""

    def run(self, job: SandboxJob) -> SandboxRun:
        """Run the worker on `job` to the end."""
        return self.start(job).finish()

    def check_available(self) -> None:
        """Raise SandboxUnavailable (with the fix in the message) if this backend cannot run here."""



SANDBOXES: Registry[Sandbox] = Registry("sandbox")
register_sandbox = SANDBOXES.register


def make_sandbox(name: str, **options) -> Sandbox:
    return SANDBOXES.make(name, **options)


def tail(path: Path, limit: int) -> tuple[str, bool]:
    """The last `limit` bytes of a file as text, and whether anything was cut."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size > limit:
                f.seek(size - limit)
            return f.read().decode("utf-8", "replace"), size > limit
    except OSError:
        return "", False
