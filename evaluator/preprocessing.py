"""A task's input preprocessing as data, and the one function that applies it.

The loaders (evaluator/datasets.py, evaluator/tabular.py) describe how raw inputs become the
model's inputs as a JSON-able spec; an export carries the spec in its manifest.json and this
very file as preprocess.py, so `predict(raw)` applies exactly what training applied. Numpy
only (no ensnas, no pandas): an export must load with plain PyTorch.

Spec kinds:
- ``array``: ``x = (raw * scale - mean) / std`` reshaped to ``[-1, *shape]`` (images, signals);
- ``table``: named columns, in order: ``numeric`` (optional log1p of the non-negative part,
  optional missing flag, standardised with training mean/std) or ``categorical`` (one-hot over
  the training vocabulary, plus an "other" column when the task had one); then ``keep`` picks
  the columns that varied in training;
- ``features``: the inputs are already the model's features (only their width is checked).
"""
from __future__ import annotations

import math

import numpy as np


def columns_of(raw) -> dict:
    """A table as {column: values}: a pandas DataFrame, a dict of columns, or a list of row dicts."""
    if hasattr(raw, "columns") and hasattr(raw, "to_numpy"):          # a DataFrame, without importing pandas
        return {str(c): raw[c].to_numpy() for c in raw.columns}
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    rows = list(raw)
    names = list(rows[0]) if rows else []
    return {str(n): [row.get(n) for row in rows] for n in names}


def _numbers(values) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in values], np.float64)


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def encode_column(col: dict, values) -> list[np.ndarray]:
    """One spec column → its feature columns (float64)."""
    if col["type"] == "numeric":
        x = _numbers(values)
        missing = np.isnan(x)
        if col.get("nan_to_zero"):
            x = np.nan_to_num(x)
        if col.get("log1p"):
            x = np.log1p(np.clip(x, 0, None))
        out = [(x - col["mean"]) / col["std"]]
        if col.get("missing_flag"):
            out.append(missing.astype(np.float64))
        return out
    if col["type"] == "categorical":
        s = _strings(values)
        hot = [(s == v).astype(np.float64) for v in col["vocabulary"]]
        if col.get("other"):
            known = np.zeros(len(s), bool)
            for h in hot:
                known |= h > 0
            hot.append((~known).astype(np.float64))
        return hot
    raise ValueError(f"unknown column type {col['type']!r}")


def apply(spec: dict, raw) -> np.ndarray:
    """Raw inputs → the model's float32 inputs, batch first."""
    kind = spec["kind"]
    if kind == "array":
        x = np.asarray(raw, np.float64) * spec.get("scale", 1.0)
        x = (x - spec.get("mean", 0.0)) / spec.get("std", 1.0)
        return x.reshape(-1, *spec["shape"]).astype(np.float32)
    if kind == "table":
        table = columns_of(raw)
        missing = [c["name"] for c in spec["columns"] if c["name"] not in table]
        if missing:
            raise ValueError(f"raw inputs lack column(s) {missing}; expected {[c['name'] for c in spec['columns']]}")
        blocks = [f for col in spec["columns"] for f in encode_column(col, table[col["name"]])]
        x = np.stack(blocks, 1) if blocks else np.zeros((0, 0))
        return x[:, spec["keep"]].astype(np.float32)
    if kind == "features":
        x = np.asarray(raw, np.float32)
        x = x.reshape(-1, *spec["shape"])
        return x
    raise ValueError(f"unknown preprocessing kind {kind!r}")
