"""The plain subprocess backend: own process group and a wall-clock timeout, nothing more.

Useful for development and benchmarks; it does not contain hostile programs (use `process`
or `docker` for that).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from sandbox.base import SOURCE_ROOT, Sandbox, SandboxJob, SandboxRun, register_sandbox, tail


@register_sandbox("subprocess")
class SubprocessSandbox(Sandbox):
    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, job: SandboxJob) -> SandboxRun:
        env = dict(os.environ, PYTHONPATH=str(SOURCE_ROOT), PYTHONUNBUFFERED="1")
        stdout_path, stderr_path = job.work_dir / "stdout.txt", job.work_dir / "stderr.txt"
        start = time.perf_counter()
        timed_out = False
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(self.worker_argv(job.work_dir, job.data_dir), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, cwd=job.work_dir, env=env, start_new_session=True)
            try:
                proc.wait(timeout=job.limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything it spawned
                except ProcessLookupError:
                    pass
                proc.wait()
        so, cut_out = tail(stdout_path, job.limits.max_output_bytes)
        se, cut_err = tail(stderr_path, job.limits.max_output_bytes)
        return SandboxRun(exit_code=proc.returncode, wall_seconds=time.perf_counter() - start, timed_out=timed_out,
                          out_of_memory=proc.returncode in (-9, 137) and not timed_out,
                          output_truncated=cut_out or cut_err, stdout_tail=so, stderr_tail=se)
