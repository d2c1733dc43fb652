"""The AdaNet-style baseline RACHEL is compared against (Cortes et al. 2017, as in its simple-DNN
generator): grow an ensemble by adding, each iteration, the best of a few candidate subnetworks.

    each iteration, with k the depth of the previous best subnetwork (0 at the start):
        candidates: depth k and depth k+1 plain blocks (conv for images, dense otherwise),
                    at each of `widths` (2 widths -> 4 candidates, RACHEL's number), trained from scratch
        objective:  validation CE of (ensemble + candidate), mixture weights fitted with the
                    complexity penalty  sum_j w_j (lambda * r(h_j) + beta),  r(h) = sqrt(depth(h))
                    (AdaNet's L1 term; on the simplex |w_j| = w_j, so the fit stays convex)
        add the candidate with the lowest regularised objective; it becomes the previous best

No controller, no safety net: the structure search is AdaNet's fixed heuristic (same depth or one
deeper), so against RACHEL it measures what a learned controller adds over that heuristic.
"""
from __future__ import annotations

import math
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.proposers.rachel.members import (Member, SearchData, SearchResult, fit_members, register_strategy,
                                             try_train)
from agent.proposers.rachel.mixture import MixtureConfig
from agent.proposers.rachel.subnetworks import BLOCK_TYPES, Layer, SubnetSpec
from evaluator.tasks import ProxyBudget
from evaluator.training import Budget


class AdaNetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    iterations: int = Field(10, ge=1)
    widths: tuple[int, ...] = Field((64, 128), min_length=1, description="candidate widths at each depth")
    complexity_lambda: float = Field(0.005, ge=0, description="lambda in lambda*sqrt(depth)+beta")
    complexity_beta: float = Field(0.001, ge=0)
    mixture: MixtureConfig = MixtureConfig()
    budget: ProxyBudget = ProxyBudget(epochs=2, batch_size=128, lr=2e-3)
    max_params: int = Field(2_000_000, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    seed: int = 0

    @property
    def candidates(self) -> int:
        return 2 * len(self.widths)


def complexity(spec: SubnetSpec, config: AdaNetConfig) -> float:
    """AdaNet's per-subnetwork penalty lambda * r(h) + beta with r(h) = sqrt(depth)."""
    return config.complexity_lambda * math.sqrt(spec.depth) + config.complexity_beta


class AdaNetSearch:
    def __init__(self, *, config: AdaNetConfig | None = None, data: SearchData) -> None:
        self.config = config or AdaNetConfig()
        self.data = data
        self.budget = Budget(**self.config.budget.model_dump())
        self.kind = BLOCK_TYPES[data.modality][0]
        self.members: list[Member] = []
        self.depth = 0
        self.iteration = 0
        self.history: list[dict] = []
        self.trained = self.failed = self.trained_params = 0
        self.seconds = 0.0

    def candidate_specs(self) -> list[SubnetSpec]:
        return [SubnetSpec(self.data.modality, tuple(Layer(self.kind, w) for _ in range(depth)))
                for depth in (self.depth, self.depth + 1) for w in self.config.widths]

    def regularised_objective(self, members: list[Member]) -> float:
        penalty = np.array([complexity(m.spec, self.config) for m in members])
        return fit_members(members, self.data.y_val, config=self.config.mixture, penalty=penalty)[1]

    def step(self) -> dict:
        start = time.perf_counter()
        cfg = self.config
        scored: list[tuple[float, Member]] = []
        failures = []
        for k, spec in enumerate(self.candidate_specs()):
            seed = cfg.seed * 1_000_003 + self.iteration * 101 + k
            result = try_train(spec, self.data, budget=self.budget, seed=seed, max_params=cfg.max_params,
                               dropout=cfg.dropout)
            if isinstance(result, Member):
                self.trained += 1
                self.trained_params += result.params
                scored.append((self.regularised_objective(self.members + [result]), result))
            else:
                self.failed += 1
                failures.append(f"{spec.describe()}: {result.reason.value}")
        record = {"iteration": self.iteration, "objectives": [s[0] for s in scored],
                  "specs": [s[1].spec.describe() for s in scored], "failures": failures}
        if scored:
            objective, best = min(scored, key=lambda s: s[0])
            self.members.append(best)
            self.depth = best.spec.depth
            record.update(accepted=best.spec.describe(), accepted_objective=objective)
        record.update(ensemble_size=len(self.members), seconds=time.perf_counter() - start)
        self.history.append(record)
        self.iteration += 1
        self.seconds += record["seconds"]
        return record

    def result(self) -> SearchResult:
        penalty = np.array([complexity(m.spec, self.config) for m in self.members])
        weights, objective = fit_members(self.members, self.data.y_val, config=self.config.mixture, penalty=penalty)
        return SearchResult(strategy="adanet", members=list(self.members), weights=weights,
                            val_objective=objective, history=self.history, trained_candidates=self.trained,
                            failed_candidates=self.failed, trained_params=self.trained_params,
                            wall_seconds=self.seconds)

    def run(self) -> SearchResult:
        while self.iteration < self.config.iterations:
            self.step()
        return self.result()


@register_strategy("adanet")
def _adanet(*, config: AdaNetConfig | None = None, data: SearchData) -> AdaNetSearch:
    return AdaNetSearch(config=config, data=data)
