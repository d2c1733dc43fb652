"""What a hardened sandbox shows the worker: the same small filesystem for Docker and the process backend.

Only these paths exist inside (everything read-only unless marked):

    /usr, /bin, /lib, /lib64, /sbin        the system libraries the worker loads (merged-/usr symlinks)
    <sys.base_prefix>                      the Python runtime's standard library, at its own path
    <sys.prefix>                           the venv's packages the worker imports, at its own path
                                           (these three: sandbox.runtime_view's allow-list, no data files)
    /ensnas-src/evaluator                  the worker's package, nothing else of the source tree
    /ensnas-data                           the task's inputs/ (never labels.npz, never the run/store)
    /ensnas-job                            job.json + program.py
    /ensnas-job/out                        read-write, a size-capped tmpfs: result.json + predictions.npz,
                                           copied to the host's work dir by trusted code (sandbox.supervisor)
    /tmp                                   private tmpfs (size-capped), the working directory

Home directories, /etc (beyond passwd/group and the loader cache), the run directory, the
store and the label files are simply not there.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.base import SOURCE_ROOT

JOB, DATA, SRC, SCRATCH = "/ensnas-job", "/ensnas-data", "/ensnas-src", "/tmp"
OUT = JOB + "/out"
TMPFS_INODES = 4096  # files a candidate may create in /tmp or out/ (each costs kernel memory, not quota)


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = True


def runtime_mounts(python: str = sys.executable) -> list[Mount]:
    """The allow-listed runtime of `python` (sandbox.runtime_view: no dataset in it) and the evaluator package."""
    from sandbox.runtime_view import runtime_view
    view = runtime_view(python)
    mounts = [Mount(str(view.root / root.lstrip("/")), root) for root in view.roots]
    mounts.append(Mount(str(SOURCE_ROOT / "evaluator"), f"{SRC}/evaluator"))
    return mounts


def job_mounts(work_dir: Path, data_dir: Path) -> list[Mount]:
    """The job (read-only; its out/ is a tmpfs on top, see OUT) and the task's inputs."""
    work_dir, data_dir = Path(work_dir).resolve(), Path(data_dir).resolve()
    return [Mount(str(work_dir), JOB), Mount(str(data_dir), DATA)]


def worker_command(python: str = sys.executable, wait_for_job_s: float = 0.0, *, work: str = JOB,
                   data: str = DATA, parent_pid: int | None = None) -> list[str]:
    """parent_pid: the worker's parent when it is the host (no launcher between them)."""
    argv = [python, "-m", "evaluator.worker", "--work", str(work), "--data", str(data)]
    if wait_for_job_s > 0:
        argv += ["--wait-for-job", f"{wait_for_job_s:g}"] + (["--parent-pid", str(parent_pid)] if parent_pid else [])
    return argv


# glibc hands big blocks back to the kernel on free and maps them again on the next batch, so a
# fresh worker pays page faults on every step until its thresholds adapt (a long-lived process has
# them adapted). Fixed thresholds keep freed memory in the heap: the fashion-mnist seed's proxy
# training took 3.1-3.9 s per instance in a fresh worker without them, 2.7 s with them (= in-process).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
              "MALLOC_TOP_PAD_": str(256 << 20)}


def worker_env(threads: int = 1, src: str = SRC) -> dict[str, str]:
    """A scrubbed environment: nothing of the host's variables (tokens, proxies, paths) leaks in."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": SCRATCH, "LANG": "C.UTF-8",
            "PYTHONPATH": src, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **MALLOC_ENV}
