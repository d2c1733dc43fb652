"""Shared argument validation; every failure raises TheoryInputError with the argument's name."""

from __future__ import annotations

import math
import numbers

import numpy as np

from theory.errors import TheoryInputError


def real(value: object, name: str) -> float:
    """A finite real number (bools rejected: they are almost always a mistaken argument)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()  # 0-d arrays, e.g. from np.mean over arrays, are scalars
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TheoryInputError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise TheoryInputError(f"{name} must be finite, got {value!r}")
    return out


def nonneg(value: object, name: str) -> float:
    out = real(value, name)
    if out < 0:
        raise TheoryInputError(f"{name} must be >= 0, got {out}")
    return out


def positive(value: object, name: str) -> float:
    out = real(value, name)
    if out <= 0:
        raise TheoryInputError(f"{name} must be > 0, got {out}")
    return out


def unit(value: object, name: str) -> float:
    """A probability-like number in [0, 1]."""
    out = real(value, name)
    if not 0.0 <= out <= 1.0:
        raise TheoryInputError(f"{name} must lie in [0, 1], got {out}")
    return out


def correlation(value: object, name: str = "correlation") -> float:
    out = real(value, name)
    if not -1.0 <= out <= 1.0:
        raise TheoryInputError(f"{name} must lie in [-1, 1], got {out}")
    return out


def integer(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TheoryInputError(f"{name} must be an integer, got {value!r}")
    out = int(value)
    if out < minimum:
        raise TheoryInputError(f"{name} must be >= {minimum}, got {out}")
    return out


def members(value: object, name: str = "members") -> int:
    return integer(value, name, 1)


def finite_array(value: object, name: str) -> np.ndarray:
    """A non-empty, finite float array."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TheoryInputError(f"{name} must be numeric array-like: {exc}") from exc
    if arr.size == 0:
        raise TheoryInputError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise TheoryInputError(f"{name} must contain only finite values")
    return arr


def shrink(members_: int) -> float:
    """(M-1)/M: the share of diversity an M-member average removes (docs/theory.md T1)."""
    return (members_ - 1) / members_
