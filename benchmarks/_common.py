"""Helpers shared by benchmarks: in-process training with exactly the worker's code path."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from evaluator.task_data import TaskData, materialize
from evaluator.tasks import TaskConfig
from evaluator.training import Budget, check_model, predict_probabilities, train_instance
from evaluator.worker import feature_fraction, feature_view, load_program

RESULTS = Path(__file__).parent / "results"


def load_inputs(task: TaskConfig) -> tuple[TaskData, dict[str, np.ndarray]]:
    data = materialize(task)
    arrays = {name: np.load(data.inputs_dir / f"{name}.npy") for name in ("x_train", "y_train", "x_val", "x_test")}
    return data, arrays


def train_program(source: str, task: TaskConfig, data: TaskData, arrays: dict, seeds: list[int]):
    """K instances of `source`, as the sandbox worker would train them (same functions, in-process).
    Returns (val probs [K,n,C], test probs [K,n,C], training seconds per instance)."""
    module = load_program(source)
    fraction = feature_fraction(module)
    budget = Budget(**task.budget.model_dump())
    n = budget.train_subset or len(arrays["y_train"])
    x, y = arrays["x_train"][:n], arrays["y_train"][:n]
    val, test, seconds = [], [], []
    for seed in seeds:
        torch.manual_seed(seed)
        view, shape = feature_view(fraction, data.input_shape, seed)
        model = module.build_model(shape, data.num_classes)
        check_model(model, view(x[:2]), data.num_classes, task.max_params)
        start = time.perf_counter()
        train_instance(model, view(x), y, budget, seed)
        seconds.append(time.perf_counter() - start)
        val.append(predict_probabilities(model, view(arrays["x_val"])))
        test.append(predict_probabilities(model, view(arrays["x_test"])))
    return np.stack(val), np.stack(test), seconds


def environment() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "cpus": __import__("os").cpu_count()}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2, default=float))
    return path


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [[f"{c:.4f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
