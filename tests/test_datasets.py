"""Loaders: fixed, disjoint, reproducible splits; user paths in the same format; clear errors."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from evaluator.datasets import FASHION_MNIST_DIR, load_splits
from evaluator.failures import ConfigError
from evaluator.tasks import TASKS, get_task


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_splits_are_reproducible_and_disjoint(name):
    a = load_splits(name, None, split_seed=0, val_fraction=0.2)
    b = load_splits(name, None, split_seed=0, val_fraction=0.2)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    train_rows = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in train_rows for r in a.x_val)
    assert a.num_classes == 10 and len(a.y_test) > 0


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="apt package dataset-fashion-mnist not installed")
def test_fashion_mnist_full_size():
    s = load_splits("fashion-mnist", None, split_seed=0, val_fraction=5000 / 60000)
    assert len(s.y_train) + len(s.y_val) == 60000 and len(s.y_test) == 10000
    assert s.input_shape == (1, 28, 28)


def _write_idx(path, array):
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_loader_takes_a_user_idx_directory(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (200, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(200) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (50, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(50) % 10)
    s = load_splits("fashion-mnist", str(tmp_path), split_seed=0, val_fraction=0.1)
    assert len(s.y_train) == 180 and len(s.y_val) == 20 and len(s.y_test) == 50


def test_digits_loader_takes_a_user_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.rand(100, 1, 8, 8), y=np.arange(100) % 10)
    s = load_splits("digits", str(tmp_path / "d.npz"), split_seed=0, val_fraction=0.2)
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 100


def test_bad_paths_and_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no dataset"):
        load_splits("fashion-mnist", str(tmp_path / "missing"), split_seed=0, val_fraction=0.1)
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_splits("cifar-1000", None, split_seed=0, val_fraction=0.1)
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("nope")
    (tmp_path / "t.yaml").write_text("name: x\ndataset: digits\nbudget: {epochs: -1}\n")
    with pytest.raises(ConfigError, match="invalid task"):
        get_task(str(tmp_path / "t.yaml"))


def test_every_bundled_task_has_a_seed_program():
    for task in TASKS.values():
        assert "def build_model" in task.seed_source()
