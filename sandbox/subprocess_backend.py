"""The plain subprocess backend: own process group and a wall-clock timeout, nothing more.

Useful for development and benchmarks; it does not contain hostile programs (use `process`
or `docker` for that).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from sandbox.base import SOURCE_ROOT, Launched, Sandbox, SandboxJob, SandboxRun, register_sandbox, tail
from sandbox.layout import MALLOC_ENV, worker_command


@register_sandbox("subprocess")
class SubprocessSandbox(Sandbox):
    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads

    def start(self, job: SandboxJob) -> "_SubprocessRun":
        env = dict(os.environ, PYTHONPATH=str(SOURCE_ROOT), PYTHONUNBUFFERED="1", **MALLOC_ENV)
        out, err = open(job.work_dir / "stdout.txt", "wb"), open(job.work_dir / "stderr.txt", "wb")
        try:
            # the parent pid closes the race of a host killed before the worker looked at its parent
            proc = subprocess.Popen(worker_command(wait_for_job_s=job.wait_for_job_s, work=job.work_dir,
                                                   data=job.data_dir, parent_pid=os.getpid()),
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=job.work_dir, env=env,
                                    start_new_session=True)
        finally:
            out.close()
            err.close()
        return _SubprocessRun(job=job, proc=proc)


class _SubprocessRun(Launched):
    def __init__(self, *, job: SandboxJob, proc: subprocess.Popen) -> None:
        self.job, self.proc = job, proc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and anything it spawned
        except ProcessLookupError:
            pass
        self.proc.wait()

    def cancel(self) -> None:
        self._kill()

    def finish(self) -> SandboxRun:
        job, start, timed_out = self.job, time.perf_counter(), False
        try:
            self.proc.wait(timeout=job.limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            self._kill()
        so, cut_out = tail(job.work_dir / "stdout.txt", job.limits.max_output_bytes)
        se, cut_err = tail(job.work_dir / "stderr.txt", job.limits.max_output_bytes)
        code = self.proc.returncode
        return SandboxRun(exit_code=code, wall_seconds=time.perf_counter() - start, timed_out=timed_out,
                          out_of_memory=code in (-9, 137) and not timed_out,
                          output_truncated=cut_out or cut_err, stdout_tail=so, stderr_tail=se)
