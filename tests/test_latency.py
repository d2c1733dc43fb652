"""CPU inference latency: measured in the sandbox with the evaluation, validated on the host."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluator.latency import measure_latency, valid_latency
from tests.conftest import program


def test_latency_grows_with_batch_and_with_model_size(one_torch_thread):
    x = np.random.default_rng(0).normal(size=(50, 64)).astype(np.float32)  # fewer rows than 256: tiled
    small = torch.nn.Linear(64, 10)
    big = torch.nn.Sequential(torch.nn.Linear(64, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 2048),
                              torch.nn.ReLU(), torch.nn.Linear(2048, 10))
    s, b = measure_latency(small, x), measure_latency(big, x)
    assert set(s) == {"batch_1_ms", "batch_256_ms"}
    assert b["batch_256_ms"] > b["batch_1_ms"]
    assert b["batch_256_ms"] > 5 * s["batch_256_ms"]


def test_a_model_that_cannot_run_the_batch_gives_no_latency_not_a_failure():
    class OnlySmallBatches(torch.nn.Module):
        def forward(self, x):
            if len(x) > 128:
                raise RuntimeError("too big")
            return x
    assert measure_latency(OnlySmallBatches(), np.zeros((10, 3), np.float32)) is None


@pytest.mark.parametrize("value", [None, {}, {"batch_1_ms": float("nan")}, {"batch_1_ms": -1.0},
                                   {"batch_1_ms": "fast"}, [1.0], {"batch_1_ms": 0.0}])
def test_host_rejects_malformed_latency(value):
    assert valid_latency(value) is None


def test_host_keeps_a_valid_report():
    assert valid_latency({"batch_1_ms": 0.1, "batch_256_ms": 3}) == {"batch_1_ms": 0.1, "batch_256_ms": 3.0}


def test_evaluation_reports_latency_from_the_sandbox_even_when_the_program_stops_the_clock(digits_evaluator):
    result = digits_evaluator.evaluate(program("wide_mlp.py"))
    assert result.ok, result.detail
    lat = result.latency_ms
    assert lat is not None and all(math.isfinite(v) and v > 0 for v in lat.values())
    assert lat["batch_256_ms"] > lat["batch_1_ms"]
    frozen = "import time\ntime.perf_counter = lambda: 0.0\n" + program("wide_mlp.py")
    forged = digits_evaluator.evaluate(frozen)
    assert forged.ok and forged.latency_ms is not None and forged.latency_ms["batch_256_ms"] > 0
