"""RACHEL as a proposer in the ensnas loop (`make_proposer("rachel")`).

Each `propose` call runs RACHEL iterations on the host (candidates trained in-process on the
task's materialised training data, rewards from validation only) and emits every subnetwork the
iteration accepted, rendered as a program under the contract. From there the loop treats it
like any other candidate: pre-filter, sandbox, statistics, acceptance gate, store. An iteration
whose safety net fired re-adds an already emitted subnetwork and so emits nothing.

Candidate.meta carries the subnetwork spec, its RACHEL objective and reward, the iteration,
the controller's temperature and the other candidates' objectives; parent_id is the store id
of the program the subnetwork grew from (learned through `observe`), else the incumbent's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.proposers.base import Candidate, ProgramRecord, ProposalContext, Proposer, register_proposer
from agent.proposers.rachel.members import load_search_data
from agent.proposers.rachel.search import RachelConfig, RachelSearch
from agent.proposers.rachel.subnetworks import SubnetSpec, render_program
from evaluator.failures import ConfigError
from evaluator.tasks import ProxyBudget


class RachelProposerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    search: RachelConfig = RachelConfig()
    use_task_budget: bool = Field(True, description="train candidates with the task's proxy budget and max_params")
    iterations_per_call: int = Field(1, ge=1, description="RACHEL iterations per propose() call (at most n)")
    train_subset: int | None = Field(None, ge=1)
    val_subset: int | None = Field(None, ge=1)
    cache_dir: str | None = None


@register_proposer("rachel")
class RachelProposer(Proposer):
    def __init__(self, *, config: RachelProposerConfig | dict | None = None, **options: Any) -> None:
        try:
            if isinstance(config, RachelProposerConfig):
                self.config = config.model_copy(update=options) if options else config
            else:
                self.config = RachelProposerConfig.model_validate({**(config or {}), **options})
        except ValidationError as exc:
            raise ConfigError(f"invalid rachel proposer options: {exc}") from exc
        self.search: RachelSearch | None = None
        self._pending_state: dict | None = None
        self._program_ids: dict[str, int] = {}       # rendered source -> store id (from observe)
        self._emitted: set[str] = set()              # sources already proposed (never twice)
        self.gate: list[dict] = []                   # the loop's verdict on each emitted candidate

    def _ensure_search(self, ctx: ProposalContext) -> RachelSearch:
        if self.search is None:
            cfg = self.config.search
            if self.config.use_task_budget:
                cfg = cfg.model_copy(update={"budget": ProxyBudget(**ctx.task.budget.model_dump()),
                                             "max_params": ctx.task.max_params})
            data = load_search_data(ctx.task, cache_dir=Path(self.config.cache_dir) if self.config.cache_dir else None,
                                    train_subset=self.config.train_subset, val_subset=self.config.val_subset,
                                    with_test=False)
            self.search = RachelSearch(config=cfg, data=data)
            if self._pending_state is not None:
                self.search.load_state_dict(self._pending_state)
                self._pending_state = None
        return self.search

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        search = self._ensure_search(ctx)
        out: list[Candidate] = []
        for _ in range(min(n, self.config.iterations_per_call)):
            if search.iteration >= search.config.iterations:
                break
            parent_source = render_program(search.base, dropout=search.config.dropout) if search.best else None
            record = search.step()
            if record["safety_net"] or record["accepted"] is None:
                continue
            spec: SubnetSpec = search.best.spec
            source = render_program(spec, dropout=search.config.dropout)
            if source in self._emitted:  # every layer absent: a new instance of the same program
                continue
            self._emitted.add(source)
            parent_id = self._program_ids.get(parent_source) if parent_source else None
            out.append(Candidate(
                source=source, parent_id=parent_id if parent_id is not None else ctx.incumbent.id,
                proposer=self.name,
                meta={"spec": spec.as_dict(), "objective": record["accepted_objective"],
                      "reward": -record["accepted_objective"], "iteration": record["iteration"],
                      "temperature": record["temperature"], "candidate_objectives": record["objectives"],
                      "candidate_specs": record["specs"], "ensemble_size": record["ensemble_size"],
                      "params": search.best.params}))
        return out

    def observe(self, candidate: Candidate | None, record: ProgramRecord) -> None:
        """Learn the store id of each emitted program (the parent of the next growth step) and keep
        the loop's verdict on it. The loop may pass candidate=None; the record's source is the key."""
        source = candidate.source if candidate is not None else record.source
        if source:
            self._program_ids[source] = record.id
        if not any(g["id"] == record.id for g in self.gate):
            self.gate.append({"id": record.id, "status": record.status})
        else:
            for g in self.gate:
                if g["id"] == record.id:
                    g["status"] = record.status

    def state_dict(self) -> dict[str, Any]:
        search_state = self.search.state_dict() if self.search is not None else self._pending_state
        return {"search": search_state, "program_ids": [[s, i] for s, i in self._program_ids.items()],
                "emitted": sorted(self._emitted), "gate": self.gate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending_state = state.get("search")
        self._program_ids = {s: int(i) for s, i in state.get("program_ids", [])}
        self._emitted = set(state.get("emitted", []))
        self.gate = list(state.get("gate", []))
        self.search = None   # rebuilt (members retrained from their seeds) on the next propose
