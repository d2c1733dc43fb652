"""Every broken program gets one typed failure reason, through the real worker in a subprocess."""
from __future__ import annotations

import pytest

from evaluator.failures import FailureReason
from tests.conftest import program

CASES = [
    ("not_parsing.py", FailureReason.syntax_error, "line 1"),
    ("no_build_model.py", FailureReason.missing_build_model, "build_model"),
    ("import_error.py", FailureReason.import_error, "definitely_not_a_module_xyz"),
    ("wrong_shape.py", FailureReason.shape_mismatch, "expected (2, 10)"),
    ("raises_at_build.py", FailureReason.build_error, "the architect went home"),
    ("raises_at_forward.py", FailureReason.forward_error, "program.py line"),
    ("nan_output.py", FailureReason.nan_output, "non-finite"),
    ("too_many_params.py", FailureReason.too_many_params, "> cap"),
    ("returns_not_module.py", FailureReason.build_error, "not a torch.nn.Module"),
]


@pytest.mark.parametrize("name,reason,detail", CASES, ids=[c[0] for c in CASES])
def test_broken_program_gets_typed_reason(digits_evaluator, name, reason, detail):
    result = digits_evaluator.evaluate(program(name))
    assert not result.ok
    assert result.reason == reason, result.detail
    assert detail in result.detail


def test_good_program_after_failures_still_evaluates(digits_evaluator):
    result = digits_evaluator.evaluate(program("tiny_linear.py"))
    assert result.ok, result.detail
    assert result.val_probs.shape[0] == 2
    assert result.statistics.accuracy > 0.8  # digits is easy even for a linear model
    assert result.statistics.kv_residual < 1e-9


def test_forged_predictions_are_rejected(digits_evaluator, tmp_path):
    """A program that writes a verdict and predictions of the wrong shape itself is caught by the host."""
    forge = '''
import json, os, numpy as np
os.makedirs("out", exist_ok=True)
np.savez("out/predictions.npz", val=np.ones((2, 3, 10)), test=np.ones((2, 3, 10)))
json.dump({"status": "ok", "param_count": 1}, open("out/result.json", "w"))
os._exit(0)
'''
    result = digits_evaluator.evaluate(forge)
    assert not result.ok and result.reason == FailureReason.invalid_output


def test_feature_fraction_out_of_range(digits_evaluator):
    result = digits_evaluator.evaluate("FEATURE_FRACTION = 1.5\n" + program("tiny_linear.py"))
    assert result.reason == FailureReason.bad_hyperparameter


def test_timeout_is_typed(digits_task, cache_dir):
    from evaluator.evaluate import Evaluator
    from sandbox import Limits, make_sandbox
    slow = Evaluator(task=digits_task, sandbox=make_sandbox("subprocess"), limits=Limits(timeout_s=3),
                     cache_dir=cache_dir)
    result = slow.evaluate("import time\ntime.sleep(60)\n" + program("tiny_linear.py"))
    assert result.reason == FailureReason.timeout
    assert result.wall_seconds < 20


@pytest.mark.parametrize("name,reason", [("tiny_linear.py", None), ("wrong_shape.py", FailureReason.shape_mismatch),
                                         ("not_parsing.py", FailureReason.syntax_error)])
def test_build_only_check(digits_evaluator, name, reason):
    result = digits_evaluator.check(program(name))
    assert result.reason == reason
    assert result.ok == (reason is None)
    if result.ok:
        assert result.param_count == 64 * 10 + 10 and result.val_probs is None
