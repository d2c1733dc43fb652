"""The process backend, for machines without Docker: namespaces + chroot + rlimits, no daemon needed.

`sandbox/process_entry.py` (stdlib only, trusted) isolates itself and execs the worker: own
session and process group, new mount/PID/network/IPC/UTS namespaces where the kernel allows
(as root, or through an unprivileged user namespace), a tmpfs root with only `sandbox.layout`'s
paths, uid 65534, a scrubbed environment, a private size-capped /tmp, and rlimits on address
space, CPU seconds, processes, file size and core dumps. PID 1 of the namespace is the worker,
so nothing the program starts outlives it.

Where a protection is not available here it says so: `isolation()` reports what the kernel
allowed, every run carries the launcher's report in its notes, and `require_isolation=True`
turns a missing namespace into SandboxUnavailable instead of a weaker run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from evaluator.failures import SandboxUnavailable
from sandbox.base import SOURCE_ROOT, Launched, Sandbox, SandboxJob, SandboxRun, register_sandbox
from sandbox.layout import OUT, TMPFS_INODES, job_mounts, runtime_mounts, worker_command, worker_env
from sandbox.output import OUTPUT_TOO_LARGE, OutputPump, OutputTail, inspect_out_dir, read_fd_chunks, supervisor_notes

ENTRY = Path(__file__).with_name("process_entry.py")
SETUP_FAILED = 121
WARM_UP_CPU_S = 30  # CPU seconds a warm worker may spend before its job (imports, data)


class ProcessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uid: int = Field(65534, description="user the program runs as when the launcher is root")
    tmpfs_mb: int = Field(256, ge=16, description="size of the private /tmp")
    require_isolation: bool = Field(False, description="refuse to run without namespaces and a private root")
    python: str | None = Field(None, description="the worker's interpreter (default: this one); its allow-listed "
                                                 "runtime is what the sandbox sees (sandbox.runtime_view)")


@register_sandbox("process")
class ProcessSandbox(Sandbox):
    def __init__(self, *, config: ProcessConfig | None = None, **fields) -> None:
        self.config = config or ProcessConfig(**fields)
        self.python = self.config.python or sys.executable
        self._isolation: dict | None = None

    def check_available(self) -> None:
        if sys.platform != "linux":
            raise SandboxUnavailable("the process sandbox needs Linux (rlimits, namespaces); use --sandbox docker")
        report = self.isolation()
        if self.config.require_isolation and not report.get("filesystem"):
            raise SandboxUnavailable("the process sandbox cannot create namespaces here "
                                     f"({'; '.join(report['problems'])}): run as root, enable unprivileged user "
                                     "namespaces (sysctl kernel.unprivileged_userns_clone=1), or use --sandbox docker")

    def isolation(self) -> dict:
        """What this kernel lets the launcher do (probed once by running it on /bin/true)."""
        if self._isolation is None:
            with tempfile.TemporaryDirectory(prefix="ensnas-probe-") as tmp:
                work, data = Path(tmp, "work"), Path(tmp, "data")
                (work / "out").mkdir(parents=True)
                data.mkdir()
                probe = [self.python, "-S", "-c", ""]  # also shows the runtime view starts an interpreter
                proc, report_r = self._launch(work, data, probe, probe, Path(tmp, "root"),
                                              Path(tmp), 5, 256, 1, 1, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
                proc.wait(timeout=30)
                self._isolation = _read_report(report_r)
        return self._isolation

    def _launch(self, work: Path, data: Path, argv: list[str], fallback_argv: list[str], root: Path, scratch: Path,
                cpu_budget_s: float, memory_mb: int, max_file_mb: int, pids: int, threads: int = 1,
                out_mb: int = 16, **popen):
        root.mkdir(exist_ok=True)
        read_fd, write_fd = os.pipe()
        mounts = runtime_mounts(self.python) + job_mounts(work, data)
        fallback_env = worker_env(threads=threads, src=str(SOURCE_ROOT))
        fallback_env.update(HOME=str(scratch), TMPDIR=str(scratch))
        spec = {"root": str(root), "mounts": [[m.source, m.target, m.read_only] for m in mounts],
                "argv": argv, "env": worker_env(threads=threads), "fallback_argv": fallback_argv,
                "fallback_env": fallback_env, "fallback_cwd": str(scratch), "uid": self.config.uid,
                "tmpfs_mb": self.config.tmpfs_mb, "memory_mb": memory_mb, "max_file_mb": max_file_mb,
                "cpu_seconds": int(cpu_budget_s * max(1, threads)) + 5, "nproc": _nproc_limit(pids, self.config.uid),
                "report_fd": write_fd, "host_pid": os.getpid(), "out": OUT, "out_mb": out_mb,
                "host_out": str(work / "out"), "inodes": TMPFS_INODES,
                "worker_uid": self.config.uid if os.geteuid() == 0 else os.getuid(),
                "worker_gid": self.config.uid if os.geteuid() == 0 else os.getgid()}
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", str(ENTRY), json.dumps(spec)], pass_fds=(write_fd,),
                                    stdin=subprocess.DEVNULL, start_new_session=True, env={}, cwd="/", **popen)
        finally:
            os.close(write_fd)
        return proc, read_fd

    def start(self, job: SandboxJob) -> "_ProcessRun":
        lim = job.limits
        threads = max(1, int(lim.cpus))
        tmp = tempfile.TemporaryDirectory(prefix="ensnas-proc-")
        try:
            scratch = Path(tmp.name, "scratch")
            scratch.mkdir()
            scratch.chmod(0o1777)
            work, data = Path(job.work_dir).resolve(), Path(job.data_dir).resolve()
            fallback = worker_command(self.python, job.wait_for_job_s, work=str(work), data=str(data),
                                      parent_pid=os.getpid())  # without namespaces the host is its parent
            if self.config.require_isolation:
                self.check_available()
            # a warm worker spends CPU importing torch before its job arrives: allow for it in RLIMIT_CPU
            cpu_budget = lim.timeout_s + (WARM_UP_CPU_S if job.wait_for_job_s > 0 else 0)
            proc, report_fd = self._launch(work, data, worker_command(self.python, job.wait_for_job_s), fallback,
                                           Path(tmp.name, "root"), scratch, cpu_budget, lim.memory_mb,
                                           lim.max_file_mb, lim.pids, threads, lim.max_out_mb,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except BaseException:
            tmp.cleanup()
            raise
        return _ProcessRun(job=job, proc=proc, report_fd=report_fd, tmp=tmp, tmp_mb=self.config.tmpfs_mb)


class _ProcessRun(Launched):
    def __init__(self, *, job: SandboxJob, proc: subprocess.Popen, report_fd: int,
                 tmp: tempfile.TemporaryDirectory, tmp_mb: int) -> None:
        self.job, self.proc, self.report_fd, self.tmp, self.sandbox_tmp_mb = job, proc, report_fd, tmp, tmp_mb
        self.notes: list[str] = []
        self.killed = threading.Event()
        lim = job.limits
        self.tails = [OutputTail(keep=lim.max_output_bytes, cap=lim.max_log_bytes,
                                 on_overflow=lambda: self._kill(OUTPUT_TOO_LARGE)) for _ in range(2)]
        self.pumps = [OutputPump(chunks=read_fd_chunks(stream), tails=[tail])
                      for stream, tail in ((proc.stdout, self.tails[0]), (proc.stderr, self.tails[1]))]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _kill(self, note: str | None = None) -> None:
        if note and not self.killed.is_set():
            self.notes.append(note)
        self.killed.set()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # launcher and worker; PDEATHSIG + PID 1 take the rest
        except ProcessLookupError:
            pass

    def _reap(self) -> dict:
        self._kill()  # anything left in the launcher's process group
        self.proc.wait()
        for pump in self.pumps:
            pump.join()
        self.proc.stdout.close()
        self.proc.stderr.close()
        report = _read_report(self.report_fd)
        self.tmp.cleanup()
        return report

    def cancel(self) -> None:
        self._reap()

    def finish(self) -> SandboxRun:
        lim, proc, notes = self.job.limits, self.proc, self.notes
        start = time.perf_counter()
        timed_out = False
        try:
            proc.wait(timeout=lim.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = not self.killed.is_set()
            self._kill("timeout")
        finally:
            report = self._reap()
        (so, cut_o), (se, cut_e) = (t.result() for t in self.tails)
        code = proc.returncode
        if report.get("setup_failed"):
            raise SandboxUnavailable(f"the process sandbox could not isolate the run: {'; '.join(report['problems'])}")
        supervisor = {k: report.pop(k) for k in ("quota_exceeded", "out") if k in report}
        notes.append("isolation: " + json.dumps(report, sort_keys=True))
        if not report.get("filesystem"):
            notes.append("WARNING: no namespaces here: the program shares the host's filesystem view and network, "
                         "and out/ has no total quota")
        notes += supervisor_notes(supervisor, out_mb=lim.max_out_mb, tmp_mb=self.sandbox_tmp_mb)
        if code in (-25, 128 + 25):  # SIGXFSZ: a file above the size cap
            notes.append(OUTPUT_TOO_LARGE)
        cpu_limited = code in (-24, 128 + 24)  # SIGXCPU: the CPU-seconds rlimit
        notes += inspect_out_dir(Path(self.job.work_dir).resolve() / "out", max_file_mb=lim.max_file_mb)
        return SandboxRun(exit_code=code, wall_seconds=time.perf_counter() - start, timed_out=timed_out or cpu_limited,
                          out_of_memory=False, output_truncated=cut_o or cut_e or OUTPUT_TOO_LARGE in notes,
                          stdout_tail=so, stderr_tail=se, notes=notes)


def _read_report(fd: int) -> dict:
    """The child's isolation report, updated by the launcher's supervision line (if it got that far)."""
    with os.fdopen(fd, "rb") as f:
        raw = f.read(1 << 20)
    if not raw.strip():
        return {"problems": ["the launcher wrote no report"], "setup_failed": True}
    report: dict = {}
    try:
        for line in raw.splitlines():
            if line.strip():
                report.update(json.loads(line))
    except ValueError:
        return {"problems": [f"unreadable launcher report {raw[:200]!r}"], "setup_failed": True}
    return report


def _nproc_limit(pids: int, uid: int) -> int:
    """RLIMIT_NPROC counts every task of the user, so allow `pids` on top of what it already runs."""
    target = uid if os.geteuid() == 0 else os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == target:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count + pids
