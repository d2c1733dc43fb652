"""Host-side data and candidate training shared by the RACHEL loop, its random ablation and the
AdaNet-style baseline.

Candidates are our own rendered programs, so they are trained in-process with the evaluator's
own `train_instance` / `predict_probabilities` (the same code the sandbox worker runs). The
search reads only training data and validation labels; test inputs are predicted for the final
report, and test labels never reach this module.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from agent.proposers.rachel.mixture import MixtureConfig, fit_mixture, log_probs
from agent.proposers.rachel.subnetworks import SubnetSpec, build_subnetwork, modality_for
from evaluator.failures import ConfigError, EvaluationFailed
from evaluator.parse_lock import load_npy
from evaluator.registry import Registry
from evaluator.task_data import materialize
from evaluator.tasks import TaskConfig
from evaluator.training import Budget, check_model, predict_probabilities, train_instance


@dataclass(frozen=True, kw_only=True)
class SearchData:
    """Arrays a search needs: training data, validation inputs and labels, optional test inputs."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None = None
    num_classes: int

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_val) != len(self.y_val):
            raise ConfigError("inputs and labels differ in length")
        if len(self.x_train) == 0 or len(self.x_val) == 0:
            raise ConfigError("a search needs non-empty training and validation data")
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise ConfigError(f"train inputs {self.x_train.shape[1:]} and validation inputs "
                              f"{self.x_val.shape[1:]} differ in shape")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def modality(self) -> str:
        return modality_for(self.input_shape)


def load_search_data(task: TaskConfig, *, cache_dir: Path | None = None, train_subset: int | None = None,
                     val_subset: int | None = None, with_test: bool = True) -> SearchData:
    """A task's materialised splits (evaluator.task_data), optionally cut to the first N examples."""
    data = materialize(task, cache_dir)
    x_train = load_npy(data.inputs_dir / "x_train.npy", mmap_mode="r")
    n_train = train_subset or task.budget.train_subset or len(x_train)
    x_val = load_npy(data.inputs_dir / "x_val.npy")
    n_val = val_subset or len(x_val)
    return SearchData(x_train=np.array(x_train[:n_train], dtype=np.float32),
                      y_train=load_npy(data.inputs_dir / "y_train.npy")[:n_train],
                      x_val=x_val[:n_val], y_val=data.y_val[:n_val],
                      x_test=load_npy(data.inputs_dir / "x_test.npy") if with_test else None,
                      num_classes=data.num_classes)


@dataclass(kw_only=True)
class Member:
    """One trained subnetwork: its spec, size, and log-probabilities on validation (and test)."""
    spec: SubnetSpec
    seed: int
    params: int
    train_seconds: float
    val_logits: np.ndarray
    test_logits: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def train_member(spec: SubnetSpec, data: SearchData, *, budget: Budget, seed: int, max_params: int,
                 dropout: float = 0.1) -> Member:
    """Build the rendered program, check it, train one instance, predict. Raises EvaluationFailed."""
    torch.manual_seed(seed)
    model = build_subnetwork(spec, data.input_shape, data.num_classes, dropout=dropout)
    params = check_model(model, data.x_train[:2], data.num_classes, max_params)
    start = time.perf_counter()
    train_instance(model, data.x_train, data.y_train, budget, seed)
    seconds = time.perf_counter() - start
    val = log_probs(predict_probabilities(model, data.x_val))
    test = log_probs(predict_probabilities(model, data.x_test)) if data.x_test is not None else None
    return Member(spec=spec, seed=seed, params=params, train_seconds=seconds, val_logits=val, test_logits=test)


def try_train(spec: SubnetSpec, data: SearchData, **kwargs) -> Member | EvaluationFailed:
    """train_member, returning the typed failure instead of raising (a bad candidate loses nothing)."""
    try:
        return train_member(spec, data, **kwargs)
    except EvaluationFailed as exc:
        return exc


def fit_members(members: list[Member], y_val: np.ndarray, *, config: MixtureConfig,
                penalty: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The members' softmax mixture fitted on validation: (weights, objective); no members: (none, nan)."""
    if not members:
        return np.zeros(0), float("nan")
    fit = fit_mixture(np.stack([m.val_logits for m in members]), y_val, config=config, penalty=penalty)
    return fit.weights, fit.loss


@dataclass(kw_only=True)
class SearchResult:
    """What a grow-an-ensemble search returns: the ensemble (members may repeat when the safety net
    re-added one), its final mixture weights, per-iteration history and cost counters."""
    strategy: str
    members: list[Member]
    weights: np.ndarray
    val_objective: float
    history: list[dict]
    trained_candidates: int
    failed_candidates: int
    trained_params: int          # sum of parameters over every candidate trained (accepted or not)
    wall_seconds: float
    safety_net_fired: int = 0

    @property
    def ensemble_params(self) -> int:
        """Parameters of the deployed ensemble (a member re-added by the safety net counts once)."""
        return sum(m.params for m in {id(m): m for m in self.members}.values())

    def test_metrics(self, y_test: np.ndarray) -> dict:
        """Accuracy and cross-entropy of the weighted-logit ensemble on test (reporting only)."""
        from agent.proposers.rachel.mixture import ensemble_cross_entropy, ensemble_probabilities

        if any(m.test_logits is None for m in self.members):
            raise ConfigError("the search ran without test inputs; no test metrics")
        logits = np.stack([m.test_logits for m in self.members])
        probs = ensemble_probabilities(logits, self.weights)
        return {"accuracy": float((probs.argmax(1) == y_test).mean()),
                "cross_entropy": ensemble_cross_entropy(logits, y_test, self.weights)}


# name -> factory(config=..., data=...) with a .run() -> SearchResult; registered by search.py and adanet.py
STRATEGIES: Registry = Registry("search strategy", lazy={"adanet": "agent.proposers.rachel.adanet",
                                                           "rachel": "agent.proposers.rachel.search",
                                                           "random": "agent.proposers.rachel.search"})
register_strategy = STRATEGIES.register


def make_search(name: str, **kwargs):
    return STRATEGIES.make(name, **kwargs)
