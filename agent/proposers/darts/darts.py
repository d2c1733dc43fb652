"""First-order DARTS (Liu et al. 2018, eq. 6 with xi = 0).

alpha (per cell type, 14 edges x 8 operations) and the supernet's weights w are updated in
turn: an alpha step on a search-val batch with w fixed, then a w step on a search-train
batch with alpha fixed. The genotype is derived by DARTS' rule. Cost is measured as the
process CPU time of the search (and wall time).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from agent.proposers.darts.config import DartsConfig, SearchData, SpaceConfig
from agent.proposers.darts.data import SearchArrays, batches
from agent.proposers.darts.genotype import Genotype, derive
from agent.proposers.darts.search_space import CELL_TYPES, NUM_EDGES, NUM_OPS, SuperNet, build_supernet
from evaluator.failures import EnsnasError


class SearchDiverged(EnsnasError):
    """The supernet's loss became non-finite during a search."""


@dataclass
class SearchCost:
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    steps: int = 0

    def __add__(self, other: "SearchCost") -> "SearchCost":
        return SearchCost(self.cpu_seconds + other.cpu_seconds, self.wall_seconds + other.wall_seconds,
                          self.steps + other.steps)


@dataclass
class DartsResult:
    genotype: Genotype
    alpha: dict[str, np.ndarray]
    cost: SearchCost
    supernet: SuperNet
    history: list[dict] = field(default_factory=list)


class Clock:
    """CPU (process) and wall seconds since construction."""

    def __init__(self) -> None:
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def cost(self, steps: int) -> SearchCost:
        return SearchCost(time.process_time() - self.cpu, time.perf_counter() - self.wall, steps)


def _tensor(x: np.ndarray, device: str) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), device=device)


def check_loss(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise SearchDiverged(f"{where}: loss became {loss.item()}")


def run_darts(data: SearchArrays, *, input_shape: tuple[int, ...], num_classes: int, space: SpaceConfig,
              cfg: DartsConfig, batching: SearchData, seed: int, device: str = "cpu") -> DartsResult:
    """One first-order DARTS search; returns the derived genotype, final alpha, cost and supernet."""
    clock = Clock()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_supernet(channels=space.channels, layers=space.layers, stride=space.stem_stride,
                         input_shape=input_shape, num_classes=num_classes).to(device)
    alpha = {k: (1e-3 * torch.randn(NUM_EDGES, NUM_OPS, device=device)).requires_grad_() for k in CELL_TYPES}
    w_opt = torch.optim.Adam(net.parameters(), lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
    a_opt = torch.optim.Adam(alpha.values(), lr=cfg.arch_lr, betas=cfg.arch_betas, weight_decay=cfg.arch_weight_decay)
    xt, yt = _tensor(data.x_train, device), _tensor(data.y_train, device)
    xv, yv = _tensor(data.x_val, device), _tensor(data.y_val, device)
    steps, history = 0, []
    for epoch in range(cfg.epochs):
        val_batches = list(batches(len(yv), batching.batch_size, rng))
        losses = []
        for i, tb in enumerate(batches(len(yt), batching.batch_size, rng)):
            if cfg.max_steps_per_epoch and i >= cfg.max_steps_per_epoch:
                break
            vb = val_batches[i % len(val_batches)]
            # alpha step on search-val, w fixed (first order)
            weights = {k: F.softmax(a, dim=-1) for k, a in alpha.items()}
            loss_a = F.cross_entropy(net(xv[vb], weights), yv[vb])
            check_loss(loss_a, f"DARTS alpha step {steps}")
            a_opt.zero_grad(set_to_none=True)
            loss_a.backward()
            a_opt.step()
            # w step on search-train, alpha fixed
            weights = {k: F.softmax(a.detach(), dim=-1) for k, a in alpha.items()}
            loss_w = F.cross_entropy(net(xt[tb], weights), yt[tb])
            check_loss(loss_w, f"DARTS w step {steps}")
            w_opt.zero_grad(set_to_none=True)
            loss_w.backward()
            w_opt.step()
            losses.append((loss_w.item(), loss_a.item()))
            steps += 1
        history.append({"epoch": epoch, "train_loss": float(np.mean([l[0] for l in losses])),
                        "val_loss": float(np.mean([l[1] for l in losses]))})
    final = {k: a.detach().cpu().numpy() for k, a in alpha.items()}
    return DartsResult(genotype=derive(final), alpha=final, cost=clock.cost(steps), supernet=net, history=history)
