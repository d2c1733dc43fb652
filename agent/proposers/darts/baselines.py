"""Candidate pools of the seed's methods and host-side retraining of a genotype.

DARTS (single), DartsEns (one genotype per DARTS run), Random (one random genotype),
Random-NES (a pool of random genotypes), RandomD-NES (alpha* with k random edge replacements,
k over the same grid EdgeNES samples lambda on) and EdgeNES (the hypernetwork's lambda grid).
Retraining builds each network from its rendered program, so what is measured is exactly
what a proposer would emit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agent.proposers.darts.config import RetrainConfig, SpaceConfig
from agent.proposers.darts.data import TaskArrays, subset
from agent.proposers.darts.edgenes import Hypernetwork, lambda_grid, sample_architectures
from agent.proposers.darts.genotype import Genotype, perturb, random_genotype, render, shared_edges
from evaluator.training import Budget, predict_probabilities, train_instance
from evaluator.worker import load_program


@dataclass(frozen=True)
class PoolMember:
    genotype: Genotype
    origin: str                 # which method made it
    lam: float | None = None    # target shared edges (EdgeNES lambda, RandomD-NES Lambda - k)
    shared_with_star: int | None = None


def darts_single(star: Genotype) -> list[PoolMember]:
    return [PoolMember(genotype=star, origin="darts", lam=float(star.size), shared_with_star=star.size)]


def darts_ens(genotypes: list[Genotype], star: Genotype) -> list[PoolMember]:
    return [PoolMember(genotype=g, origin="darts_ens", shared_with_star=shared_edges(g, star)) for g in genotypes]


def random_single(rng: np.random.Generator) -> list[PoolMember]:
    return [PoolMember(genotype=random_genotype(rng), origin="random")]


def random_nes(pool: int, rng: np.random.Generator) -> list[PoolMember]:
    return [PoolMember(genotype=random_genotype(rng), origin="random_nes") for _ in range(pool)]


def randomd_nes(star: Genotype, pool: int, rng: np.random.Generator) -> list[PoolMember]:
    out = []
    for lam in lambda_grid(star.size, pool):
        g = perturb(star, star.size - int(round(lam)), rng)
        out.append(PoolMember(genotype=g, origin="randomd_nes", lam=lam, shared_with_star=shared_edges(g, star)))
    return out


def edgenes_pool(hyper: Hypernetwork, star: Genotype, pool: int, *, t: float, seed: int) -> list[PoolMember]:
    return [PoolMember(genotype=g, origin="edgenes", lam=lam, shared_with_star=shared_edges(g, star))
            for lam, g in sample_architectures(hyper, lambda_grid(star.size, pool), t=t, seed=seed)]


@dataclass
class Retrained:
    model: torch.nn.Module
    val_probs: np.ndarray
    seconds: float
    params: int


def retrain(genotype: Genotype, arrays: TaskArrays, *, space: SpaceConfig, cfg: RetrainConfig, seed: int) -> Retrained:
    """Train the genotype's rendered program from scratch on the task's training split."""
    torch.manual_seed(seed)
    module = load_program(render(genotype, channels=space.channels, layers=space.layers, stem_stride=space.stem_stride))
    model = module.build_model(arrays.input_shape, arrays.num_classes)
    x, y = subset(arrays.x_train, arrays.y_train, cfg.train_subset, seed=0)
    seconds = train_instance(model, x, y, Budget(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr), seed)
    return Retrained(model=model, val_probs=predict_probabilities(model, arrays.x_val), seconds=seconds,
                     params=sum(p.numel() for p in model.parameters()))
