"""Proxy training of one instance under a budget, and prediction of probabilities.

Runs inside the sandbox (imported by the worker) and in-process for benchmarks; the same
code either way, so what the benchmark measures is what the search uses.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from evaluator.failures import EvaluationFailed, FailureReason


@dataclass(frozen=True)
class Budget:
    epochs: int = 2
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    train_subset: int | None = None


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_model(model: torch.nn.Module, sample: np.ndarray, num_classes: int, max_params: int) -> int:
    """Shape and size checks before any training; returns the parameter count."""
    if not isinstance(model, torch.nn.Module):
        raise EvaluationFailed(FailureReason.build_error,
                               f"build_model returned {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(sample[:2]))
    except Exception as exc:  # the program's own code: any exception is its fault
        raise EvaluationFailed(FailureReason.forward_error, _describe(exc)) from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sample[:2]), num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EvaluationFailed(FailureReason.shape_mismatch,
                               f"output {shape}, expected ({len(sample[:2])}, {num_classes})")
    if not torch.isfinite(out).all():
        raise EvaluationFailed(FailureReason.nan_output, "non-finite output before training")
    params = count_parameters(model)  # after the forward pass, so lazy modules are materialised
    if params > max_params:
        raise EvaluationFailed(FailureReason.too_many_params, f"{params:,} parameters > cap {max_params:,}")
    return params


class Adam:
    """Adam with L2 weight decay, computed exactly as torch.optim.Adam does on CPU (single-tensor
    path, no amsgrad). Written out because torch.optim's first optimizer imports torch._dynamo,
    about 1 s of every fresh sandbox worker's fixed cost (benchmarks/sandbox_overhead.py)."""

    def __init__(self, params, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        step_size = self.lr / (1 - beta1 ** self.steps)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            grad = p.grad if not self.weight_decay else p.grad.add(p, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)


def train_instance(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, budget: Budget, seed: int) -> float:
    """Adam + cross-entropy for the budget; returns training seconds. Raises on NaN loss."""
    if budget.train_subset:
        x, y = x[: budget.train_subset], y[: budget.train_subset]
    generator = torch.Generator().manual_seed(seed)
    optimiser = Adam(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    xt, yt = torch.as_tensor(np.ascontiguousarray(x)), torch.as_tensor(np.ascontiguousarray(y))
    steps, start = 0, time.perf_counter()
    model.train()
    for _ in range(budget.epochs):
        order = torch.randperm(len(yt), generator=generator)
        for i in range(0, len(order), budget.batch_size):
            batch = order[i : i + budget.batch_size]
            try:
                loss = F.cross_entropy(model(xt[batch]), yt[batch])
            except Exception as exc:
                raise EvaluationFailed(FailureReason.forward_error, _describe(exc)) from exc
            if not math.isfinite(loss.item()):
                raise EvaluationFailed(FailureReason.nan_output, f"loss became {loss.item()} at step {steps}")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps += 1
            if budget.max_steps and steps >= budget.max_steps:
                return time.perf_counter() - start
    return time.perf_counter() - start


def warm_up() -> None:
    """Pay first-use costs before a job arrives (a warm worker): the first forward/backward and
    optimizer step initialise kernels and lazily imported modules."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(32, 2))
    x, y = np.zeros((8, 1, 4, 4), np.float32), np.zeros(8, np.int64)
    train_instance(model, x, y, Budget(epochs=1, batch_size=8), seed=0)
    predict_probabilities(model, x)


def predict_probabilities(model: torch.nn.Module, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    # 128, not 1024: a CNN's activations for 1024 images overflow the caches; on one CPU thread the
    # fashion-mnist seed predicts 5000 images in 0.5 s at 128 and 1.3-1.5 s at 1024
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            try:
                logits = model(torch.as_tensor(np.ascontiguousarray(x[i : i + batch_size])))
            except Exception as exc:
                raise EvaluationFailed(FailureReason.forward_error, _describe(exc)) from exc
            out.append(torch.softmax(logits.float(), dim=-1).numpy())
    probs = np.concatenate(out).astype(np.float32)
    if not np.isfinite(probs).all():
        raise EvaluationFailed(FailureReason.nan_output, "non-finite predicted probabilities")
    return probs


def _describe(exc: BaseException) -> str:
    """One line naming the exception and, where known, the program line that raised it."""
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "program.py"]
    where = f" (program.py line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]
