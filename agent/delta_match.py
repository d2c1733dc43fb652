"""Where a SEARCH block lands in the parent, and how its REPLACE lines are indented there.

Three levels, first hit wins, each refusing ambiguity:

1. ``exact``: the SEARCH text occurs once, starting at the start of a line and ending at the end
   of one (a single-line SEARCH never matches the middle of a line);
2. ``whitespace``: the same non-blank lines with whitespace runs collapsed (indentation, blank
   lines and spacing may differ);
3. ``tokens``: the same non-blank lines token by token, where names (keywords included) and
   numbers must be equal, in strings and comments too, and only punctuation and whitespace may
   differ, and the window's text is at least ``threshold`` similar. A block written for ``nn.Linear(64, 10)``
   never lands on ``nn.Linear(64, 100)``: it is ``search_not_found``, and the detail names the
   nearest lines and the first token that differs, for the repair turn.

Bounded: every level compares whole lines (line signatures hashed into sets and a dict), so a
SEARCH whose lines do not all occur in the parent is rejected in one pass; the nearest-lines
report is one sliding window over token counts; the difflib calls run only on windows that
already agree token for token, and a deadline caps the whole search
(benchmarks/delta_apply.py).
"""
from __future__ import annotations

import difflib
import re
import time
from collections import Counter
from dataclasses import dataclass

# Names (keywords included) and numbers, wherever they are (code, strings, comments); everything
# else on a line is whitespace or punctuation.
_TOKEN = re.compile(r"0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJ]?|[^\W\d]\w*")


class NoMatch(Exception):
    """The SEARCH text does not land anywhere (kind: "not_found" or "ambiguous")."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class Match:
    start: int                      # first parent line replaced (0-based)
    end: int                        # one past the last
    how: str                        # exact / whitespace / tokens:0.93
    pairs: tuple[tuple[int, int], ...]   # (SEARCH line, parent line) for the indentation map


def significant(line: str) -> tuple[str, ...]:
    """What must agree exactly: the line's names and numbers, in order."""
    return tuple(_TOKEN.findall(line))


def _norm(line: str) -> str:
    return " ".join(line.split())


def _shown(tokens) -> str:
    return " ".join(tokens) or "(no tokens)"


def locate(source_lines: list[str], search: str, *, threshold: float = 0.85, deadline_s: float = 1.0,
           index: int = 1) -> Match:
    """The unique place where ``search`` lands in ``source_lines``; raises :class:`NoMatch`."""
    deadline = time.perf_counter() + deadline_s
    source = "\n".join(source_lines)
    exact = _exact(source, search)
    if len(exact) > 1:
        raise NoMatch("ambiguous", f"block {index}: the SEARCH text occurs {len(exact)} times (lines "
                      + ", ".join(str(a + 1) for a, _ in exact) + "); include more surrounding lines so it "
                      "matches exactly once")
    want_all = search.split("\n")
    if exact:
        a, b = exact[0]
        return Match(a, b, "exact", tuple((i, a + i) for i in range(b - a)))
    want = [i for i, w in enumerate(want_all) if w.strip()]
    have = [i for i, s in enumerate(source_lines) if s.strip()]
    k = len(want)
    if k == 0:
        raise NoMatch("not_found", f"block {index}: the SEARCH section has no code")
    if k > len(have):
        raise NoMatch("not_found", f"block {index}: the SEARCH text ({k} lines) is longer than the program "
                                   f"({len(have)} non-blank lines)")

    # level 2: whitespace-insensitive, blank lines ignored
    norm_have = [_norm(source_lines[i]) for i in have]
    norm_want = [_norm(want_all[i]) for i in want]
    windows = _windows(norm_have, norm_want, deadline)
    if len(windows) > 1:
        raise NoMatch("ambiguous", f"block {index}: the SEARCH text matches lines "
                      + ", ".join(str(have[j] + 1) for j in windows) + " (ignoring whitespace); include more context")
    if windows:
        return _match(windows[0], k, have, want, "whitespace")

    # level 3: token by token (names, numbers, strings exact; punctuation loose)
    sig_have = [significant(source_lines[i]) for i in have]
    sig_want = [significant(want_all[i]) for i in want]
    windows = _windows(sig_have, sig_want, deadline)
    scored = []
    for j in windows:
        if time.perf_counter() > deadline:
            raise NoMatch("not_found", f"block {index}: matching stopped after {deadline_s:.1f} s; "
                                       "copy the lines to change exactly")
        ratio = _similarity(norm_want, norm_have[j:j + k])
        if ratio >= threshold:
            scored.append((ratio, j))
    if len(scored) > 1:
        raise NoMatch("ambiguous", f"block {index}: the SEARCH text matches lines "
                      + ", ".join(str(have[j] + 1) for _, j in scored) + " (ignoring punctuation); include more context")
    if scored:
        ratio, j = scored[0]
        return _match(j, k, have, want, f"tokens:{ratio:.2f}")
    raise NoMatch("not_found", _nearest(source_lines, have, sig_have, sig_want, k, index, threshold,
                                        windows_found=bool(windows)))


def _similarity(want: list[str], have: list[str]) -> float:
    """difflib's ratio over the window, line by line (lines already agree on every token, so
    only their punctuation and spacing differ; per line keeps it linear in the window)."""
    matched = total = 0
    for a, b in zip(want, have):
        total += len(a) + len(b)
        matched += 2 * sum(m.size for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return matched / total if total else 1.0


def _exact(source: str, search: str) -> list[tuple[int, int]]:
    """Line-aligned occurrences of ``search``, as (first line, one past the last line)."""
    out, at = [], source.find(search)
    while at != -1:
        end = at + len(search)
        if (at == 0 or source[at - 1] == "\n") and (end == len(source) or source[end] == "\n"):
            first = source.count("\n", 0, at)
            out.append((first, first + search.count("\n") + 1))
        at = source.find(search, at + 1)
    return out


def _windows(have: list, want: list, deadline: float) -> list[int]:
    """Starts j with have[j:j+len(want)] == want. Rejects at once when a wanted line occurs nowhere."""
    k = len(want)
    present = set(have)
    if any(w not in present for w in want):
        return []
    out = []
    first = want[0]
    for j in range(len(have) - k + 1):
        if have[j] == first and have[j:j + k] == want:
            out.append(j)
        if not j % 256 and time.perf_counter() > deadline:
            break
    return out


def _match(j: int, k: int, have: list[int], want: list[int], how: str) -> Match:
    return Match(have[j], have[j + k - 1] + 1, how, tuple((want[i], have[j + i]) for i in range(k)))


def _nearest(source_lines, have, sig_have, sig_want, k, index, threshold, windows_found) -> str:
    """The window of k non-blank lines sharing the most tokens with the SEARCH (one sliding pass),
    and the first token where they differ."""
    want_count = Counter(t for line in sig_want for t in line)
    total_want = sum(want_count.values())
    window: Counter = Counter()
    overlap = size = 0
    best = (-1.0, 0)

    def add(line, sign):
        nonlocal overlap, size
        for t in line:
            if sign > 0:
                if window[t] < want_count.get(t, 0):
                    overlap += 1
                window[t] += 1
            else:
                window[t] -= 1
                if window[t] < want_count.get(t, 0):
                    overlap -= 1
        size += sign * len(line)

    for j, line in enumerate(sig_have):
        add(line, +1)
        if j >= k:
            add(sig_have[j - k], -1)
        if j >= k - 1:
            score = 2 * overlap / max(1, size + total_want)
            if score > best[0]:
                best = (score, j - k + 1)
    score, j = best
    lo, hi = j, j + k - 1   # drop edge lines that share nothing with the SEARCH
    shared = set(want_count)
    while lo < hi and not shared.intersection(sig_have[lo]):
        lo += 1
    while hi > lo and not shared.intersection(sig_have[hi]):
        hi -= 1
    a, b = have[lo], have[hi]
    near = "\n".join(source_lines[a:b + 1])
    why = ("the tokens agree but the punctuation differs too much" if windows_found
           else _first_difference([t for line in sig_want for t in line], [t for line in sig_have[lo:hi + 1]
                                                                            for t in line]))
    return (f"block {index}: the SEARCH text is not in the program (closest: lines {a + 1}-{b + 1}, "
            f"{score:.0%} of tokens shared; {why}; names and numbers must match exactly):\n{near}")


def _first_difference(want: list[str], have: list[str], cap: int = 300) -> str:
    """The first tokens where SEARCH and the nearest lines part. difflib aligns them when both
    are short; longer ones are compared position by position (linear, whatever the input)."""
    if len(want) <= cap and len(have) <= cap:
        ops = difflib.SequenceMatcher(None, want, have, autojunk=False).get_opcodes()
    else:
        i = next((n for n, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
        ops = [("replace" if i < min(len(want), len(have)) else "delete" if len(want) > len(have) else "insert",
                i, len(want), i, len(have))]
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        mine, theirs = _shown(want[i1:min(i2, i1 + 3)]), _shown(have[j1:min(j2, j1 + 3)])
        if tag == "replace":
            return f"SEARCH has `{mine}` where the program has `{theirs}`"
        if tag == "delete":
            return f"SEARCH has `{mine}`, which the program does not"
        return f"the program has `{theirs}`, which SEARCH does not"
    return "same tokens, different line breaks"


def reindent(replace_lines: list[str], search_lines: list[str], source_lines: list[str], match: Match) -> list[str]:
    """REPLACE lines moved from the SEARCH's indentation to the matched block's: each SEARCH
    indentation width maps to the width of the parent line it matched; other widths keep their
    offset from the nearest mapped width below (or above). A SEARCH written at the wrong depth
    therefore cannot move a statement out of (or into) a block."""
    mapping: dict[int, int] = {}
    for s, p in match.pairs:
        src = source_lines[p]
        if "\t" in _indent(src) or "\t" in _indent(search_lines[s]):
            return _shift_by_prefix(replace_lines, search_lines, source_lines, match)
        mapping.setdefault(len(_indent(search_lines[s])), len(_indent(src)))
    if all(a == b for a, b in mapping.items()):
        return list(replace_lines)
    known = sorted(mapping)
    out = []
    for line in replace_lines:
        if not line.strip():
            out.append(line)
            continue
        w = len(_indent(line))
        if "\t" in _indent(line):
            out.append(line)
            continue
        below = [x for x in known if x <= w]
        base = below[-1] if below else known[0]
        out.append(" " * max(0, mapping[base] + (w - base)) + line.lstrip())
    return out


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _shift_by_prefix(replace_lines, search_lines, source_lines, match) -> list[str]:
    """Tabs: swap the first matched line's indentation prefix where a REPLACE line starts with it."""
    s, p = match.pairs[0]
    old, new = _indent(search_lines[s]), _indent(source_lines[p])
    return [new + line[len(old):] if line.strip() and line.startswith(old) else line for line in replace_lines]
