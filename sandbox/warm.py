"""Warm starts: sandboxes launched before their candidate exists.

A fresh sandbox spends most of its fixed cost before it reads the program: the container or
namespaces, a new interpreter, `import torch`, loading the task's arrays. A `WarmPool` pays that
while the previous candidate trains (or the LLM writes the next one): it keeps `size` sandboxes
running the worker with `--wait-for-job`, each on an empty work dir. `take()` hands one over and
launches its replacement in the background; the caller writes program.py and job.json into the
work dir and calls `finish()`. Isolation is unchanged: every sandbox still serves exactly one
candidate and is destroyed after it. A warm worker that waits longer than `wait_for_job_s` exits
on its own, so a host killed with -9 leaves nothing running for long.
"""
from __future__ import annotations

import atexit
import logging
import shutil
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from sandbox.base import Launched, Limits, Sandbox, SandboxJob

log = logging.getLogger(__name__)


class WarmPool:
    def __init__(self, *, sandbox: Sandbox, data_dir: Path, limits: Limits, make_work_dir: Callable[[], Path],
                 size: int = 1, wait_for_job_s: float = 1800.0) -> None:
        self.sandbox, self.data_dir, self.limits = sandbox, Path(data_dir), limits
        self.make_work_dir, self.size, self.wait_for_job_s = make_work_dir, max(1, size), wait_for_job_s
        self._slots: deque[Future] = deque()
        self._lock = threading.Lock()
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ensnas-warm")
        self._closed = False
        atexit.register(self.close)

    def _launch(self) -> tuple[Path, Launched]:
        work = self.make_work_dir()
        try:
            job = SandboxJob(work_dir=work, data_dir=self.data_dir, limits=self.limits,
                             wait_for_job_s=self.wait_for_job_s)
            return work, self.sandbox.start(job)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def fill(self) -> None:
        """Launch sandboxes (in the background) until `size` are warm or warming."""
        with self._lock:
            while not self._closed and len(self._slots) < self.size:
                self._slots.append(self._launcher.submit(self._launch))

    def take(self) -> tuple[Path, Launched] | None:
        """A running sandbox waiting for its job, and its work dir; None when none can be had
        (the caller then starts one the usual way, which reports any real problem)."""
        self.fill()
        with self._lock:
            if self._closed or not self._slots:
                return None
            slot = self._slots.popleft()
        self.fill()  # the replacement warms while this one runs
        try:
            work, launched = slot.result()
        except Exception as exc:  # noqa: BLE001 - e.g. the daemon went away: the cold path says so properly
            log.debug("warm sandbox launch failed: %s", exc)
            return None
        if launched.alive():
            return work, launched
        _discard(work, launched)  # gave up waiting (or died warming up): never hand it a job
        return None

    def close(self) -> None:
        """Kill every sandbox still waiting and remove its work dir."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            slots, self._slots = list(self._slots), deque()
        for slot in slots:
            try:
                _discard(*slot.result())
            except Exception:  # noqa: BLE001 - a launch that failed left nothing behind
                pass
        self._launcher.shutdown(wait=True)
        atexit.unregister(self.close)


def _discard(work: Path, launched: Launched) -> None:
    try:
        launched.cancel()
    finally:
        shutil.rmtree(work, ignore_errors=True)
