"""Materialise a task's splits once on disk: sandbox-visible inputs apart from host-only labels.

    CACHE/<key>/inputs/  x_train.npy y_train.npy x_val.npy x_test.npy   (mounted read-only)
    CACHE/<key>/labels.npz  y_val y_test                                  (never mounted)

Another machine gets only the inputs: `pack_inputs` on the host, `unpack_inputs` there
(CACHE/inputs-<hash>/, no labels file ever written).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.datasets import load_splits
from evaluator.parse_lock import load_npy, load_npz
from evaluator.tasks import TaskConfig



def default_cache() -> Path:
    return Path(os.environ.get("ENSNAS_CACHE") or Path.home() / ".cache" / "ensnas")


INPUT_FILES = ("x_train.npy", "y_train.npy", "x_val.npy", "x_test.npy")


@dataclass(frozen=True)
class TaskInputs:
    """What a sandbox needs of a task: the inputs dir and the shapes. No labels."""
    inputs_dir: Path
    input_shape: tuple[int, ...]
    num_classes: int
    n_train: int

    @property
    def n_predicted(self) -> int:
        """Rows the worker predicts (validation + test), read from the .npy headers: no labels needed."""
        return sum(int(load_npy(self.inputs_dir / name, mmap_mode="r").shape[0]) for name in ("x_val.npy", "x_test.npy"))


@dataclass(frozen=True)
class TaskData:
    inputs_dir: Path
    y_val: np.ndarray
    y_test: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    n_train: int
    preprocessing: dict | None = None     # raw inputs → x (evaluator/preprocessing.py), for exports

    @property
    def inputs(self) -> TaskInputs:
        return TaskInputs(inputs_dir=self.inputs_dir, input_shape=self.input_shape, num_classes=self.num_classes,
                          n_train=self.n_train)


def _key(task: TaskConfig) -> str:
    ident = {"dataset": task.dataset, "path": task.data_path, "split_seed": task.split_seed,
             "val_fraction": task.val_fraction, "v": 2}
    return task.dataset + "-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def materialize(task: TaskConfig, cache_dir: Path | None = None) -> TaskData:
    root = Path(cache_dir or default_cache()) / _key(task)
    meta_path = root / "meta.json"
    if not meta_path.exists():
        splits = load_splits(task.dataset, task.data_path, split_seed=task.split_seed, val_fraction=task.val_fraction)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-"))
        (tmp / "inputs").mkdir()
        np.save(tmp / "inputs" / "x_train.npy", splits.x_train.astype(np.float32))
        np.save(tmp / "inputs" / "y_train.npy", splits.y_train.astype(np.int64))
        np.save(tmp / "inputs" / "x_val.npy", splits.x_val.astype(np.float32))
        np.save(tmp / "inputs" / "x_test.npy", splits.x_test.astype(np.float32))
        np.savez(tmp / "labels.npz", y_val=splits.y_val, y_test=splits.y_test)
        meta = {"input_shape": list(splits.input_shape), "num_classes": splits.num_classes,
                "n_train": len(splits.y_train), "preprocessing": splits.preprocessing}
        (tmp / "meta.json").write_text(json.dumps(meta))
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the sandbox's unprivileged user
        try:
            os.rename(tmp, root)  # atomic: concurrent materialisations race harmlessly
        except OSError:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads(meta_path.read_text())
    labels = load_npz(root / "labels.npz")
    y_val, y_test = labels["y_val"], labels["y_test"]
    return TaskData(inputs_dir=root / "inputs", y_val=y_val, y_test=y_test,
                    input_shape=tuple(meta["input_shape"]), num_classes=int(meta["num_classes"]),
                    n_train=int(meta["n_train"]), preprocessing=meta.get("preprocessing"))


@dataclass(frozen=True)
class InputsBundle:
    """A task's inputs as bytes, to ship to another machine (e.g. once through Ray's object store)."""
    key: str                    # content hash of the files: the receiving side's cache key
    files: dict[str, bytes]
    input_shape: tuple[int, ...]
    num_classes: int
    n_train: int


def pack_inputs(inputs: TaskInputs) -> InputsBundle:
    files = {name: (inputs.inputs_dir / name).read_bytes() for name in INPUT_FILES}
    digest = hashlib.sha256()
    for name in INPUT_FILES:
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return InputsBundle(key=digest.hexdigest()[:16], files=files, input_shape=tuple(inputs.input_shape),
                        num_classes=inputs.num_classes, n_train=inputs.n_train)


def inputs_dir_for(key: str, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache()) / f"inputs-{key}" / "inputs"


def cached_inputs(key: str, cache_dir: Path | None = None) -> TaskInputs | None:
    """The inputs of bundle `key` if this machine unpacked them before, else None."""
    inputs_dir = inputs_dir_for(key, cache_dir)
    try:
        meta = json.loads((inputs_dir.parent / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return TaskInputs(inputs_dir=inputs_dir, input_shape=tuple(meta["input_shape"]), num_classes=meta["num_classes"],
                      n_train=meta["n_train"])


def unpack_inputs(bundle: InputsBundle, cache_dir: Path | None = None) -> TaskInputs:
    """Write a shipped bundle into this machine's cache once (atomically; racing writers are harmless)."""
    inputs_dir = inputs_dir_for(bundle.key, cache_dir)
    root = inputs_dir.parent
    if not inputs_dir.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-"))
        (tmp / "inputs").mkdir()
        for name in INPUT_FILES:
            (tmp / "inputs" / name).write_bytes(bundle.files[name])
        (tmp / "meta.json").write_text(json.dumps({"input_shape": list(bundle.input_shape),
                                                   "num_classes": bundle.num_classes, "n_train": bundle.n_train}))
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the sandbox's unprivileged user
        try:
            os.rename(tmp, root)
        except OSError:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return TaskInputs(inputs_dir=inputs_dir, input_shape=bundle.input_shape, num_classes=bundle.num_classes,
                      n_train=bundle.n_train)
