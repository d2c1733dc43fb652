"""The population search's settings (RunConfig.population)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.population.plan import LLM_OPERATORS

Objective = Literal["error", "params", "latency"]


class PopulationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="islands + Pareto archives + bandit; off: the hill climber "
                                            "(one incumbent, a candidate kept only if it beats it)")
    islands: int = Field(2, ge=1, le=16)
    capacity: int = Field(12, ge=2, description="members per island archive; beyond it the most crowded leave")
    objectives: list[Objective] = Field(default_factory=lambda: ["error", "params", "latency"],
                                        description="error is the acceptance test's predicted M-ensemble error")
    latency_batch: Literal[1, 256] = Field(1, description="which measured latency is the objective")
    tolerance: dict[str, float] = Field(default_factory=lambda: {"params": 0.0, "latency": 0.2},
                                        description="relative difference below which a cost axis is a tie")
    migrate_every: int = Field(3, ge=0, description="copy each island's error-best to the next every n cycles (0: never)")
    exploit: float = Field(0.7, ge=0, le=1, description="share of parents drawn by error rank (the rest: uniform)")
    rank_power: float = Field(1.5, ge=0, description="exploit weights ∝ rank^-power")
    inspirations: int = Field(2, ge=0, le=3, description="other archive members shown beside the parent")
    bandit: Literal["thompson", "ucb1", "off"] = Field("thompson", description="split of each cycle's budget "
                                                                              "across proposers and operators")
    reward: Literal["entered", "hypervolume"] = Field(
        "entered", description="the bandit's reward: 1 when the candidate entered its island's archive, or only when "
                               "it grew the island front's hypervolume (point estimates, `reference` box)")
    llm_operators: list[str] = Field(default_factory=lambda: list(LLM_OPERATORS))
    candidates: int | None = Field(None, ge=1, description="candidates per cycle (default: the proposers' "
                                                           "candidates summed)")
    reference: dict[str, float] = Field(default_factory=lambda: {"error": 1.25, "params": 4.0, "latency": 4.0},
                                        description="hypervolume reference point, as multiples of the seed's objectives")

    @field_validator("objectives")
    @classmethod
    def _error_first(cls, value: list[str]) -> list[str]:
        if "error" not in value:
            raise ValueError("objectives must include error")
        return list(dict.fromkeys(value))
