"""Constrained delta decoding: a GBNF grammar that only admits SEARCH/REPLACE blocks that apply.

Small models fail the delta format mostly on form: prose, unclosed blocks, SEARCH text that is
not in the parent (benchmarks/results/generator_validity.json: 0/50 applied for SmolLM2-135M).
Under this grammar the answer is one block whose SEARCH part is a window of 1..`max_search_lines`
parent lines that occurs exactly once in the parent (so it matches exactly and unambiguously),
and whose REPLACE part is up to `max_replace_lines` lines, none starting with '>'. The model still
chooses which lines to edit and what to write; only answers that cannot apply are ruled out.
Backends that accept a grammar (llama.cpp's server, hence `llama_cpp` and `openai` with
`grammar_field`) get it through `SamplingConfig.grammar`; the others generate unconstrained.
"""
from __future__ import annotations

import re


def _literal(text: str) -> str:
    """A GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t")
    return f'"{escaped}"'


def _positions(text: str, part: str) -> int:
    """Where `part` starts in `text`, overlapping occurrences included."""
    count, at = 0, text.find(part)
    while at != -1:
        count, at = count + 1, text.find(part, at + 1)
    return count


_NOT_ANCHORS = re.compile(r"^\s*(\d+\s?[|:]|```|<{5}|={5}|>{5})")  # what the block parser would strip or misread


def unique_windows(parent: str, max_lines: int = 3) -> list[str]:
    """Windows of 1..max_lines consecutive parent lines that start at exactly one place in the
    parent text (the applier matches substrings, so a line must not hide inside another) and
    have at least one non-blank line."""
    lines = parent.splitlines()
    found: list[str] = []
    for size in range(1, max_lines + 1):
        for i in range(len(lines) - size + 1):
            window = "\n".join(lines[i:i + size])
            if (window.strip() and not any(_NOT_ANCHORS.match(ln) for ln in lines[i:i + size])
                    and _positions(parent, window) == 1):
                found.append(window)
    return list(dict.fromkeys(found))


def _indent(window: str) -> str:
    """The indentation of the least indented non-blank line of a window."""
    lines = [ln for ln in window.splitlines() if ln.strip()]
    return min((ln[:len(ln) - len(ln.lstrip())] for ln in lines), key=len)


def delta_grammar(parent: str, *, max_search_lines: int = 3, extra_replace_lines: int = 2,
                  max_line_chars: int = 120) -> str:
    """The GBNF grammar of one applicable SEARCH/REPLACE block for `parent`: the SEARCH part is a
    window that occurs once; its REPLACE part has 1..(window lines + extra_replace_lines) lines,
    each at least as indented as the window (a replacement stays in the scope it edits)."""
    windows = unique_windows(parent, max_search_lines)
    if not windows:
        raise ValueError("the parent has no line that occurs exactly once: nothing to anchor an edit on")
    rules = ['root ::= "<<<<<<< SEARCH\\n" (\n      ' + "\n    | ".join(f"b{i}" for i in range(len(windows)))
             + '\n) ">>>>>>> REPLACE"']
    indents: dict[str, str] = {}
    for i, window in enumerate(windows):
        indent = _indent(window)
        name = indents.setdefault(indent, f"line{len(indents)}")
        most = len(window.splitlines()) + extra_replace_lines
        rules.append(f'b{i} ::= {_literal(window + chr(10))} "=======\\n" {name}{{1,{most}}}')
    for indent, name in indents.items():
        # an empty line, or the scope's indentation then a line not starting with '>' (no Python line does)
        body = f'[^>\\n\\t ] [^\\n]{{0,{max_line_chars - len(indent) - 1}}}'
        rules.append(f'{name} ::= ( {_literal(indent)} [ \\t]* {body} )? "\\n"' if indent else
                     f'{name} ::= ( [ \\t]* {body} )? "\\n"')
    return "\n".join(rules) + "\n"
