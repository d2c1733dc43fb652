"""Bounded capture of a sandboxed program's output, and the host-side check of what it left in out/.

A hostile program may print gigabytes or litter its output directory. Every hardened backend
reads stdout/stderr through an `OutputPump` (keeps a tail, counts every byte, calls `on_overflow`
once the stream passes its cap so the backend can kill the run) and, after the run, calls
`inspect_out_dir` so that an oversized or unexpected output is reported as `output_too_large`.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterable

OUTPUT_TOO_LARGE = "output_too_large"  # the note evaluator.evaluate maps to FailureReason.output_too_large
OUT_INVALID = "out_invalid"            # ... and this one to FailureReason.invalid_output
EXPECTED_OUTPUTS = {"result.json", "predictions.npz"}


class OutputTail:
    """One stream's capture: keeps the last `keep` bytes, counts all, calls `on_overflow` once past `cap`."""

    def __init__(self, *, keep: int, cap: int, on_overflow: Callable[[], None] | None = None) -> None:
        self.keep, self.cap, self.on_overflow = keep, cap, on_overflow
        self.total = 0
        self.overflowed = False
        self._buf = bytearray()

    def add(self, chunk: bytes | None) -> None:
        if not chunk:
            return
        self.total += len(chunk)
        self._buf += chunk
        if len(self._buf) > 2 * self.keep:
            del self._buf[: len(self._buf) - self.keep]
        if self.total > self.cap and not self.overflowed:
            self.overflowed = True
            if self.on_overflow:
                self.on_overflow()

    def result(self) -> tuple[str, bool]:
        """(tail text, whether anything was cut)."""
        data = bytes(self._buf[-self.keep:]) if self.keep else b""
        return data.decode("utf-8", "replace"), self.total > len(data)


class OutputPump:
    """Drains an iterable of chunks on a thread into tails: plain bytes go to the first tail,
    (stdout, stderr) pairs (Docker's demultiplexed attach stream) to both."""

    def __init__(self, *, chunks: Iterable, tails: list[OutputTail]) -> None:
        self.tails = tails
        self._thread = threading.Thread(target=self._drain, args=(chunks,), daemon=True)
        self._thread.start()

    def _drain(self, chunks: Iterable) -> None:
        try:
            for chunk in chunks:
                if isinstance(chunk, tuple):
                    for tail, part in zip(self.tails, chunk):
                        tail.add(part)
                else:
                    self.tails[0].add(chunk)
        except Exception:  # the stream broke because the run was killed: what we have is the tail
            pass

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)


def read_fd_chunks(fd_file, size: int = 1 << 16) -> Iterable[bytes]:
    """Chunks from a pipe until EOF."""
    while True:
        chunk = fd_file.read1(size) if hasattr(fd_file, "read1") else fd_file.read(size)
        if not chunk:
            return
        yield chunk


def inspect_out_dir(out_dir: Path, *, max_file_mb: int, max_files: int = 64) -> list[str]:
    """Notes about out/ after a run: OUT_INVALID for symlinks or other non-regular entries,
    OUTPUT_TOO_LARGE for too many or too big files."""
    notes: list[str] = []
    try:
        entries = list(out_dir.iterdir())
    except OSError:
        return notes
    cap = max_file_mb << 20
    odd = [e.name for e in entries if e.is_symlink() or not e.is_file()]
    big = [e.name for e in entries if e.is_file() and not e.is_symlink() and e.stat().st_size >= cap]
    if odd:  # a symlink could point the host at its own files (labels, secrets): never follow it
        notes.append(OUT_INVALID)
        notes.append(f"out/ holds entries that are not regular files: {odd[:5]}")
    elif len(entries) > max_files or big:
        notes.append(OUTPUT_TOO_LARGE)
        notes.append(f"out/ held {len(entries)} entries; at the {max_file_mb} MiB cap: {big[:5]}")
    return notes
