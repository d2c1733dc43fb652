"""`ensnas evaluate` and `ensnas compare` end to end: tables on success, one clear line on failure."""
from __future__ import annotations

import json

import pytest

from agent.cli import main
from tests.conftest import PROGRAMS


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_prints_statistics(capsys, cache_dir, monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    code, out, err = _run(capsys, "evaluate", str(PROGRAMS / "tiny_linear.py"), "--task", "digits",
                          "--sandbox", "subprocess", "--epochs", "2")
    assert code == 0, err
    for needle in ("E_a (mean Brier)", "D̂", "Krogh–Vedelsby residual", "E_ens predicted (M=5)"):
        assert needle in out


@pytest.mark.parametrize("name,reason", [("not_parsing.py", "syntax_error"), ("wrong_shape.py", "shape_mismatch"),
                                         ("too_many_params.py", "too_many_params")])
def test_evaluate_failure_is_one_clear_line(capsys, cache_dir, monkeypatch, name, reason):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    code, out, err = _run(capsys, "evaluate", str(PROGRAMS / name), "--task", "digits", "--sandbox", "subprocess")
    assert code == 1
    assert f"[{reason}]" in err and "Traceback" not in err + out


def test_compare_prints_decision_json(capsys, cache_dir, monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    code, out, err = _run(capsys, "compare", str(PROGRAMS / "tiny_linear.py"), str(PROGRAMS / "wide_mlp.py"),
                          "--task", "digits", "--sandbox", "subprocess", "--members", "10", "--epochs", "3", "--json")
    assert code == 0, err
    decision = json.loads(out)["decision"]
    assert decision["members"] == 10
    assert decision["lower_bound"] <= decision["predicted_improvement"] <= decision["upper_bound"]
    assert decision["predicted_improvement"] == pytest.approx(decision["delta"] - decision["threshold"])


def test_missing_program_and_unknown_task_exit_2(capsys):
    assert _run(capsys, "evaluate", "/nonexistent.py", "--task", "digits", "--sandbox", "subprocess")[0] == 2
    code, _, err = _run(capsys, "evaluate", str(PROGRAMS / "tiny_linear.py"), "--task", "imagenet-22k")
    assert code == 2 and "unknown task" in err
