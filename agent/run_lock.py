"""One writer per run directory: an exclusive ``flock`` on ``RUN/run.lock``.

``ensnas run``/``resume`` (and ``export`` when it has to train) hold the lock for as long as they
write; the file holds the holder's pid, host, start time and command line so that a second
writer can say who it is waiting for. The kernel drops the lock when its holder dies (``kill
-9`` included), so a stale file never blocks anyone, and a dead holder is how ``status`` tells a
killed run from a running one.

Readers never write the lock file: :func:`reader` takes a *shared* lock on it when it exists
(and only while it reads), so a writer that starts at that moment waits a little instead of
refusing (see :meth:`RunLock.acquire`).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agent.store import RunDirError, check_run_dir

LOCK_NAME = "run.lock"


class RunLocked(RunDirError):
    """Another process is writing this run directory."""


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str | None
    started: float | None
    command: str | None = None

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)) if self.started else "?"
        return f"pid {self.pid} on {self.host} since {since}"

    @classmethod
    def read(cls, fd: int) -> "Holder":
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            data = {}
        return cls(pid=data.get("pid"), host=data.get("host"), started=data.get("started"),
                   command=data.get("command"))


def this_process() -> Holder:
    return Holder(pid=os.getpid(), host=socket.gethostname(), started=time.time(), command=" ".join(sys.argv))


class RunLock:
    """The exclusive lock of one run directory. ``acquire()`` returns self; use as a context
    manager or call ``release()`` (idempotent)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self.holder: Holder | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, create: bool = False, wait_s: float = 2.0) -> "RunLock":
        """Take the lock or raise :class:`RunLocked` naming the holder. ``create``: for a new run
        (the directory may not exist yet); else the directory must already hold a run. Waits up
        to ``wait_s`` seconds, which is far longer than a reader holds its shared lock."""
        if self._fd is not None:
            return self
        check_run_dir(self.run_dir, create=create)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = Holder.read(fd)
                    os.close(fd)
                    raise RunLocked(f"{self.run_dir} is in use by {holder.describe()}"
                                    + (f" ({holder.command})" if holder.command else "")
                                    + "; wait for it to finish or stop it, then resume") from None
                time.sleep(0.05)
        self.holder = this_process()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.holder.__dict__).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing drops the flock; the file stays (readers must not create it)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    __del__ = release


def live_holder(run_dir: Path) -> Holder | None:
    """The process holding the run's lock now, or None. Creates and changes nothing."""
    with reader(run_dir) as holder:
        return holder


class reader:
    """``with reader(run_dir) as holder:`` — a shared lock on the run's lock file for the
    duration of a read. ``holder`` is the live writer (the shared lock was refused) or None
    (nobody writes; no writer can start until the block ends, bar a 2 s wait). A missing lock
    file is not created."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> Holder | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            holder = Holder.read(fd)
            os.close(fd)
            return holder
        self._fd = fd
        return None

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    __del__ = release
