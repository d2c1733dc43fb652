"""The proposer interface and registry.

A proposer turns the state of the search (incumbent, recent history) into candidate
*programs*: full source text under the program contract plus the parent it edits. DARTS
genotypes, RL token sequences and closed-form knobs are rendered to programs too, so one
evaluator, store, diff viewer and fine-tuning set serve every proposer.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluator.registry import Registry
from evaluator.tasks import TaskConfig


@dataclass(frozen=True, kw_only=True)
class ProgramRecord:
    """What a proposer may know about an evaluated program (from the store)."""
    id: int
    source: str
    status: str                         # "accepted", "rejected", "failed", "duplicate", ...
    reason: str = ""                    # failure reason or the decision's why
    parent_id: int | None = None
    proposer: str = ""
    statistics: dict[str, Any] | None = None   # EnsembleStatistics.as_dict() when evaluated
    decision: dict[str, Any] | None = None     # Decision.as_dict() when compared
    diff: str = ""
    param_count: int | None = None
    latency: dict[str, float] | None = None    # evaluator.latency: batch_1_ms, batch_256_ms


@dataclass(frozen=True, kw_only=True)
class Candidate:
    source: str
    parent_id: int | None
    proposer: str
    meta: dict[str, Any] = field(default_factory=dict)   # prompt, raw model output, genotype, ...
    failure: str | None = None           # set when the proposer itself failed (e.g. edit did not apply)
    failure_detail: str = ""


@dataclass(kw_only=True)
class ProposalContext:
    task: TaskConfig
    incumbent: ProgramRecord
    history: list[ProgramRecord]        # most recent first
    elites: list[ProgramRecord]
    cycle: int
    rng: np.random.Generator
    members: int = 5
    # the population search (agent.population) fills these; the hill climber leaves them empty
    second_parent: ProgramRecord | None = None          # crossover: combine into one edit of `incumbent`
    inspirations: list[ProgramRecord] = field(default_factory=list)   # other archive members to show
    operator: str | None = None                         # the bandit's operator for this call (llm: mutate, crossover, …)
    island: int | None = None


@dataclass(kw_only=True)
class LoopResources:
    evaluator: Any                      # evaluator.evaluate.Evaluator (build checks for repair loops)
    generator: dict[str, Any]           # the run's generator config (agent.generators), as given
    run_dir: Any                        # pathlib.Path of the run; adapters live in run_dir/adapters
    adapter_path: str | None = None     # newest LoRA adapter from the CE update, if any


class Proposer(ABC):
    name: str = "abstract"

    @abstractmethod
    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        """Return up to n candidates; never raise for bad model output (use Candidate.failure)."""

    def bind(self, resources: "LoopResources") -> None:
        """Receive what the loop owns (evaluator, generator config, run dir) before the first cycle."""

    def observe(self, candidate: Candidate, record: ProgramRecord) -> None:
        """Feedback after evaluation (RL proposers learn from it; most ignore it)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved in the run dir so `ensnas resume` continues it."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        """Release what the proposer started (a model server); the loop calls it when a run ends."""


# name -> module that registers it, imported on first use so heavy proposers cost nothing until chosen
LAZY_PROPOSERS: dict[str, str] = {
    "random": "agent.proposers.mutation",
    "evolution": "agent.proposers.mutation",
    "crossover": "agent.proposers.mutation",
    "llm": "agent.proposers.llm",
    "closed_form": "agent.proposers.closed_form",
    "darts": "agent.proposers.darts.proposer",
    "edgenes": "agent.proposers.darts.proposer",
    "rachel": "agent.proposers.rachel.proposer",
}
PROPOSERS: Registry[Proposer] = Registry("proposer", lazy=LAZY_PROPOSERS)
register_proposer = PROPOSERS.register


def make_proposer(name: str, **options) -> Proposer:
    return PROPOSERS.make(name, **options)
