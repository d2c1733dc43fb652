"""Ensemble selection (seed 001 Algorithm 1, last step): the best size-n subset of a candidate
pool by validation loss of the uniformly averaged probabilities -- every subset when there
are few enough, greedy forward selection (without replacement) beyond."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import comb

import numpy as np

from evaluator.failures import EnsnasError


class SelectionError(EnsnasError):
    """The pool cannot give the requested ensemble (too small, mis-shaped predictions)."""


def ensemble_nll(probs: list[np.ndarray], y: np.ndarray) -> float:
    """Negative log-likelihood of the mean of the members' probabilities."""
    p = np.mean(probs, axis=0)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def ensemble_accuracy(probs: list[np.ndarray], y: np.ndarray) -> float:
    return float(np.mean(np.mean(probs, axis=0).argmax(1) == y))


@dataclass(frozen=True)
class Selection:
    indices: tuple[int, ...]
    val_nll: float
    method: str          # "exhaustive" or "greedy"
    evaluated: int       # subsets scored


def select_ensemble(val_probs: list[np.ndarray], y_val: np.ndarray, *, size: int,
                    exhaustive_limit: int = 5000) -> Selection:
    """Indices of the best `size` members of the pool by validation NLL of their average."""
    pool = len(val_probs)
    if size < 1 or size > pool:
        raise SelectionError(f"cannot pick {size} members from a pool of {pool}")
    shapes = {p.shape for p in val_probs}
    if len(shapes) != 1 or next(iter(shapes))[0] != len(y_val):
        raise SelectionError(f"predictions disagree in shape or with the labels: {sorted(shapes)} vs {len(y_val)}")
    if comb(pool, size) <= exhaustive_limit:
        best, count = None, 0
        for subset in itertools.combinations(range(pool), size):
            score = ensemble_nll([val_probs[i] for i in subset], y_val)
            count += 1
            if best is None or score < best[1]:
                best = (subset, score)
        return Selection(indices=tuple(best[0]), val_nll=best[1], method="exhaustive", evaluated=count)
    chosen: list[int] = []
    count, score = 0, float("inf")
    while len(chosen) < size:
        options = []
        for i in range(pool):
            if i in chosen:
                continue
            options.append((ensemble_nll([val_probs[j] for j in chosen + [i]], y_val), i))
            count += 1
        score, pick = min(options)
        chosen.append(pick)
    return Selection(indices=tuple(chosen), val_nll=score, method="greedy", evaluated=count)
