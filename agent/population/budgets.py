"""Run budgets: wall time, candidate evaluations and generator tokens (prompt + completion).

A run checks `exhausted` at each cycle boundary and stops cleanly there; what was spent is kept
in the run, so `ensnas resume` with a larger budget continues from the same point.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field


class BudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_wall_s: float | None = Field(None, gt=0, description="stop at the first cycle boundary past this many seconds "
                                                             "of run time (summed over resumes)")
    max_evaluations: int | None = Field(None, ge=1, description="sandbox evaluations of proposed candidates")
    max_tokens: int | None = Field(None, ge=1, description="generator tokens, prompt + completion")


@dataclass(frozen=True)
class Spent:
    wall_s: float = 0.0
    evaluations: int = 0
    tokens: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def exhausted(budget: BudgetConfig, spent: Spent) -> str | None:
    """Why the run must stop now, or None."""
    if budget.max_wall_s is not None and spent.wall_s >= budget.max_wall_s:
        return f"wall-time budget spent ({spent.wall_s:.0f} s of {budget.max_wall_s:.0f} s)"
    if budget.max_evaluations is not None and spent.evaluations >= budget.max_evaluations:
        return f"evaluation budget spent ({spent.evaluations} of {budget.max_evaluations})"
    if budget.max_tokens is not None and spent.tokens >= budget.max_tokens:
        return f"token budget spent ({spent.tokens:,} of {budget.max_tokens:,} generator tokens)"
    return None


def evaluations_left(budget: BudgetConfig, spent: Spent, in_flight: int = 0) -> int | None:
    """How many more candidates may be sent to the sandbox (None: unbounded), so the last cycle
    is cut to fit instead of overshooting the budget."""
    if budget.max_evaluations is None:
        return None
    return max(0, budget.max_evaluations - spent.evaluations - in_flight)


def describe(budget: BudgetConfig, spent: Spent) -> str:
    parts = []
    for name, used, cap, unit in (("wall", spent.wall_s, budget.max_wall_s, "s"),
                                  ("evaluations", spent.evaluations, budget.max_evaluations, ""),
                                  ("tokens", spent.tokens, budget.max_tokens, "")):
        value = f"{used:.0f}{unit}" if isinstance(used, float) else f"{used:,}"
        parts.append(f"{name} {value}" + (f" / {cap:,.0f}{unit}" if cap is not None else ""))
    return "spent: " + ", ".join(parts)
