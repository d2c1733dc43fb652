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


def test_fuzzy_similar_match_above_threshold():
    r = apply_output(PARENT, block("    layers.append(nn.Linear(width, num_class))",
                                   "    layers.append(nn.Linear(width, num_classes, bias=False))"))
    assert r.ok and r.fuzzy[0].startswith("similar:")
    assert "bias=False" in r.source


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
    (block("nn.", "torch.nn."), EditFailure.ambiguous_match),
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


def test_similarity_ambiguity_is_refused():
    parent = "A = compute(alpha, beta)\nB = 0\nC = compute(alpha, beta)\n"
    r = apply_output(parent, block("Z = compute(alpha, beta)", "Z = 1"), threshold=0.8)
    assert r.failure is EditFailure.ambiguous_match


def test_not_found_detail_names_the_closest_lines():
    r = apply_output(PARENT, block("DEPTH = 2\nDROPOUT = 0.9\nEXTRA = 7", "x = 1"))
    assert r.failure is EditFailure.search_not_found and "closest: lines 5-7" in r.detail


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
