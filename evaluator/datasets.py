"""Offline dataset loaders. Each returns fixed train/val/test splits as numpy arrays.

Every loader accepts a user path to data in the same format, so users with their own copy
(or a bigger dataset of the same layout) point at it instead of the bundled default.
The test split is only read for final reports; the search never scores on it.
"""
from __future__ import annotations

import gzip
import importlib
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from evaluator.failures import ConfigError
from evaluator.parse_lock import load_npz

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # how raw inputs became x_* (evaluator/preprocessing.py); an export's predict(raw) applies it
    preprocessing: dict | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1


def _split_off(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Stratified split of `fraction` of (x, y), reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    take = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        take.append(idx[: max(1, int(round(fraction * len(idx))))])
    held = np.sort(np.concatenate(take))
    keep = np.setdiff1d(np.arange(len(y)), held)
    return x[keep], y[keep], x[held], y[held]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise ConfigError(f"{root} has no {stem}[.gz]; expected the IDX layout of (Fashion-)MNIST")


def load_fashion_mnist(path: str | None, *, split_seed: int, val_fraction: float) -> Splits:
    """Fashion-MNIST (or any MNIST-layout IDX directory), 60k/10k; val carved from train."""
    root = Path(path) if path else FASHION_MNIST_DIR
    if not root.is_dir():
        raise ConfigError(
            f"no dataset at {root}: install it with `apt-get install dataset-fashion-mnist` "
            "or pass data_path pointing at an IDX directory")
    x = _read_idx(_find(root, "train-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = _read_idx(_find(root, "train-labels-idx1-ubyte")).astype(np.int64)
    xt = _read_idx(_find(root, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    yt = _read_idx(_find(root, "t10k-labels-idx1-ubyte")).astype(np.int64)
    mean, std = 0.2860, 0.3530  # Fashion-MNIST train statistics
    x, xt = (x - mean) / std, (xt - mean) / std
    xtr, ytr, xv, yv = _split_off(x, y, val_fraction, split_seed)
    spec = {"kind": "array", "input": "uint8 images [n, 28, 28] (0..255, the IDX layout)", "scale": 1 / 255.0,
            "mean": mean, "std": std, "shape": [1, 28, 28]}
    return Splits(xtr[:, None], ytr, xv[:, None], yv, xt[:, None], yt, spec)


def load_digits(path: str | None, *, split_seed: int, val_fraction: float) -> Splits:
    """sklearn's 8x8 digits (1797 images), or a user .npz with arrays `x` and `y`."""
    if path:
        x, y = _load_xy_npz(path)
        spec = {"kind": "array", "input": f"array x of an .npz like {Path(path).name}, as stored",
                "shape": list(x.shape[1:])}
    else:
        from sklearn.datasets import load_digits as sk_digits
        bunch = sk_digits()
        x, y = bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
        x = x[:, None]
        spec = {"kind": "array", "input": "sklearn.datasets.load_digits().images: [n, 8, 8] counts 0..16",
                "scale": 1 / 16.0, "shape": [1, 8, 8]}
    xr, yr, xt, yt = _split_off(x, y, 0.25, split_seed + 1)
    xtr, ytr, xv, yv = _split_off(xr, yr, val_fraction, split_seed)
    return Splits(xtr, ytr, xv, yv, xt, yt, spec)


def load_mnist1d(path: str | None, *, split_seed: int, val_fraction: float) -> Splits:
    """MNIST-1D generated offline with the package's default arguments (4000/1000), or a
    user pickle of the same dict layout (x, y, x_test, y_test)."""
    if path:
        try:
            with open(path, "rb") as f:
                data = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise ConfigError(f"cannot read MNIST-1D pickle {path}: {exc}") from exc
    else:
        mnist1d_data = importlib.import_module("mnist1d.data")
        args = mnist1d_data.get_dataset_args()
        data = mnist1d_data.make_dataset(args)  # generated locally; get_dataset would download
    try:
        x, y = np.asarray(data["x"], np.float32), np.asarray(data["y"], np.int64)
        xt, yt = np.asarray(data["x_test"], np.float32), np.asarray(data["y_test"], np.int64)
    except KeyError as exc:
        raise ConfigError(f"MNIST-1D data lacks key {exc}") from exc
    xtr, ytr, xv, yv = _split_off(x, y, val_fraction, split_seed)
    spec = {"kind": "array", "input": f"MNIST-1D signals x: [n, {x.shape[1]}] floats", "shape": [1, x.shape[1]]}
    return Splits(xtr[:, None], ytr, xv[:, None], yv, xt[:, None], yt, spec)


def _load_xy_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        z = load_npz(path)
        return np.asarray(z["x"], np.float32), np.asarray(z["y"], np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as an .npz with arrays x and y: {exc}") from exc


Loader = Callable[..., Splits]
LOADERS: dict[str, Loader] = {
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "mnist1d": load_mnist1d,
}


def register_loader(name: str, loader: Loader) -> None:
    LOADERS[name] = loader


def load_splits(dataset: str, path: str | None, *, split_seed: int, val_fraction: float) -> Splits:
    if dataset not in LOADERS:
        raise ConfigError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(LOADERS))}")
    return LOADERS[dataset](path, split_seed=split_seed, val_fraction=val_fraction)
