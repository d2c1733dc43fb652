"""The `darts` and `edgenes` proposers: searches that emit rendered genotypes as candidates.

`darts` runs one first-order DARTS search per candidate (seeds advance), i.e. DartsEns fed to
the loop one run at a time. `edgenes` runs DARTS once, trains the hypernetwork once, samples
the lambda grid and emits those architectures (alpha* first, then the more diverse ones);
when the grid is used up it samples a fresh grid. The searches run in-process on the task's
training split (our code, not a candidate's); candidates are evaluated like any other.
State (searches done, alpha*, the hypernetwork's parameters, the queue) survives resume.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from agent.proposers.base import Candidate, ProposalContext, Proposer, register_proposer
from agent.proposers.darts.config import PRESETS, SearchConfig
from agent.proposers.darts.darts import run_darts
from agent.proposers.darts.data import load_task, search_split
from agent.proposers.darts.edgenes import Hypernetwork, lambda_grid, sample_architectures, train_hypernetwork
from agent.proposers.darts.genotype import Genotype, render, shared_edges
from agent.proposers.darts.search_space import CELL_TYPES
from evaluator.failures import ConfigError, EnsnasError


class ProposerOptions(BaseModel):
    """What `make_proposer("darts"|"edgenes", ...)` accepts."""
    model_config = ConfigDict(extra="forbid")
    preset: Literal["cpu", "large"] = "cpu"
    search: dict[str, Any] | None = None       # overrides merged into the preset (nested dicts)
    seed: int = 0
    cache_dir: str | None = None


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve(options: dict) -> tuple[ProposerOptions, SearchConfig]:
    try:
        opts = ProposerOptions.model_validate(options)
        cfg = SearchConfig.model_validate(_merge(PRESETS[opts.preset]().model_dump(), opts.search or {}))
    except ValidationError as exc:
        raise ConfigError(f"invalid darts/edgenes proposer options: {exc}") from exc
    return opts, cfg


class _SearchProposer(Proposer):
    def __init__(self, **options) -> None:
        self.options, self.cfg = resolve(options)
        self.emitted: list[str] = []

    def _data(self, ctx: ProposalContext, seed: int):
        torch.set_num_threads(self.cfg.threads)
        arrays = load_task(ctx.task, Path(self.options.cache_dir) if self.options.cache_dir else None)
        return arrays, search_split(arrays, self.cfg.data, seed)

    def _device(self) -> str:
        return self.cfg.device if self.cfg.device == "cpu" or torch.cuda.is_available() else "cpu"

    def _candidate(self, ctx: ProposalContext, genotype: Genotype, header: str, meta: dict) -> Candidate:
        space = self.cfg.space
        self.emitted.append(genotype.key())
        source = render(genotype, channels=space.channels, layers=space.layers, stem_stride=space.stem_stride,
                        header=header)
        return Candidate(source=source, parent_id=ctx.incumbent.id, proposer=self.name,
                         meta={"genotype": genotype.to_dict(), **meta})

    def _failed(self, ctx: ProposalContext, exc: Exception) -> list[Candidate]:
        return [Candidate(source="", parent_id=ctx.incumbent.id, proposer=self.name, failure="search_failed",
                          failure_detail=f"{type(exc).__name__}: {exc}")]


@register_proposer("darts")
class DartsProposer(_SearchProposer):
    """One first-order DARTS search per candidate; successive searches use successive seeds."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.runs = 0

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        out = []
        for _ in range(n):
            seed = self.options.seed + self.runs
            try:
                arrays, data = self._data(ctx, seed)
                result = run_darts(data, input_shape=arrays.input_shape, num_classes=arrays.num_classes,
                                   space=self.cfg.space, cfg=self.cfg.darts, batching=self.cfg.data, seed=seed,
                                   device=self._device())
            except EnsnasError as exc:
                return out + self._failed(ctx, exc)
            self.runs += 1
            out.append(self._candidate(ctx, result.genotype, f"DARTS genotype, search seed {seed}.",
                                       {"search_seed": seed, "search_cpu_s": result.cost.cpu_seconds}))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "emitted": list(self.emitted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.runs, self.emitted = int(state.get("runs", 0)), list(state.get("emitted", []))


@register_proposer("edgenes")
class EdgeNESProposer(_SearchProposer):
    """DARTS once, the hypernetwork once, then its lambda-grid architectures, alpha* first."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.star: Genotype | None = None
        self.hyper: Hypernetwork | None = None
        self.queue: list[tuple[float, dict]] = []
        self.grids = 0
        self.search_cpu_s = 0.0

    def _search(self, ctx: ProposalContext) -> None:
        seed = self.options.seed
        arrays, data = self._data(ctx, seed)
        device = self._device()
        darts = run_darts(data, input_shape=arrays.input_shape, num_classes=arrays.num_classes, space=self.cfg.space,
                          cfg=self.cfg.darts, batching=self.cfg.data, seed=seed, device=device)
        result = train_hypernetwork(data, supernet=darts.supernet, alpha_star=darts.genotype, init_alpha=darts.alpha,
                                    cfg=self.cfg.edgenes, batching=self.cfg.data, seed=seed, device=device)
        self.star, self.hyper = darts.genotype, result.hypernet.cpu()
        self.search_cpu_s = darts.cost.cpu_seconds + result.cost.cpu_seconds

    def _refill(self) -> None:
        grid = lambda_grid(self.star.size, self.cfg.ensemble.pool)
        if self.grids:  # later grids: fresh lambdas so new architectures come out
            rng = np.random.default_rng(self.options.seed + self.grids)
            grid = sorted(rng.uniform(0, self.star.size, size=len(grid)).tolist())
        sampled = sample_architectures(self.hyper, grid, t=self.cfg.edgenes.t_end, seed=self.options.seed + self.grids)
        self.grids += 1
        queued = {Genotype.from_dict(g).key() for _, g in self.queue}
        for lam, genotype in sorted(sampled, key=lambda p: -p[0]):
            key = genotype.key()
            if key not in self.emitted and key not in queued:
                queued.add(key)
                self.queue.append((lam, genotype.to_dict()))

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        try:
            if self.hyper is None:
                self._search(ctx)
            for _ in range(3):
                if len(self.queue) >= n:
                    break
                self._refill()
        except EnsnasError as exc:
            return self._failed(ctx, exc)
        out = []
        while self.queue and len(out) < n:
            lam, g = self.queue.pop(0)
            genotype = Genotype.from_dict(g)
            shared = shared_edges(genotype, self.star)
            out.append(self._candidate(ctx, genotype, f"EdgeNES member: lambda={lam:.2f}, shares {shared} of "
                                                     f"{self.star.size} edges with the DARTS optimum.",
                                       {"lambda": lam, "shared_with_star": shared, "alpha_star": self.star.to_dict(),
                                        "search_cpu_s": self.search_cpu_s}))
        return out

    def state_dict(self) -> dict[str, Any]:
        if self.hyper is None:
            return {"emitted": list(self.emitted)}
        return {"emitted": list(self.emitted), "alpha_star": self.star.to_dict(), "queue": self.queue,
                "grids": self.grids, "search_cpu_s": self.search_cpu_s,
                "pivots": self.hyper.num_pivots,
                "vectors": self.hyper.vectors.detach().cpu().tolist(),
                "gap_logits": self.hyper.gap_logits.detach().cpu().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.emitted = list(state.get("emitted", []))
        if "alpha_star" not in state:
            return
        self.star = Genotype.from_dict(state["alpha_star"])
        vectors = np.asarray(state["vectors"], np.float32)
        init = {k: vectors[0, i] for i, k in enumerate(CELL_TYPES)}
        self.hyper = Hypernetwork(init=init, edges_kept=self.star.size, pivots=int(state["pivots"]), alpha_star=self.star)
        with torch.no_grad():
            self.hyper.vectors.copy_(torch.as_tensor(vectors))
            self.hyper.gap_logits.copy_(torch.as_tensor(state["gap_logits"]))
        self.queue = [(float(lam), g) for lam, g in state.get("queue", [])]
        self.grids = int(state.get("grids", 0))
        self.search_cpu_s = float(state.get("search_cpu_s", 0.0))
