"""Constrained delta decoding: a GBNF grammar that only admits SEARCH/REPLACE blocks that apply.

Small models fail the delta format mostly on form: prose, unclosed blocks, SEARCH text that is
not in the parent (benchmarks/results/generator_validity.json: 0/50 applied for SmolLM2-135M).
Under this grammar the answer is one block whose SEARCH part is a window of 1..`max_search_lines`
parent lines that occurs exactly once in the parent (so it matches exactly and unambiguously),
and whose REPLACE part rewrites it line for line (no line of it can be a block marker: a Python
line never starts with '=', '<' or '>'), up to `max_blocks` blocks. The model still
chooses which lines to edit and what to write; only answers that cannot apply are ruled out.
`open_windows` narrows the SEARCH choices to lines not already tried on the parent, so that a
model cannot write the same edit over and over when told not to.
Backends that accept a grammar (llama.cpp's server, hence `llama_cpp` and `openai` with
`grammar_field`) get it through `SamplingConfig.grammar`; the others generate unconstrained.
"""
from __future__ import annotations

import difflib
import io
import tokenize

from agent.delta import indentation, parser_reads_specially
from evaluator.parse_lock import parse_python


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




def _unsafe_lines(parent: str) -> set[int]:
    """0-based lines a line-for-line rewrite cannot reproduce: those that open or close a bracket
    spanning lines (`return nn.Sequential(` ... `)`) and those inside a multi-line string."""
    unsafe: set[int] = set()
    depth_change: dict[int, int] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(parent).readline):
            if tok.type == tokenize.OP and tok.string in "([{)]}":
                row = tok.start[0] - 1
                depth_change[row] = depth_change.get(row, 0) + (1 if tok.string in "([{" else -1)
            elif tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                unsafe.update(range(tok.start[0] - 1, tok.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return unsafe
    return unsafe | {row for row, change in depth_change.items() if change}


def _inert_lines(parent: str) -> set[int]:
    """0-based lines of imports and of bare string statements (docstrings): rewriting them cannot
    change the model, and small models anchored there copied `import torch.nn as nn` unchanged
    (27 of 30 constrained answers of Qwen2.5-Coder-0.5B were that no-op)."""
    import ast
    try:
        tree = parse_python(parent)
    except SyntaxError:
        return set()
    inert: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            inert.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    return inert


def _fixed(line: str) -> bool:
    """A line the grammar's REPLACE must copy as it is: blank, or a `def`/`class` line (the contract's names)."""
    return not line.strip() or line.lstrip().startswith(("def ", "class ", "async def "))


def window_spans(parent: str, max_lines: int = 3) -> list[tuple[int, int, str]]:
    """(first line, line count, text) of each window of 1..max_lines consecutive parent lines that
    starts at exactly one place in the parent text (the applier matches substrings, so a line must
    not hide inside another), has a line the rewrite may change (not only blank and `def` lines,
    whose only rewrite is themselves: a certain no_change), contains no import or docstring
    line, and can be rewritten line for line (no multi-line bracket or string edge inside)."""
    lines = parent.splitlines()
    unsafe = _unsafe_lines(parent) | _inert_lines(parent)
    found: dict[str, tuple[int, int, str]] = {}
    for size in range(1, max_lines + 1):
        for i in range(len(lines) - size + 1):
            window = "\n".join(lines[i:i + size])
            if (window not in found and not all(map(_fixed, lines[i:i + size]))
                    and not any(map(parser_reads_specially, lines[i:i + size]))
                    and not unsafe.intersection(range(i, i + size)) and _positions(parent, window) == 1):
                found[window] = (i, size, window)
    return list(found.values())


def unique_windows(parent: str, max_lines: int = 3) -> list[str]:
    """The texts of window_spans: the SEARCH parts the grammar can offer."""
    return [text for _, _, text in window_spans(parent, max_lines)]


def changed_lines(parent: str, child: str) -> set[int]:
    """0-based parent lines that the edit parent -> child touched: replaced and deleted lines, and
    for an insertion the line it follows (the grammar appends new lines after a window's last)."""
    old, new = parent.splitlines(), child.splitlines()
    touched: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            touched.update(range(i1, i2))
        elif tag == "insert":
            touched.add(max(0, i1 - 1))
    return touched


def open_windows(parent: str, tried: list[str] | tuple[str, ...] = (), *, avoid_after: int = 0, keep: int = 4,
                 max_lines: int = 3, broken: list[str] | tuple[str, ...] = (), broken_weight: int | None = None,
                 repeated: list[str] | tuple[str, ...] = (), repeated_weight: int | None = None) -> list[str]:
    """The SEARCH windows left open for a new edit of `parent`, given the programs already tried
    from it: a window is closed when the edits of its lines reach a load of `avoid_after` (0: none
    closed), an edit that was tried counting 1, one that `broken` names (it failed to parse or
    build) counting `broken_weight` and one that `repeated` names (the model wrote a program already
    known) `repeated_weight` (both default avoid_after: one such edit closes its lines). At least
    `keep` windows stay open, the least loaded first, so a parent whose lines were all tried can
    still be edited. This makes "do not repeat" structural: a model that answered `HIDDEN = 128 ->
    64` ten times in a row although the prompt listed it as tried (small Qwen2.5-Coder,
    benchmarks/results/generator_validity_*) cannot anchor on that line again; and weighing failures
    keeps it on lines whose edits build (width, depth, activation) rather than moving it, once those
    are tried, onto the shape bookkeeping (`in_features *= size`, `width = in_features`), where 15 of
    the 1.5B's 30 answers broke the build. Repeats weigh less than failures: a line the model keeps
    repeating itself on is used up, not harmful, so when windows must be reopened it comes back
    before a line whose edit broke the build (weighing repeats like failures left only bookkeeping
    lines open after 10 proposals, and 18 of 30 first answers broke the build)."""
    spans = window_spans(parent, max_lines)
    if not avoid_after or not (tried or broken or repeated):
        return [text for _, _, text in spans]
    weights = [avoid_after if w is None else w for w in (broken_weight, repeated_weight)]
    counts: dict[int, int] = {}
    for children, w in ((tried, 1), (broken, weights[0]), (repeated, weights[1])):
        for child in children:
            for line in changed_lines(parent, child):
                counts[line] = counts.get(line, 0) + w
    load = {text: max(counts.get(line, 0) for line in range(i, i + size)) for i, size, text in spans}
    opened = [text for _, _, text in spans if load[text] < avoid_after]
    if len(opened) >= min(keep, len(spans)):
        return opened
    order = sorted(spans, key=lambda s: (load[s[2]], s[1], s[0]))      # least loaded, then shortest, then first
    chosen = {text for _, _, text in order[:keep]}
    return [text for _, _, text in spans if text in chosen]


def _is_header(line: str) -> bool:
    """A line that opens a block (`def ...:`, `for ...:`), judged without its comment."""
    code = line.split("#", 1)[0].rstrip()
    return code.endswith(":")


# One logical Python line, kept well-formed: brackets balanced (nested two deep), strings closed,
# never starting with '=', '<' or '>' (so never a block marker such as ======= or >>>>>>> REPLACE),
# no top-level ':' in a statement (a header ends with exactly one), no backticks, an optional
# trailing comment; lengths are bounded so a runaway line ends instead of eating the token budget.
_LINE_RULES = r"""
atom ::= [^ \t()\[\]{}"'`#:\n] | "(" nested ")" | "[" nested "]" | "{" nested "}" | str
lead ::= [^ \t()\[\]{}"'`#:\n=<>] | "(" nested ")" | "[" nested "]" | "{" nested "}" | str
nested ::= ( [^()\[\]{}"'`#\n] | "(" inner ")" | "[" inner "]" | "{" inner "}" | str ){0,60}
inner ::= ( [^()\[\]{}"'`#\n] | str ){0,40}
str ::= "\"" [^"\\\n]{0,60} "\"" | "'" [^'\\\n]{0,60} "'"
expr ::= lead ( atom | [ \t] ){0,80}
comment ::= ( [ \t]* "#" [^\n]{0,60} )?
stmt ::= expr comment "\n"
header ::= expr ":" comment "\n"
header-rest ::= ( [ \t] expr )? ":" comment "\n"
""".strip()


def delta_grammar(parent: str, *, max_search_lines: int = 3, extra_replace_lines: int = 2, max_blocks: int = 1,
                  windows: list[str] | None = None) -> str:
    """The GBNF grammar of 1..`max_blocks` applicable, well-formed SEARCH/REPLACE blocks for `parent`.

    SEARCH is a window that occurs once. REPLACE rewrites it line for line: each line keeps its
    line's indentation and kind (a block header keeps its keyword and ends in ':', `def`/`class`
    lines stay as they are, a statement stays a statement, a blank line stays blank), then up to
    `extra_replace_lines` more statements at the last line's indentation (none after a header). So
    the block structure, and with it Python's indentation rules, cannot break; brackets and strings
    are balanced within each line, and no REPLACE line can be a block marker. Blocks after the first
    may name any window; one that overlaps an earlier block's fails to apply (a typed failure).
    `windows` restricts the SEARCH parts to a subset of unique_windows (open_windows: the lines not
    yet tried); a window that is not one of them raises ValueError."""
    allowed = unique_windows(parent, max_search_lines)
    if windows is not None:
        strays = [w for w in windows if w not in allowed]
        if strays:
            raise ValueError(f"not an anchor of the parent: {strays[0]!r}")
        allowed = [w for w in allowed if w in set(windows)]
    windows = allowed
    if not windows:
        raise ValueError("the parent has no line that occurs exactly once: nothing to anchor an edit on")
    more = f' ( "\\n\\n" block ){{0,{max_blocks - 1}}}' if max_blocks > 1 else ""
    rules = [f"root ::= block{more}",
             'block ::= "<<<<<<< SEARCH\\n" (\n      ' + "\n    | ".join(f"b{i}" for i in range(len(windows)))
             + '\n) ">>>>>>> REPLACE"']
    for i, window in enumerate(windows):
        parts = []
        for line in window.splitlines():
            if not line.strip():
                parts.append('"\\n"')
            elif line.lstrip().startswith(("def ", "class ", "async def ")):
                parts.append(_literal(line + "\n"))  # the contract's names (build_model) stay as they are
            else:
                indent = _literal(indentation(line)) + " " if indentation(line) else ""
                if _is_header(line):  # keeps its keyword: a `for` stays a loop, an `if` a branch
                    keyword = line.split()[0].rstrip(":")
                    parts.append(f'{indent}{_literal(keyword)} header-rest' if keyword.isidentifier() else
                                 f"{indent}header")
                else:
                    parts.append(f"{indent}stmt")
        last = [ln for ln in window.splitlines() if ln.strip()][-1]
        if extra_replace_lines and not _is_header(last):
            indent = _literal(indentation(last)) + " " if indentation(last) else ""
            parts.append(f"( {indent}stmt ){{0,{extra_replace_lines}}}")
        rules.append(f'b{i} ::= {_literal(window + chr(10))} "=======\\n" ' + " ".join(parts))
    return "\n".join(rules) + "\n" + _LINE_RULES + "\n"
