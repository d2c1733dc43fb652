"""CPU inference latency of a trained model, measured in the sandbox right after training.

The fastest of a few timed forward passes (eval mode, no grad) at batch 1 and batch 256 on the
validation inputs, with the job's thread count: the minimum, not the median, because other
processes on a shared machine only ever add time (timeit's rule). Time-boxed: one warm-up
pass, then repeats until `repeats` or `budget_s` per batch size, whichever comes first (at least
3): an MLP costs a few ms, the fashion-mnist CNN 0.2-0.6 s per evaluation (batch 256 is 50-150 ms
there, depending on load). The clock is bound at import, before any candidate code runs, so a
program that replaces time.perf_counter does not move it (a determined program can still forge
in-process numbers; the host checks only that they are finite and positive).
"""
from __future__ import annotations

import math
from time import perf_counter as _clock

import numpy as np

BATCHES = (1, 256)


def _batch(x: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:size] if reps > 1 else x[:size])


def measure_latency(model, x: np.ndarray, *, batches: tuple[int, ...] = BATCHES, warmup: int = 1,
                    repeats: int = 15, budget_s: float = 0.15) -> dict[str, float] | None:
    """{"batch_1_ms": ..., "batch_256_ms": ...}, or None when the model cannot run the batch."""
    import torch

    out: dict[str, float] = {}
    model.eval()
    try:
        with torch.no_grad():
            for size in batches:
                xb = torch.as_tensor(_batch(x, size))
                for _ in range(warmup):
                    model(xb)
                times: list[float] = []
                start = _clock()
                while len(times) < repeats and (len(times) < 3 or _clock() - start < budget_s):
                    t0 = _clock()
                    model(xb)
                    times.append(_clock() - t0)
                out[f"batch_{size}_ms"] = float(min(times) * 1000.0)
    except Exception:  # noqa: BLE001 - the program's own code; its predictions already succeeded
        return None
    return out


def valid_latency(value) -> dict[str, float] | None:
    """The worker's latency report if it is a dict of finite positive numbers, else None."""
    if not isinstance(value, dict) or not value:
        return None
    try:
        clean = {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        return None
    if any(not math.isfinite(v) or v <= 0 for v in clean.values()):
        return None
    return clean
