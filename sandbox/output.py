"""Bounded capture of a sandboxed program's output, and the host-side check of what it left in out/.

A hostile program may print gigabytes or litter its output directory. Every hardened backend
reads stdout/stderr through an `OutputPump` (keeps a tail, counts every byte, calls `on_overflow`
once the stream passes its cap so the backend can kill the run) and, after the run, calls
`inspect_out_dir` so that an oversized or unexpected output is reported as `output_too_large`.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

OUTPUT_TOO_LARGE = "output_too_large"  # the note evaluator.evaluate maps to FailureReason.output_too_large
OUT_INVALID = "out_invalid"            # ... and this one to FailureReason.invalid_output
EXPECTED_OUTPUTS = {"result.json", "predictions.npz"}


Sink = Callable[[bytes | None], None]  # gets a stream's bytes after the marker line; None at its end


class OutputTail:
    """One stream's capture: keeps the last `keep` bytes, counts all, calls `on_overflow` once past `cap`.
    The first time `marker` appears (sandbox.supervisor's report), `on_marker(rest of that line)` is
    called; if it returns a sink, every later byte of the stream goes there instead (out/'s tar)."""

    def __init__(self, *, keep: int, cap: int, on_overflow: Callable[[], None] | None = None,
                 marker: bytes = b"", on_marker: Callable[[bytes], Sink | None] | None = None) -> None:
        self.keep, self.cap, self.on_overflow = keep, cap, on_overflow
        self.marker, self.on_marker = marker, on_marker
        self.total = 0
        self.overflowed = False
        self._buf = bytearray()
        self._scan = b""
        self._sink: Sink | None = None

    def close(self) -> None:
        """The stream ended."""
        if self._sink is not None:
            self._sink(None)

    def add(self, chunk: bytes | None) -> None:
        if not chunk:
            return
        if self._sink is not None:
            self._sink(chunk)
            return
        if self.marker and self.on_marker:
            chunk, rest = self._find_marker(chunk)
            if self._sink is not None and rest:
                self._sink(rest)
        self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._buf += chunk
        if len(self._buf) > 2 * self.keep:
            del self._buf[: len(self._buf) - self.keep]
        if self.total > self.cap and not self.overflowed:
            self.overflowed = True
            if self.on_overflow:
                self.on_overflow()

    def _find_marker(self, chunk: bytes) -> tuple[bytes, bytes]:
        """(what of `chunk` is output, what follows the marker's line)."""
        carried = len(self._scan)
        seen = self._scan + chunk
        at = seen.find(self.marker)
        end = seen.find(b"\n", at + len(self.marker)) if at >= 0 else -1
        if end < 0:
            self._scan = seen[at:][:8192] if at >= 0 else seen[-(len(self.marker) + 4096):]
            return chunk, b""
        callback, self.on_marker = self.on_marker, None
        self._sink = callback(seen[at + len(self.marker):end])
        cut = max(0, end + 1 - carried)  # the line is output (stripped from the tail later); the rest is not
        return chunk[:cut], chunk[cut:]

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
        finally:
            for tail in self.tails:
                tail.close()

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)


def read_fd_chunks(fd_file, size: int = 1 << 16) -> Iterable[bytes]:
    """Chunks from a pipe until EOF."""
    while True:
        chunk = fd_file.read1(size) if hasattr(fd_file, "read1") else fd_file.read(size)
        if not chunk:
            return
        yield chunk


def supervisor_notes(report: dict, *, out_mb: int, tmp_mb: int) -> list[str]:
    """Notes from sandbox.supervisor: a quota filled while running, and what copying out/ found."""
    notes: list[str] = []
    where = report.get("quota_exceeded")
    if where:
        cap = out_mb if where == "out/" else tmp_mb
        notes += [OUTPUT_TOO_LARGE, f"quota: {where} reached its {cap} MiB cap while the program ran (killed)"]
    out = report.get("out") or {}
    if out.get("odd"):  # a symlink could point the host at its own files (labels, secrets): never followed
        notes += [OUT_INVALID, f"out/ holds entries that are not regular files: {out['odd'][:5]}"]
    elif out.get("too_many") or out.get("too_big"):
        notes += [OUTPUT_TOO_LARGE, f"out/ held more than 64 entries or {out_mb} MiB"]
    return notes


class _ChunkReader(io.RawIOBase):
    """A byte iterator as a readable stream (for tarfile's stream mode), ending after `limit` bytes."""

    def __init__(self, chunks: Iterable[bytes], limit: int) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending), self._left)
        self._left -= n
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n


def extract_out_tar(chunks: Iterable[bytes], dest: Path, *, max_bytes: int, max_files: int = 64) -> dict:
    """Write the regular files of a tar stream (sandbox.supervisor.dump) into `dest`, by base name only,
    at most max_files and max_bytes in all; anything else is reported, never extracted."""
    from sandbox.supervisor import REPORT_NAME
    report = {"files": 0, "bytes": 0, "odd": [], "too_many": False, "too_big": False}
    try:
        reader = io.BufferedReader(_ChunkReader(chunks, limit=max_bytes + (64 << 20)), 1 << 16)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                if member.name == REPORT_NAME and member.isreg() and member.size < 1 << 20:
                    sent = json.loads(tar.extractfile(member).read())
                    report["odd"] += [str(n) for n in sent.get("odd", [])][:64]
                    report["too_many"] = report["too_many"] or bool(sent.get("too_many"))
                    report["too_big"] = report["too_big"] or bool(sent.get("too_big"))
                    continue
                name = member.name
                if not member.isreg() or "/" in name or name in ("", ".", ".."):
                    report["odd"].append(name)
                    continue
                if report["files"] >= max_files:
                    report["too_many"] = True
                    continue
                if report["bytes"] + member.size > max_bytes:
                    report["too_big"] = True
                    continue
                data = tar.extractfile(member).read()
                fd = os.open(dest / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                report["files"] += 1
                report["bytes"] += len(data)
    except (tarfile.TarError, OSError, ValueError) as exc:
        report["error"] = f"unreadable out/ archive: {exc}"
    return report


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
