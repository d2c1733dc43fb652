"""The delta format: what the LLM emits and how it becomes a program.

Two output modes, compared by docs/theory.md T6.4:

- ``delta``: one or more SEARCH/REPLACE blocks

      <<<<<<< SEARCH
      exact lines of the parent
      =======
      the lines that replace them
      >>>>>>> REPLACE

  applied in order: an exact match of whole lines first, then a whitespace-insensitive one,
  then one that may differ only in punctuation (names and numbers exact), refusing ambiguous
  matches (agent/delta_match.py).
- ``full``: the whole new program in one fenced code block (or bare code that parses).

Every failure is one typed :class:`EditFailure` with a detail that is precise enough to feed
back to the model in the repair loop (which block, what was closest, where parsing broke).
Nothing here raises for bad model output: :func:`apply_output` returns an :class:`EditResult`.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from agent.delta_match import NoMatch, locate, reindent

Mode = Literal["delta", "full"]


class EditFailure(str, Enum):
    """Why a model answer did not yield a new program (counted in the proposer's stats)."""
    empty = "empty"                       # nothing but whitespace
    prose_only = "prose_only"             # text without any block/code in the required format
    unclosed_block = "unclosed_block"     # a SEARCH block or code fence that never ends
    malformed_block = "malformed_block"   # markers out of order, empty SEARCH section
    search_not_found = "search_not_found" # SEARCH text matches nothing in the parent
    ambiguous_match = "ambiguous_match"   # SEARCH text matches more than one place
    no_change = "no_change"               # the edit reproduces the parent exactly
    syntax_error = "syntax_error"         # the edited program does not parse
    too_long = "too_long"                 # answer above the size cap, or cut off at max tokens
    timeout = "timeout"                   # the generator missed its deadline
    generator_error = "generator_error"   # the backend failed (server down, bad response)
    build_failed = "build_failed"         # parsed, but the sandbox build/shape/size check failed
    duplicate = "duplicate"               # the program was already tried (same up to formatting and comments)


@dataclass(frozen=True, kw_only=True)
class Block:
    search: str
    replace: str
    index: int                            # 1-based position in the answer, for messages


@dataclass(kw_only=True)
class EditResult:
    ok: bool
    source: str = ""                      # the new program when ok
    failure: EditFailure | None = None
    detail: str = ""
    blocks: int = 0
    fuzzy: list[str] = field(default_factory=list)   # how each block matched: exact / whitespace / similar:0.93


class _Fail(Exception):
    def __init__(self, failure: EditFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure, self.detail = failure, detail


_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^\s*```")
_LINE_NO = re.compile(r"^\s*\d+\s?[|:] ?")


def parse_blocks(text: str) -> list[Block]:
    """SEARCH/REPLACE blocks in order. Raises _Fail for empty/prose/unclosed/malformed answers."""
    if not text.strip():
        raise _Fail(EditFailure.empty, "the answer is empty")
    blocks: list[Block] = []
    state, search, replace = "out", [], []
    for number, line in enumerate(text.splitlines(), 1):
        if state == "out":
            if _SEARCH.match(line):
                state, search, replace = "search", [], []
            elif _REPLACE.match(line):
                raise _Fail(EditFailure.malformed_block, f"line {number}: '>>>>>>> REPLACE' without a matching SEARCH")
        elif state == "search":
            if _DIVIDER.match(line):
                state = "replace"
            elif _SEARCH.match(line) or _REPLACE.match(line):
                raise _Fail(EditFailure.malformed_block,
                            f"line {number}: block {len(blocks) + 1} has no '=======' between SEARCH and REPLACE")
            else:
                search.append(line)
        else:  # replace
            if _REPLACE.match(line):
                blocks.append(_make_block(search, replace, len(blocks) + 1))
                state = "out"
            elif _SEARCH.match(line):
                raise _Fail(EditFailure.unclosed_block, f"line {number}: block {len(blocks) + 1} is not closed "
                                                        "with '>>>>>>> REPLACE' before the next SEARCH")
            else:
                replace.append(line)
    if state != "out":
        missing = "'======='" if state == "search" else "'>>>>>>> REPLACE'"
        raise _Fail(EditFailure.unclosed_block, f"block {len(blocks) + 1} ends without {missing}")
    if not blocks:
        raise _Fail(EditFailure.prose_only, "no '<<<<<<< SEARCH' ... '>>>>>>> REPLACE' block in the answer")
    return blocks


def _make_block(search: list[str], replace: list[str], index: int) -> Block:
    search, replace = _strip_fence_lines(search), _strip_fence_lines(replace)
    if search and all(_LINE_NO.match(s) for s in search if s.strip()):
        # the prompt shows the parent with line numbers; models often copy them
        search = [_LINE_NO.sub("", s, count=1) for s in search]
        replace = [_LINE_NO.sub("", s, count=1) if _LINE_NO.match(s) else s for s in replace]
    if not any(s.strip() for s in search):
        raise _Fail(EditFailure.malformed_block, f"block {index}: the SEARCH section is empty")
    return Block(search="\n".join(search), replace="\n".join(replace), index=index)


def _strip_fence_lines(lines: list[str]) -> list[str]:
    while lines and _FENCE.match(lines[0]):
        lines = lines[1:]
    while lines and _FENCE.match(lines[-1]):
        lines = lines[:-1]
    return lines


def indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def parser_reads_specially(line: str) -> bool:
    """A line the block parser would take for a marker, a fence or a copied line number."""
    return any(p.match(line) for p in (_SEARCH, _DIVIDER, _REPLACE, _FENCE, _LINE_NO))


def apply_block(source: str, block: Block, *, threshold: float = 0.85, deadline_s: float = 1.0) -> tuple[str, str]:
    """Apply one block to source; returns (new source, how it matched). Raises _Fail.

    Where the block lands and how its REPLACE lines are indented there: agent/delta_match.py
    (whole lines only; a fuzzy match never changes a name or a number; bounded in time)."""
    ends_with_newline = source.endswith("\n")
    lines = source.split("\n")
    if ends_with_newline:
        lines.pop()
    try:
        match = locate(lines, block.search, threshold=threshold, deadline_s=deadline_s, index=block.index)
    except NoMatch as miss:
        failure = EditFailure.ambiguous_match if miss.kind == "ambiguous" else EditFailure.search_not_found
        raise _Fail(failure, miss.detail) from None
    replace = block.replace.split("\n") if block.replace else []
    new = reindent(replace, block.search.split("\n"), lines, match)
    out = lines[:match.start] + new + lines[match.end:]
    return "\n".join(out) + ("\n" if ends_with_newline else ""), match.how


def extract_full(text: str) -> str:
    """The program in a full-rewrite answer: the longest fenced block, else the bare text if it parses."""
    if not text.strip():
        raise _Fail(EditFailure.empty, "the answer is empty")
    fences = [i for i, line in enumerate(text.splitlines()) if _FENCE.match(line)]
    lines = text.splitlines()
    if fences:
        if len(fences) % 2:
            raise _Fail(EditFailure.unclosed_block, f"the code block opened at line {fences[-1] + 1} is never closed")
        bodies = ["\n".join(lines[a + 1:b]) for a, b in zip(fences[::2], fences[1::2])]
        return max(bodies, key=len).strip("\n") + "\n"
    try:
        compile(text, "<answer>", "exec")
    except (SyntaxError, ValueError):
        raise _Fail(EditFailure.prose_only, "no ``` code block in the answer and the text is not Python") from None
    return text.strip("\n") + "\n"


def check_syntax(source: str) -> str | None:
    """None when source parses, else 'line N: message'."""
    try:
        compile(source, "program.py", "exec")
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}" + (f": {exc.text.strip()}" if exc.text else "")
    except ValueError as exc:   # e.g. null bytes
        return str(exc)
    return None


def apply_output(parent: str, text: str, *, mode: Mode = "delta", threshold: float = 0.85,
                 max_chars: int = 20_000, truncated: bool = False) -> EditResult:
    """Turn a raw model answer into a program (or one typed failure). Never raises on bad output.

    truncated: the generator stopped at max tokens; an answer that then fails to parse as a
    complete block is reported as too_long (the cause) rather than unclosed_block (the symptom).
    """
    if len(text) > max_chars:
        return EditResult(ok=False, failure=EditFailure.too_long, detail=f"the answer has {len(text)} characters "
                          f"(cap {max_chars}); answer with only the edit")
    try:
        if mode == "full":
            source, how, count = extract_full(text), ["full"], 1
        else:
            blocks = parse_blocks(text)
            source, how = parent, []
            for block in blocks:
                source, matched = apply_block(source, block, threshold=threshold)
                how.append(matched)
            count = len(blocks)
    except _Fail as fail:
        failure = fail.failure
        if truncated and failure in (EditFailure.unclosed_block, EditFailure.prose_only):
            return EditResult(ok=False, failure=EditFailure.too_long,
                              detail=f"the answer was cut off at the token limit ({fail.detail})")
        return EditResult(ok=False, failure=failure, detail=fail.detail)
    if source.strip() == parent.strip():
        return EditResult(ok=False, failure=EditFailure.no_change, detail="the edit leaves the program unchanged",
                          blocks=count, fuzzy=how)
    error = check_syntax(source)
    if error:
        return EditResult(ok=False, failure=EditFailure.syntax_error, detail=f"the edited program does not parse: "
                          f"{error}", source=source, blocks=count, fuzzy=how)
    return EditResult(ok=True, source=source, blocks=count, fuzzy=how)


def unified_diff(parent: str, child: str, *, parent_name: str = "parent.py", child_name: str = "candidate.py") -> str:
    """The edit as a unified diff against its parent (what the store keeps and the viewer shows)."""
    return "".join(difflib.unified_diff(parent.splitlines(keepends=True), child.splitlines(keepends=True),
                                        fromfile=parent_name, tofile=child_name))
