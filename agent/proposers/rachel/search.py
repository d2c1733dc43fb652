"""The RACHEL loop (seed 002, Algorithm 1; docs/theory.md T5) and its random-controller ablation.

    for each iteration:
        the controller samples `candidates` token sequences; each appends up to max_new_layers
        blocks to the previous best subnetwork; each candidate is trained from scratch
        objective = validation CE of (ensemble + candidate) with fitted mixture weights; reward = -objective
        the controller learns from the batch; temperature *= decay
        best candidate: safety net (worse than the previous accepted objective by > 0.01 ->
        discard it, add the previous best member again), otherwise add it and make it the base

The random-controller ablation is the same loop with a controller that samples tokens
uniformly and never learns, so RL's contribution is measured at equal numbers of candidates.
"""
from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.proposers.rachel.controller import ActorCriticController, ControllerConfig, Rollout
from agent.proposers.rachel.members import (Member, SearchData, SearchResult, fit_members, register_strategy,
                                             try_train)
from agent.proposers.rachel.mixture import MixtureConfig, fit_mixture, safety_net_fires
from agent.proposers.rachel.subnetworks import SubnetSpec, decode_layer
from evaluator.tasks import ProxyBudget
from evaluator.training import Budget


class RachelConfig(BaseModel):
    """The loop's settings; defaults are the paper's structure at CPU-sized training budgets."""
    model_config = ConfigDict(extra="forbid")
    iterations: int = Field(10, ge=1)
    candidates: int = Field(4, ge=1, description="candidates per iteration")
    controller: ControllerConfig = ControllerConfig()
    controller_kind: Literal["actor_critic", "random"] = "actor_critic"
    mixture: MixtureConfig = MixtureConfig()
    safety_tolerance: float = Field(0.01, ge=0)
    budget: ProxyBudget = ProxyBudget(epochs=2, batch_size=128, lr=2e-3)
    max_params: int = Field(2_000_000, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    failure_penalty: float = Field(1.0, ge=0, description="added to the objective of a candidate that failed")
    seed: int = 0


class RandomController:
    """The ablation: presence, type and width tokens drawn uniformly; update() learns nothing."""

    def __init__(self, *, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig()
        self.rng = np.random.default_rng(self.config.seed + 1)
        self.temperature = self.config.temperature

    def sample(self, n: int) -> list[Rollout]:
        t = self.config.max_new_layers
        tokens = np.stack([self.rng.integers(0, 2, (n, t)), self.rng.integers(0, 2, (n, t)),
                           self.rng.integers(0, self.config.n_widths, (n, t))], axis=2).astype(np.int64)
        return [Rollout(tokens=tokens[i], temperature=self.temperature, width_min=self.config.width_min)
                for i in range(n)]

    def update(self, rollouts: list[Rollout], rewards: list[float]) -> dict:
        return {}

    def decay(self) -> None:
        self.temperature *= self.config.temperature_decay

    def state_dict(self) -> dict:
        return {"temperature": self.temperature, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.temperature = float(state["temperature"])
        self.rng.bit_generator.state = state["rng"]


CONTROLLERS = {"actor_critic": ActorCriticController, "random": RandomController}


class RachelSearch:
    """Grows an ensemble one iteration at a time (`step`), or all iterations (`run`)."""

    def __init__(self, *, config: RachelConfig | None = None, data: SearchData) -> None:
        self.config = config or RachelConfig()
        self.data = data
        ccfg = self.config.controller.model_copy(update={"seed": self.config.seed * 1000 + self.config.controller.seed})
        self.controller = CONTROLLERS[self.config.controller_kind](config=ccfg)
        self.budget = Budget(**self.config.budget.model_dump())
        self.members: list[Member] = []
        self.base = SubnetSpec(data.modality)        # the previous best subnetwork (empty at start)
        self.best: Member | None = None              # its trained instance
        self.objective: float | None = None          # the previously accepted objective
        self.iteration = 0
        self.history: list[dict] = []
        self.trained = self.failed = self.trained_params = self.safety_net_fired = 0
        self.seconds = 0.0

    # ---------------------------------------------------------------- one iteration
    def candidate_spec(self, rollout: Rollout) -> SubnetSpec:
        layers = [decode_layer(self.data.modality, p, k, w) for p, k, w in rollout.layers()]
        return self.base.append([layer for layer in layers if layer is not None])

    def objective_with(self, member: Member) -> float:
        """Validation CE of the current ensemble plus `member`, mixture weights fitted."""
        logits = np.stack([m.val_logits for m in self.members] + [member.val_logits])
        return fit_mixture(logits, self.data.y_val, config=self.config.mixture).loss

    def step(self) -> dict:
        start = time.perf_counter()
        cfg = self.config
        rollouts = self.controller.sample(cfg.candidates)
        fallback = self.objective if self.objective is not None else math.log(self.data.num_classes)
        scored: list[tuple[float, Member | None, SubnetSpec, str]] = []
        for k, rollout in enumerate(rollouts):
            spec = self.candidate_spec(rollout)
            seed = cfg.seed * 1_000_003 + self.iteration * 101 + k
            result = try_train(spec, self.data, budget=self.budget, seed=seed, max_params=cfg.max_params,
                               dropout=cfg.dropout)
            if isinstance(result, Member):
                self.trained += 1
                self.trained_params += result.params
                scored.append((self.objective_with(result), result, spec, ""))
            else:
                self.failed += 1
                scored.append((fallback + cfg.failure_penalty, None, spec, result.reason.value))
        rewards = [-objective for objective, _, _, _ in scored]
        losses = self.controller.update(rollouts, rewards)
        self.controller.decay()
        best_objective, best_member, best_spec, _ = min(scored, key=lambda s: s[0])
        accepted, readd = self.accept(best_objective, best_member, best_spec)
        record = {"iteration": self.iteration, "objectives": [s[0] for s in scored],
                  "specs": [s[2].describe() for s in scored], "failures": [s[3] for s in scored],
                  "params": [s[1].params if s[1] else None for s in scored],
                  "safety_net": readd,
                  "accepted": accepted.spec.describe() if accepted else None,
                  "accepted_objective": self.objective, "ensemble_size": len(self.members),
                  "temperature": getattr(self.controller, "temperature", None), "controller": losses,
                  "seconds": time.perf_counter() - start}
        self.history.append(record)
        self.iteration += 1
        self.seconds += record["seconds"]
        return record

    def accept(self, objective: float, member: Member | None, spec: SubnetSpec) -> tuple[Member | None, bool]:
        """The iteration's best candidate through the safety net. Returns (member added, whether
        the net fired and re-added the previous best instead)."""
        fired = member is None or safety_net_fires(objective, self.objective, tolerance=self.config.safety_tolerance)
        if fired and self.best is not None:
            self.safety_net_fired += 1
            self.members.append(self.best)           # the previous best again (raises its weight)
            return self.best, True
        if member is None:                           # first iteration and every candidate failed
            return None, False
        self.members.append(member)
        self.best, self.base, self.objective = member, spec, objective
        return member, False

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """JSON-serialisable state; members are kept as (spec, seed) and retrained on load."""
        unique = list({id(m): m for m in self.members}.values())
        index = {id(m): i for i, m in enumerate(unique)}
        return {"iteration": self.iteration, "controller": self.controller.state_dict(),
                "members": [{"spec": m.spec.as_dict(), "seed": m.seed} for m in unique],
                "sequence": [index[id(m)] for m in self.members],
                "best": index[id(self.best)] if self.best is not None else None,
                "objective": self.objective, "history": self.history,
                "counters": [self.trained, self.failed, self.trained_params, self.safety_net_fired]}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved search; retrains its members from (spec, seed) to rebuild predictions."""
        from agent.proposers.rachel.members import train_member

        cfg = self.config
        unique = [train_member(SubnetSpec.from_dict(m["spec"]), self.data, budget=self.budget, seed=int(m["seed"]),
                               max_params=cfg.max_params, dropout=cfg.dropout) for m in state["members"]]
        self.members = [unique[i] for i in state["sequence"]]
        self.best = unique[state["best"]] if state["best"] is not None else None
        self.base = self.best.spec if self.best is not None else SubnetSpec(self.data.modality)
        self.objective = state["objective"]
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])
        self.trained, self.failed, self.trained_params, self.safety_net_fired = (int(v) for v in state["counters"])
        self.controller.load_state_dict(state["controller"])

    # ---------------------------------------------------------------- whole search
    def result(self) -> SearchResult:
        weights, objective = fit_members(self.members, self.data.y_val, config=self.config.mixture)
        return SearchResult(strategy="rachel" if self.config.controller_kind == "actor_critic" else "random",
                            members=list(self.members), weights=weights, val_objective=objective,
                            history=self.history, trained_candidates=self.trained, failed_candidates=self.failed,
                            trained_params=self.trained_params, wall_seconds=self.seconds,
                            safety_net_fired=self.safety_net_fired)

    def run(self) -> SearchResult:
        while self.iteration < self.config.iterations:
            self.step()
        return self.result()


@register_strategy("rachel")
def _rachel(*, config: RachelConfig | None = None, data: SearchData) -> RachelSearch:
    return RachelSearch(config=(config or RachelConfig()).model_copy(update={"controller_kind": "actor_critic"}),
                        data=data)


@register_strategy("random")
def _random(*, config: RachelConfig | None = None, data: SearchData) -> RachelSearch:
    return RachelSearch(config=(config or RachelConfig()).model_copy(update={"controller_kind": "random"}),
                        data=data)
