"""Progress of the phases that take more than a few seconds (seed evaluation, each proposer's
proposals, the sandbox evaluations, the CE update, the final deploy).

On a terminal: one live status line, redrawn twice a second with the phase, its count, an
optional note and the elapsed time, cleared when the phase ends. Anywhere else (a pipe, a log
file, CI, ``--quiet``): nothing at all. Library code just says what it is doing:

    from agent import progress
    with progress.phase("cycle 2: llm proposing", total=4) as p:
        for ...:
            progress.note("proposal 2/4, repair turn 1")   # the innermost phase, from anywhere
            p.advance()

Log lines written through :func:`console_handler` clear the live line first, so they never
interleave with it.
"""
from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import TextIO

from agent.safe_text import safe_line

_lock = threading.RLock()
_stack: list["Phase"] = []
_stream: TextIO | None = None          # the real terminal; None = progress off
_ticker: threading.Thread | None = None
_shown = False                          # a live line is on screen
REFRESH_S = 0.5


def configure(*, enabled: bool | None = None, stream: TextIO | None = None) -> bool:
    """Turn progress on for ``stream`` (default: stderr) when it is a terminal and ``enabled``
    is not False. Returns whether it is on."""
    global _stream
    stream = stream or sys.__stderr__
    on = bool(stream is not None and (enabled if enabled is not None else _isatty(stream)))
    with _lock:
        _clear()
        _stream = stream if on else None
    return on


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Phase:
    def __init__(self, desc: str, total: int | None = None) -> None:
        self.desc, self.total = desc, total
        self.done = 0
        self.text = ""
        self.started = time.monotonic()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        with _lock:
            self.done += n
            if note is not None:
                self.text = note
            _draw()

    def note(self, text: str) -> None:
        with _lock:
            self.text = text
            _draw()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        count = f" {self.done}/{self.total}" if self.total else (f" {self.done}" if self.done else "")
        note = f" · {self.text}" if self.text else ""
        return f"{self.desc}{count}{note} · {self.elapsed:.0f} s"

    def __enter__(self) -> "Phase":
        global _ticker
        with _lock:
            _stack.append(self)
            if _stream is not None and (_ticker is None or not _ticker.is_alive()):
                _ticker = threading.Thread(target=_tick, name="ensnas-progress", daemon=True)
                _ticker.start()
            _draw()
        return self

    def __exit__(self, *exc) -> None:
        with _lock:
            if self in _stack:
                _stack.remove(self)
            _clear()
            _draw()


def phase(desc: str, total: int | None = None) -> Phase:
    return Phase(desc, total)


def note(text: str) -> None:
    """Set the note of the innermost running phase (no-op when there is none)."""
    with _lock:
        if _stack:
            _stack[-1].note(text)


def _tick() -> None:
    while True:
        time.sleep(REFRESH_S)
        with _lock:
            if not _stack or _stream is None:
                return
            _draw()


def _draw() -> None:
    global _shown
    if _stream is None or not _stack:
        return
    try:
        width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
    except (OSError, ValueError):
        width = 120
    text = safe_line(" › ".join(p.line() for p in _stack[-2:]), limit=width)
    try:
        _stream.write("\r\x1b[2K" + text)
        _stream.flush()
        _shown = True
    except (OSError, ValueError):
        pass


def _clear() -> None:
    global _shown
    if _shown and _stream is not None:
        try:
            _stream.write("\r\x1b[2K")
            _stream.flush()
        except (OSError, ValueError):
            pass
    _shown = False


class _ConsoleHandler(logging.StreamHandler):
    """A stream handler that clears the live progress line before a record and redraws it after."""

    def emit(self, record: logging.LogRecord) -> None:
        with _lock:
            _clear()
            super().emit(record)
            _draw()


def console_handler(stream: TextIO | None = None) -> logging.Handler:
    return _ConsoleHandler(stream or sys.__stderr__)
