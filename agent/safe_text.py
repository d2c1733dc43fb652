"""The one sanitiser for text that a candidate program or a model wrote, applied at output time.

The store keeps such text raw (failure details, stdout/stderr excerpts, program source, LLM
answers, decision reasons that quote them); every place that shows it to a person passes it
through :func:`safe_text` (or :func:`safe_line` for one table cell / log line) first.

What must never reach a terminal, and how it is shown instead:

- C0 controls except ``\\n`` and ``\\t`` (ESC starts every CSI/OSC/DCS sequence: clear screen,
  window title, OSC-52 clipboard writes, hyperlinks; BEL, BS and a lone CR rewrite what is
  already on screen) → the Unicode control picture (ESC → ``␛``, CR → ``␍``, BEL → ``␇``), so the
  text keeps its width and the sequence stays readable (``␛]52;c;…``).
- DEL → ``␡``; C1 controls (U+0080–U+009F; U+009B is an 8-bit CSI) → ``\\x9b``.
- Unicode format characters (category Cf: bidi overrides and isolates of "Trojan Source",
  zero-width characters, the BOM), line/paragraph separators and lone surrogates (which make
  ``print`` raise) → ``<U+202E>``.

``\\r\\n`` line endings become ``\\n``. Nothing else changes: the result of sanitising printable
text is the text itself.
"""
from __future__ import annotations

import logging
import re

# Category Cf as of Unicode 15 (tests/test_safe_text.py checks this list against unicodedata,
# so a newer Python with new format characters fails the test instead of leaking them).
_FORMAT = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
           "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
           "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff{_FORMAT}]")
_UNSAFE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff{_FORMAT}]")


def _visible(match: re.Match) -> str:
    ch = match.group()
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)            # ␀ … ␟ (␛ for ESC, ␍ for CR, ␊ for LF in safe_line)
    if code == 0x7F:
        return "\u2421"                      # ␡
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


def safe_text(text: object) -> str:
    """``text`` (any object; ``None`` → ``""``) with every terminal-controlling character made
    visible. Keeps newlines and tabs."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_visible, s.replace("\r\n", "\n"))


def safe_line(text: object, *, limit: int | None = None) -> str:
    """Like :func:`safe_text` for a single line (a table cell, a log line): newlines and tabs are
    shown as ``␊``/``␉`` too; with ``limit``, longer text ends in ``…`` at that many characters."""
    s = _UNSAFE_LINE.sub(_visible, safe_text(text))
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


class SafeFormatter(logging.Formatter):
    """A logging formatter whose every line goes through :func:`safe_text`: log messages echo
    candidate and model text (reasons, failure details, generator errors), so the console and
    the run's log file get the same sanitised lines whoever logged them."""

    def format(self, record: logging.LogRecord) -> str:
        return safe_text(super().format(record))
