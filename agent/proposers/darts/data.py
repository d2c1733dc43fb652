"""Task arrays for the in-process search and retraining.

The search reads only the task's training split (inputs + training labels from the
materialised cache) and splits it again into search-train (weights) and search-val (alpha).
Selection uses the task's validation split. The test split is read only by `load_test`, which
reporting code (the benchmark) calls after the search is over.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.proposers.darts.config import SearchData
from evaluator.parse_lock import load_npy
from evaluator.task_data import TaskData, materialize
from evaluator.tasks import TaskConfig


@dataclass(frozen=True)
class TaskArrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int


@dataclass(frozen=True)
class SearchArrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def load_task(task: TaskConfig, cache_dir: Path | None = None) -> TaskArrays:
    data: TaskData = materialize(task, cache_dir)
    return TaskArrays(x_train=load_npy(data.inputs_dir / "x_train.npy"), y_train=load_npy(data.inputs_dir / "y_train.npy"),
                      x_val=load_npy(data.inputs_dir / "x_val.npy"), y_val=data.y_val,
                      input_shape=data.input_shape, num_classes=data.num_classes)


def load_test(task: TaskConfig, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Test inputs and labels, for reporting after the search only."""
    data = materialize(task, cache_dir)
    return load_npy(data.inputs_dir / "x_test.npy"), data.y_test


def subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A reproducible random subset of n examples (all of them when n is None or larger)."""
    if n is None or n >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng(seed).choice(len(y), size=n, replace=False))
    return x[idx], y[idx]


def search_split(arrays: TaskArrays, cfg: SearchData, seed: int) -> SearchArrays:
    """search-train / search-val from (a subset of) the task's training split."""
    x, y = subset(arrays.x_train, arrays.y_train, cfg.train_subset, seed)
    order = np.random.default_rng(seed + 1).permutation(len(y))
    cut = int(round(len(y) * (1 - cfg.search_val_fraction)))
    tr, va = order[:cut], order[cut:]
    return SearchArrays(x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va])


def batches(n: int, batch_size: int, generator: np.random.Generator):
    """Shuffled index batches covering n examples once."""
    order = generator.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i: i + batch_size]
