"""Constrained delta decoding (agent.delta_grammar): every anchor the grammar offers really applies,
and the bundled model decoding under it only produces blocks that apply."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.delta import EditFailure, apply_output
from agent.delta_grammar import delta_grammar, unique_windows
from agent.generators.base import GeneratorConfig, SamplingConfig, make_generator
from evaluator.failures import ConfigError

PROGRAMS = sorted((Path(__file__).parents[1] / "evaluator" / "programs").glob("*.py"))
FORMAT_FAILURES = {EditFailure.empty, EditFailure.prose_only, EditFailure.unclosed_block, EditFailure.malformed_block,
                   EditFailure.search_not_found, EditFailure.ambiguous_match}


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_every_anchor_applies_exactly_once(path):
    """Brute force over the grammar's SEARCH alternatives: each one, with an edited replacement,
    goes through the real applier as an exact, unambiguous match at the place it came from."""
    parent = path.read_text()
    windows = unique_windows(parent)
    assert windows, f"{path.name} offers no anchor"
    for window in windows:
        edited = window + "  # edited" if window.strip() else window
        answer = f"<<<<<<< SEARCH\n{window}\n=======\n{edited}\n>>>>>>> REPLACE"
        result = apply_output(parent, answer, mode="delta")
        assert result.ok or result.failure == EditFailure.syntax_error, (window, result.failure, result.detail)
        assert result.fuzzy == ["exact"] or result.failure == EditFailure.syntax_error
        if result.ok:
            start = parent.index(window)
            assert result.source == parent[:start] + edited + parent[start + len(window):]


@pytest.mark.parametrize("name", ["mlp.py", "tabular_mlp.py"])
def test_line_for_line_rewrites_keep_the_program_parsing(name):
    """What the grammar lets REPLACE be, at its simplest: each line keeps its indentation and kind
    (headers keep their keyword, here the whole header; statements -> `pass`; blank -> blank). For
    every anchor the program must still parse: the block structure cannot break."""
    import ast

    from agent.delta import indentation
    from agent.delta_grammar import _is_header
    parent = (PROGRAMS[0].parent / name).read_text()
    for window in unique_windows(parent):
        rewritten = "\n".join("" if not ln.strip() else (ln if _is_header(ln) else indentation(ln) + "pass")
                               for ln in window.splitlines())
        answer = f"<<<<<<< SEARCH\n{window}\n=======\n{rewritten}\n>>>>>>> REPLACE"
        result = apply_output(parent, answer, mode="delta")
        assert result.ok or result.failure == EditFailure.no_change, (window, result.failure, result.detail)
        ast.parse(result.source or parent)


def test_lines_that_a_rewrite_cannot_reproduce_are_not_anchors():
    parent = 'X = 1\nmodel = f(\n    a,\n    b,\n)\nDOC = """one\ntwo"""\n'
    windows = unique_windows(parent, max_lines=1)
    assert {"X = 1", "    a,", "    b,"} <= set(windows)
    assert not {"model = f(", ")", 'DOC = """one', 'two"""'} & set(windows)


def test_repeated_lines_are_never_anchors():
    parent = "x = 1\n    )\ny = 2\n    )\nz = 3\n"
    windows = unique_windows(parent, max_lines=1)
    assert "    )" not in windows and {"x = 1", "y = 2", "z = 3"} <= set(windows)
    # a line hiding inside another is not unique either: the applier matches substrings
    assert "x" not in unique_windows("x\nx = 1\n", max_lines=1)
    assert unique_windows("a\na\na\n", max_lines=2) == []  # "a\na" starts at two (overlapping) places
    with pytest.raises(ValueError, match="occurs exactly once"):
        delta_grammar("a\na\n", max_search_lines=1)


def test_a_grammar_is_refused_by_a_server_not_marked_as_taking_one():
    gen = make_generator(GeneratorConfig(backend="openai", base_url="http://127.0.0.1:9/v1"))
    assert not gen.accepts_grammar
    with pytest.raises(ConfigError, match="grammar"):
        gen._body([{"role": "user", "content": "hi"}], SamplingConfig(grammar='root ::= "a"'))
    marked = make_generator(GeneratorConfig(backend="openai", base_url="http://127.0.0.1:9/v1", grammar_field=True))
    assert marked._body([], SamplingConfig(grammar='root ::= "a"'))["grammar"] == 'root ::= "a"'


@pytest.mark.slow
def test_bundled_model_under_the_grammar_only_writes_blocks_that_apply():
    """The real SmolLM2-135M through the private llama.cpp server: without the grammar most of its
    answers fail on form (benchmarks/results/generator_validity.json); under it none may."""
    parent = PROGRAMS[0].read_text()
    gen = make_generator(GeneratorConfig(backend="llama_cpp", model="smollm2-135m"))
    try:
        assert gen.accepts_grammar
        prompt = [{"role": "system", "content": "You edit PyTorch programs with SEARCH/REPLACE blocks."},
                  {"role": "user", "content": f"Program:\n{parent}\nMake one small change that could improve "
                                              "accuracy. Answer with one SEARCH/REPLACE block."}]
        grammar = delta_grammar(parent)
        finished = 0
        for seed in range(4):
            answer = gen.generate(prompt, sampling=SamplingConfig(max_new_tokens=384, temperature=0.7, seed=seed,
                                                                  grammar=grammar))[0]
            if answer.truncated:  # the grammar cannot stop a model that runs out of tokens mid-line
                continue
            finished += 1
            result = apply_output(parent, answer.text, mode="delta", truncated=answer.truncated)
            assert result.failure not in FORMAT_FAILURES, (result.failure, result.detail, answer.text)
            assert result.ok or result.failure in (EditFailure.syntax_error, EditFailure.no_change)
        assert finished >= 2
    finally:
        gen.close()


# -- a GBNF recogniser for the subset delta_grammar writes (no recursion): the grammar as a regex ------

def _gbnf_regex(grammar: str) -> "re.Pattern[str]":
    import re
    rules: dict[str, str] = {}
    current = None
    for line in grammar.splitlines():
        if "::=" in line and re.match(r"^[a-z0-9-]+ ::=", line):
            current, _, body = line.partition(" ::= ")
            rules[current] = body
        elif current and line.strip():
            rules[current] += " " + line.strip()
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "[": "[", "]": "]"}
    cache: dict[str, str] = {}

    def expr(name: str) -> str:
        if name not in cache:
            cache[name] = "(?:" + convert(rules[name]) + ")"
        return cache[name]

    def convert(body: str) -> str:
        out, i = [], 0
        while i < len(body):
            c = body[i]
            if c.isspace():
                i += 1
            elif c == '"':
                j, lit = i + 1, []
                while body[j] != '"':
                    if body[j] == "\\":
                        lit.append(escapes[body[j + 1]])
                        j += 2
                    else:
                        lit.append(body[j])
                        j += 1
                out.append(re.escape("".join(lit)))
                i = j + 1
            elif c == "[":
                j, cls = i + 1, []
                while body[j] != "]":
                    if body[j] == "\\":
                        cls.append(re.escape(escapes[body[j + 1]]))
                        j += 2
                    else:
                        cls.append(body[j] if body[j] == "^" and j == i + 1 else re.escape(body[j]))
                        j += 1
                out.append("[" + "".join(cls) + "]")
                i = j + 1
            elif c in "()|?*+":
                out.append({"(": "(?:"}.get(c, c))
                i += 1
            elif c == "{":
                j = body.index("}", i)
                out.append(body[i:j + 1])
                i = j + 1
            else:
                m = re.match(r"[a-z0-9-]+", body[i:])
                out.append(expr(m.group()))
                i += m.end()
        return "".join(out)

    return re.compile(expr("root"), re.DOTALL)


SMALL = "X = 1\nY = 2\n\n\ndef f(a):\n    return a * X\n"


def test_recogniser_accepts_what_the_grammar_is_for():
    pattern = _gbnf_regex(delta_grammar(SMALL, max_blocks=2))
    assert pattern.fullmatch("<<<<<<< SEARCH\nX = 1\n=======\nX = 3\n>>>>>>> REPLACE")
    assert pattern.fullmatch("<<<<<<< SEARCH\n    return a * X\n=======\n    return a * X * 2\n    b = 1\n"
                             ">>>>>>> REPLACE")
    assert pattern.fullmatch("<<<<<<< SEARCH\nX = 1\n=======\nX = 3\n>>>>>>> REPLACE\n\n"
                             "<<<<<<< SEARCH\nY = 2\n=======\nY = 4\n>>>>>>> REPLACE")
    assert not pattern.fullmatch("<<<<<<< SEARCH\nZ = 1\n=======\nZ = 3\n>>>>>>> REPLACE")   # not in the parent
    assert not pattern.fullmatch("<<<<<<< SEARCH\n    return a * X\n=======\nreturn a\n>>>>>>> REPLACE")  # indent


@pytest.mark.parametrize("marker", ["=======", ">>>>>>> REPLACE", "<<<<<<< SEARCH", "==", ">>> x", "<b"])
@pytest.mark.parametrize("indent", ["", "    "])
def test_no_replace_line_can_be_a_block_marker(marker, indent):
    """The defect: REPLACE could be `=======` or `>>>>>>> REPLACE`, so a model closed the block early
    and kept writing. No line of a REPLACE part (rewritten or added) may start with = < >."""
    pattern = _gbnf_regex(delta_grammar(SMALL, max_blocks=2))
    window = "X = 1" if not indent else "    return a * X"
    for replace in (f"{indent}{marker}", f"{window}\n{indent}{marker}"):
        answer = f"<<<<<<< SEARCH\n{window}\n=======\n{replace}\n>>>>>>> REPLACE"
        assert not pattern.fullmatch(answer), replace


def test_every_answer_the_grammar_admits_for_a_window_applies():
    """Sample answers the recogniser accepts (each window, rewritten with a changed constant) and
    apply them: the grammar never admits an answer that fails on form."""
    pattern = _gbnf_regex(delta_grammar(SMALL))
    for window in unique_windows(SMALL):
        replace = "\n".join(ln.replace("1", "7").replace("2", "9") for ln in window.splitlines())
        answer = f"<<<<<<< SEARCH\n{window}\n=======\n{replace}\n>>>>>>> REPLACE"
        if pattern.fullmatch(answer):
            result = apply_output(SMALL, answer, mode="delta")
            assert result.failure not in FORMAT_FAILURES, (answer, result.failure)


def test_imports_and_docstrings_are_not_anchors():
    """Rewriting them cannot change the model: the 0.5B model anchored on `import torch.nn as nn` and
    copied it unchanged in 27 of 30 constrained answers (a no_change failure every time)."""
    parent = '"""Doc."""\nimport torch.nn as nn\nfrom torch import nn as n2\n\nX = 1\n\n\ndef f():\n    """Inner."""\n    return X\n'
    windows = unique_windows(parent)
    assert windows and not [w for w in windows if "import" in w or '"""' in w]
    assert "X = 1" in windows and "    return X" in windows
    for path in PROGRAMS:
        assert not [w for w in unique_windows(path.read_text()) if w.lstrip().startswith(("import ", "from "))]


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_no_anchor_is_a_certain_no_change(path):
    """A window of only blank and `def`/`class` lines can only be rewritten as itself (the grammar
    copies those lines): offering it invites a no_change. None is offered."""
    from agent.delta_grammar import _fixed
    for window in unique_windows(path.read_text()):
        assert not all(_fixed(line) for line in window.splitlines()), window


def test_changed_lines_of_replacements_deletions_and_insertions():
    from agent.delta_grammar import changed_lines
    parent = "a = 1\nb = 2\nc = 3\nd = 4\n"
    assert changed_lines(parent, parent) == set()
    assert changed_lines(parent, parent.replace("b = 2", "b = 5")) == {1}
    assert changed_lines(parent, "a = 1\nc = 3\nd = 4\n") == {1}
    assert changed_lines(parent, parent.replace("c = 3\n", "c = 3\ne = 5\nf = 6\n")) == {2}  # appended after c
    assert changed_lines(parent, "x = 0\n" + parent) == {0}


@pytest.mark.parametrize("avoid_after", [1, 2, 3])
@pytest.mark.parametrize("keep", [1, 4, 100])
def test_open_windows_close_tried_lines_and_keep_the_least_tried(avoid_after, keep):
    """Brute force over random sets of tried edits of the seed program: an open window has no line
    changed avoid_after times or more, unless fewer than `keep` would be open; then exactly the
    `keep` least-tried windows are, and a window is never open while a less tried one is closed."""
    import random

    from agent.delta_grammar import changed_lines, open_windows, window_spans
    parent = (PROGRAMS[0].parent / "mlp.py").read_text()
    spans = window_spans(parent)
    rng = random.Random(avoid_after * 100 + keep)
    for _ in range(40):
        tried = []
        for _ in range(rng.randrange(0, 12)):
            i, size, text = rng.choice(spans)
            tried.append(parent.replace(text, text + "  # edited", 1))
        counts: dict[int, int] = {}
        for child in tried:
            for line in changed_lines(parent, child):
                counts[line] = counts.get(line, 0) + 1
        load = {text: max(counts.get(j, 0) for j in range(i, i + size)) for i, size, text in spans}
        opened = open_windows(parent, tried, avoid_after=avoid_after, keep=keep)
        assert opened and set(opened) <= set(load)
        fresh = [t for t in load if load[t] < avoid_after]
        if len(fresh) >= min(keep, len(spans)):
            assert set(opened) == set(fresh)
        else:
            assert len(opened) == min(keep, len(spans))
            closed = [load[t] for t in load if t not in opened]
            assert not closed or max(load[t] for t in opened) <= min(closed)
        assert delta_grammar(parent, windows=opened).count('"=======\\n"') == len(opened)


def test_grammar_windows_must_be_anchors():
    parent = (PROGRAMS[0].parent / "mlp.py").read_text()
    with pytest.raises(ValueError, match="not an anchor"):
        delta_grammar(parent, windows=["HIDDEN = 129"])
    assert delta_grammar(parent, windows=unique_windows(parent)) == delta_grammar(parent)


@pytest.mark.parametrize("weight", [0, 1, 3, 7])
def test_open_windows_weigh_broken_edits(weight):
    """Brute force: with edits that broke the build weighing `weight`, repeats 2 and tried ones 1, a window is
    open exactly when its most loaded line is below avoid_after (keep permitting), and otherwise the
    open ones are the least loaded."""
    import random

    from agent.delta_grammar import changed_lines, open_windows, window_spans
    parent = (PROGRAMS[0].parent / "mlp.py").read_text()
    spans = window_spans(parent)
    rng = random.Random(weight)
    for _ in range(40):
        edits = []        # (child, kind): 0 tried, 1 broken, 2 repeated
        for _ in range(rng.randrange(1, 10)):
            i, size, text = rng.choice(spans)
            edits.append((parent.replace(text, text + "  # edited", 1), rng.choice([0, 0, 1, 2])))
        weights = {0: 1, 1: weight, 2: 2}
        counts: dict[int, int] = {}
        for child, kind in edits:
            for line in changed_lines(parent, child):
                counts[line] = counts.get(line, 0) + weights[kind]
        load = {text: max(counts.get(j, 0) for j in range(i, i + size)) for i, size, text in spans}
        opened = open_windows(parent, [c for c, k in edits if k == 0], avoid_after=3, keep=4,
                              broken=[c for c, k in edits if k == 1], broken_weight=weight,
                              repeated=[c for c, k in edits if k == 2], repeated_weight=2)
        fresh = [t for t in load if load[t] < 3]
        if len(fresh) >= 4:
            assert set(opened) == set(fresh)
        else:
            assert len(opened) == 4
            closed = [load[t] for t in load if t not in opened]
            assert max(load[t] for t in opened) <= min(closed)
