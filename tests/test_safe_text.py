"""Candidate and model text never reaches the terminal raw: every character that can control a
terminal (escape sequences, C0/C1 controls, bidi overrides, invisible format characters) is made
visible, in every command that shows such text."""
from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata

import pytest

from agent.cli import main
from agent.safe_text import SafeFormatter, safe_line, safe_text
from agent.store import RunStore

# What a terminal acts on, defined from the Unicode database (not from the sanitiser's own table).
DANGEROUS = {c for c in range(sys.maxunicode + 1)
             if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp", "Cs") and chr(c) not in "\n\t"}
HOSTILE = ("\x1b[2J\x1b[H"                      # clear screen, cursor home
           "\x1b]0;pwned\x07"                   # window title
           "\x1b]52;c;cm0gLXJmIH4K\x07"         # OSC-52 clipboard write
           "\x1bP+q696e\x1b\\"                  # DCS
           "\x9b31m\x90x\x9c"                   # 8-bit CSI / DCS / ST
           "ok\rFAKE\x08\x7f\x00"              # overwrite the line
           "if x\u202e} {\u2066admin\u2069\u200b\ufeff\u2028")  # Trojan Source, invisibles


def _unsafe_chars(text: str) -> set[str]:
    return {ch for ch in text if ord(ch) in DANGEROUS}


def test_every_dangerous_code_point_is_made_visible():
    text = "".join(chr(c) for c in sorted(DANGEROUS))
    out = safe_text(text)
    assert not _unsafe_chars(out)
    assert "\x1b" not in out and "␛" in out and "<U+202E>" in out and "\\x9b" in out


@pytest.mark.parametrize("text", ["plain ASCII: def build_model(input_shape, num_classes):\n\treturn x",
                                  "D̂ = ½·mean‖f1−f2‖², ρ σ² → ★ ✓ 中文 ünïcödé 🙂",
                                  "multi\nline\n\n  indented\ttab\n"])
def test_printable_text_is_unchanged(text):
    assert safe_text(text) == text


def test_hostile_text_shows_every_sequence_readably():
    out = safe_text(HOSTILE)
    assert not _unsafe_chars(out)
    assert "␛]52;c;cm0gLXJmIH4K␇" in out and "␛[2J" in out and "ok␍FAKE" in out and "<U+202E>" in out


def test_crlf_becomes_newline_and_lone_cr_is_shown():
    assert safe_text("a\r\nb\rc") == "a\nb␍c"


def test_safe_line_is_one_line_and_cut():
    out = safe_line("first\nsecond\tthird\x1b[2J", limit=12)
    assert "\n" not in out and "\t" not in out and len(out) == 12 and out.endswith("…")
    assert safe_line(None) == "" and safe_text(None) == ""


def test_logging_formatter_sanitises_arguments():
    record = logging.LogRecord("ensnas", logging.INFO, __file__, 1, "#%d: %s", (3, HOSTILE), None)
    assert not _unsafe_chars(SafeFormatter("%(message)s").format(record))


def test_cli_error_messages_are_sanitised(tmp_path, capsys, cache_dir, monkeypatch):
    """`ensnas evaluate` on a program whose exception message carries escape sequences."""
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    program = tmp_path / "hostile.py"
    program.write_text(f"def build_model(input_shape, num_classes):\n    raise RuntimeError({HOSTILE!r})\n")
    code = main(["evaluate", str(program), "--task", "digits", "--sandbox", "subprocess", "--epochs", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "[build_error]" in captured.err and "␛]52" in captured.err
    assert not _unsafe_chars(captured.out + captured.err)


@pytest.fixture()
def hostile_run(tmp_path):
    """A run directory whose stored candidate text (source, reason, detail, proposer) is hostile."""
    run_dir = tmp_path / "run"
    store = RunStore(run_dir, create=True)
    store.set_meta("config", {"task": "digits", "cycles": 1, "proposers": [{"name": "llm"}]})
    seed_src = "def build_model(input_shape, num_classes):\n    return None\n"
    with store.transaction() as db:
        seed = store.insert_candidate(db, cycle=0, proposer="seed", parent_id=None, source=seed_src, diff="",
                                      status="seed")
        store.insert_candidate(db, cycle=1, proposer="llm", parent_id=seed, source=seed_src + f"# {HOSTILE}\n",
                               diff="", status="failed", reason=f"build_error {HOSTILE}", detail=HOSTILE)
        store.insert_candidate(db, cycle=1, proposer="llm", parent_id=seed, source=None, diff="",
                               status="proposal_failed", reason=HOSTILE, detail=f"model said: {HOSTILE}")
        store.set_state("incumbent", seed, db)
        store.set_state("seed_id", seed, db)
    store.close()
    return run_dir


@pytest.mark.parametrize("argv", [["status"], ["show"], ["show", "2"], ["show", "3"], ["show", "2", "--json"],
                                  ["diff", "2", "--color", "always"], ["diff", "2", "--color", "never"],
                                  ["lineage", "--all"]])
def test_inspect_commands_never_print_raw_candidate_text(hostile_run, capsys, argv):
    code = main([argv[0], str(hostile_run), *argv[1:]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = captured.out + captured.err
    ours = re.sub(r"\x1b\[(?:0|1|31|32|36)m", "", text)   # the diff viewer's own colours
    assert not _unsafe_chars(ours), sorted(_unsafe_chars(ours))
    if argv[-1] == "--json":
        assert json.loads(captured.out)["detail"] == HOSTILE   # stored raw, shown escaped
    elif argv[0] in ("show", "diff") and len(argv) > 1:
        assert "␛]52;c;" in text                              # shown, not hidden
