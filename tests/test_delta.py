"""The delta format: parsing, exact and fuzzy apply, full-rewrite extraction, diffs, typed failures."""
from __future__ import annotations

import random

import pytest

from agent.delta import EditFailure, apply_output, check_syntax, extract_full, parse_blocks, unified_diff
from evaluator.tasks import get_task

PARENT = get_task("digits").seed_source()


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_exact_apply_and_diff():
    r = apply_output(PARENT, block("HIDDEN = 128", "HIDDEN = 256"))
    assert r.ok and r.fuzzy == ["exact"]
    assert "HIDDEN = 256" in r.source and "HIDDEN = 128" not in r.source
    diff = unified_diff(PARENT, r.source)
    assert "-HIDDEN = 128" in diff and "+HIDDEN = 256" in diff
    assert diff.count("\n+") == 1 + 1   # the +++ header and one added line


def test_several_blocks_apply_in_order_and_prose_around_is_ignored():
    text = ("Here is my change:\n```\n" + block("HIDDEN = 128", "HIDDEN = 64") + "```\nand\n"
            + block("DEPTH = 2", "DEPTH = 3") + "Done.")
    r = apply_output(PARENT, text)
    assert r.ok and r.blocks == 2
    assert "HIDDEN = 64" in r.source and "DEPTH = 3" in r.source


def test_fuzzy_whitespace_match_reindents_the_replacement():
    search = "for _ in range(DEPTH):\n    layers += [nn.Linear(width, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT)]"
    replace = "for _ in range(DEPTH):\n    layers += [nn.Linear(width, HIDDEN), nn.GELU(), nn.Dropout(DROPOUT)]"
    r = apply_output(PARENT, block(search, replace))   # the model dropped the 4-space function indent
    assert r.ok and r.fuzzy == ["whitespace"]
    assert "        layers += [nn.Linear(width, HIDDEN), nn.GELU(), nn.Dropout(DROPOUT)]" in r.source
    assert check_syntax(r.source) is None


def test_fuzzy_match_tolerates_punctuation_and_spacing():
    search = "        layers += [nn.Linear(width,HIDDEN), nn.ReLU( ), nn.Dropout(DROPOUT),]"
    r = apply_output(PARENT, block(search, search.replace("ReLU( )", "GELU()")))
    assert r.ok and r.fuzzy[0].startswith("tokens:")
    assert "nn.GELU()" in r.source and "nn.ReLU()" not in r.source and check_syntax(r.source) is None


def test_a_misspelt_name_is_not_found_and_named():
    r = apply_output(PARENT, block("    layers.append(nn.Linear(width, num_class))",
                                   "    layers.append(nn.Linear(width, num_classes, bias=False))"))
    assert r.failure is EditFailure.search_not_found
    assert "closest: lines 18-18" in r.detail and "`num_class` where the program has `num_classes`" in r.detail


def test_line_numbers_copied_from_the_prompt_are_stripped():
    r = apply_output(PARENT, block(" 4 | HIDDEN = 128\n 5 | DEPTH = 2", " 4 | HIDDEN = 32\n 5 | DEPTH = 4"))
    assert r.ok and "HIDDEN = 32\nDEPTH = 4\n" in r.source


@pytest.mark.parametrize("text, reason", [
    ("", EditFailure.empty),
    ("   \n\t\n", EditFailure.empty),
    ("I would increase the hidden size to make the model better.", EditFailure.prose_only),
    ("<<<<<<< SEARCH\nHIDDEN = 128\n=======\nHIDDEN = 256\n", EditFailure.unclosed_block),
    ("<<<<<<< SEARCH\nHIDDEN = 128\n", EditFailure.unclosed_block),
    ("<<<<<<< SEARCH\n=======\nX = 1\n>>>>>>> REPLACE\n", EditFailure.malformed_block),
    (">>>>>>> REPLACE\n", EditFailure.malformed_block),
    (block("import tensorflow as tf\nmodel = tf.keras.Sequential()", "x = 1"), EditFailure.search_not_found),
    (block("nn.", "torch.nn."), EditFailure.search_not_found),           # a fragment of lines, not lines
    (block("HIDDEN = 128", "HIDDEN = 128\nDEPTH = 2") + block("DEPTH = 2", "DEPTH = 3"), EditFailure.ambiguous_match),
    (block("width = HIDDEN", "width = HIDDEN +"), EditFailure.syntax_error),
    (block("HIDDEN = 128", "HIDDEN = 128"), EditFailure.no_change),
    ("x" * 30_000, EditFailure.too_long),
])
def test_bad_output_gives_one_typed_reason(text, reason):
    r = apply_output(PARENT, text)
    assert not r.ok and r.failure is reason and r.detail


def test_whitespace_ambiguity_is_refused():
    parent = "def f():\n    x = 1\n    return x\n\n\ndef g():\n    x = 1\n    return x\n"
    r = apply_output(parent, block("x = 1\nreturn x", "x = 2\nreturn x"))
    assert r.failure is EditFailure.ambiguous_match and "2, 7" in r.detail


def test_token_level_ambiguity_is_refused():
    parent = "A = compute(alpha, beta)\nB = 0\nA = compute(alpha, beta)\n"
    r = apply_output(parent, block("A = compute(alpha,beta)", "A = 1"))
    assert r.failure is EditFailure.ambiguous_match and "1, 3" in r.detail


def test_exact_ambiguity_is_refused():
    parent = "x = 1\ny = 2\nx = 1\n"
    r = apply_output(parent, block("x = 1", "x = 3"))
    assert r.failure is EditFailure.ambiguous_match and "lines 1, 3" in r.detail


def test_not_found_detail_names_the_closest_lines():
    r = apply_output(PARENT, block("DEPTH = 2\nDROPOUT = 0.9\nEXTRA = 7", "x = 1"))
    assert r.failure is EditFailure.search_not_found and "closest: lines 5-6" in r.detail
    assert "`EXTRA 7`" in r.detail or "`0.9" in r.detail


def test_truncated_unclosed_answer_is_too_long():
    r = apply_output(PARENT, "<<<<<<< SEARCH\nHIDDEN = 128\n=======\nHIDDEN", truncated=True)
    assert r.failure is EditFailure.too_long


def test_full_mode_takes_the_longest_fence():
    new = PARENT.replace("HIDDEN = 128", "HIDDEN = 96")
    r = apply_output(PARENT, "Sure:\n```python\nx = 1\n```\n```python\n" + new + "```\n", mode="full")
    assert r.ok and r.source == new


@pytest.mark.parametrize("text, reason", [
    ("Make the model deeper.", EditFailure.prose_only),
    ("```python\nimport torch\n", EditFailure.unclosed_block),
    ("```python\ndef build_model(:\n```", EditFailure.syntax_error),
    ("```python\n" + PARENT + "```", EditFailure.no_change),
])
def test_full_mode_failures(text, reason):
    assert apply_output(PARENT, text, mode="full").failure is reason


def test_full_mode_accepts_bare_code():
    assert extract_full("x = 1\n") == "x = 1\n"


def test_random_garbage_never_raises():
    rng = random.Random(0)
    alphabet = list("<>=` \n\tabcSEARCHREPLACE()[]:#'\"0123456789") + ["<<<<<<< SEARCH\n", "=======\n",
                                                                       ">>>>>>> REPLACE\n", "```\n", "HIDDEN = 128\n"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for mode in ("delta", "full"):
            r = apply_output(PARENT, text, mode=mode)
            assert r.ok or isinstance(r.failure, EditFailure)
            if r.ok:
                assert check_syntax(r.source) is None and r.source != PARENT


def test_parse_blocks_keeps_inner_blank_lines():
    (b,) = parse_blocks("<<<<<<< SEARCH\na\n\nb\n=======\nc\n>>>>>>> REPLACE")
    assert b.search == "a\n\nb" and b.replace == "c"


# -- where a block lands: swept over every line of the bundled programs and a DARTS-rendered one --
def _programs() -> dict[str, str]:
    import numpy as np
    from pathlib import Path
    from agent.proposers.darts.genotype import random_genotype, render
    root = Path(__file__).resolve().parents[1] / "evaluator" / "programs"
    out = {p.name: p.read_text() for p in sorted(root.glob("*.py"))}
    out["darts"] = render(random_genotype(np.random.default_rng(0)), channels=8, layers=3)
    return out


PROGRAMS_BY_NAME = _programs()
_NAME_OR_NUMBER = __import__("re").compile(r"(?<![\w.])(?:[^\W\d]\w*|\d[\d_]*\.?\d*(?:[eE][+-]?\d+)?)")


def _unique_lines(source: str) -> list[tuple[int, str]]:
    lines = source.split("\n")
    return [(i, line) for i, line in enumerate(lines) if line.strip() and lines.count(line) == 1
            and not line.lstrip().startswith(("#", '"', "'"))]


@pytest.mark.parametrize("name", sorted(PROGRAMS_BY_NAME))
def test_a_changed_name_or_number_never_lands(name):
    """Every name and number of every line, changed: the block must not apply anywhere (the
    parent keeps its `nn.Linear(64, 100)` when the SEARCH says `nn.Linear(64, 10)`)."""
    parent = PROGRAMS_BY_NAME[name]
    lines = parent.split("\n")
    tried = 0
    for i, line in _unique_lines(parent):
        code = line.split("#")[0]
        for m in _NAME_OR_NUMBER.finditer(code):
            token = m.group()
            changed = token + ("7" if token[0].isdigit() else "_x")
            mutated = line[:m.start()] + changed + line[m.end():]
            for search in (mutated, "\n".join(lines[max(0, i - 1):i] + [mutated] + lines[i + 1:i + 2])):
                r = apply_output(parent, block(search, "PROBE = 1"))
                assert not r.ok and r.failure in (EditFailure.search_not_found, EditFailure.ambiguous_match), \
                    (name, line, mutated, r.fuzzy)
                tried += 1
    assert tried > 20


def test_the_review_example_linear_64_10_does_not_land_on_64_100():
    parent = ("import torch.nn as nn\n\n\ndef build_model(input_shape, num_classes):\n"
              "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.ReLU(),\n"
              "                         nn.Linear(100, num_classes))\n")
    r = apply_output(parent, block("    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(),",
                                   "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),"))
    assert r.failure is EditFailure.search_not_found
    assert "closest: lines 5-5" in r.detail and "SEARCH has `10` where the program has `100`" in r.detail


@pytest.mark.parametrize("name", sorted(PROGRAMS_BY_NAME))
def test_a_single_line_search_never_matches_mid_line(name):
    """A fragment of a line (its head or its tail) is not a line: it never applies."""
    parent = PROGRAMS_BY_NAME[name]
    whole = {" ".join(line.split()) for line in parent.split("\n")}
    tried = 0
    for _, line in _unique_lines(parent):
        spans = [m.span() for m in _NAME_OR_NUMBER.finditer(line.split("#")[0])]
        if len(spans) < 3:
            continue
        for fragment in (line[spans[1][0]:], line[:spans[-2][1]]):
            if " ".join(fragment.split()) in whole:
                continue
            r = apply_output(parent, block(fragment, "PROBE = 1"))
            assert not r.ok, (name, line, fragment, r.fuzzy)
            tried += 1
    assert tried > 5


def _simple_statements(source: str) -> list[int]:
    """0-based line numbers of one-line simple statements inside a block (indented)."""
    import ast
    compound = (ast.If, ast.For, ast.While, ast.With, ast.FunctionDef, ast.ClassDef, ast.Try, ast.AsyncFunctionDef)
    lines = source.split("\n")
    return sorted({n.lineno - 1 for n in ast.walk(ast.parse(source)) if isinstance(n, ast.stmt)
                   and not isinstance(n, compound) and n.lineno == n.end_lineno
                   and lines[n.lineno - 1].startswith(" ") and lines.count(lines[n.lineno - 1]) == 1})


@pytest.mark.parametrize("name", sorted(PROGRAMS_BY_NAME))
def test_replace_lines_follow_the_matched_block_whatever_the_search_indentation(name):
    """SEARCH = a statement at the wrong depth (dedented, 4 less, 4 more); REPLACE = it plus a new
    statement at the SEARCH's depth. The new statement must land in the statement's own block."""
    parent = PROGRAMS_BY_NAME[name]
    lines = parent.split("\n")
    tried = 0
    for i in _simple_statements(parent):
        line = lines[i]
        depth = len(line) - len(line.lstrip())
        for wrong in {0, depth - 4, depth + 4} - {depth}:
            if wrong < 0:
                continue
            stmt = " " * wrong + line.lstrip()
            r = apply_output(parent, block(stmt, f"{stmt}\n{' ' * wrong}PROBE = 1"))
            assert r.ok, (name, line, wrong, r.detail)
            out = r.source.split("\n")
            at = out.index(line)
            assert out[at + 1] == " " * depth + "PROBE = 1", (name, line, wrong)
            assert check_syntax(r.source) is None
            tried += 1
    assert tried >= 2


def test_huge_garbage_and_near_copy_searches_are_refused():
    """The shapes that took minutes before (benchmarks/delta_apply.py times them)."""
    darts = PROGRAMS_BY_NAME["darts"]
    rng = random.Random(1)
    garbage = "\n".join("".join(rng.choice("abcdefgh ()=,.:0123456789") for _ in range(79)) for _ in range(250))
    near = darts.replace("CHANNELS", "CHANNELZ", 1)
    for search in (garbage[:19_900], near[:19_900]):
        r = apply_output(darts, block(search, "x = 1"))
        assert r.failure is EditFailure.search_not_found, r.detail[:200]
