"""The closed-form feature-bagging proposer (seed 000 §5, docs/theory.md T3).

Strategy: run the incumbent program as dual learners (two instances) at a few feature fractions
p through the sandboxed Evaluator, fit E0, c, rho0, sigma2 by least squares
(theory.feature_bagging_fit), compute p* for the deployed ensemble size M, check T2 for p*
against p = 1 on the fitted model, and emit the incumbent with `FEATURE_FRACTION = p*` as the
candidate. The loop's own acceptance gate then tests it like any other candidate.

Cost: 2 trainings per fraction (one fraction can reuse the incumbent's own evaluation) instead of
M trainings per grid point for a sweep.
"""
from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.proposers.base import Candidate, ProposalContext, Proposer, register_proposer
from evaluator.failures import EnsnasError
from evaluator.parse_lock import parse_python
from theory.errors import TheoryInputError
from theory.feature_bagging_fit import MODELS, FeatureBaggingFit, fit_feature_bagging


class ClosedFormError(EnsnasError):
    """The closed-form strategy cannot run: bad configuration, no evaluator, or a program whose
    FEATURE_FRACTION cannot be set."""


class ClosedFormConfig(BaseModel):
    """Knobs of the strategy; the defaults run on a CPU (4 fractions x 2 instances)."""
    model_config = ConfigDict(extra="forbid")
    fractions: list[float] = Field([1.0, 0.7, 0.45, 0.25], description="p values of the dual-learner runs")
    models: list[str] = Field(["paper", "affine", "diversity"],
                              description="T3 models to try in order; the first that fits is used")
    p_min: float = Field(0.1, gt=0, le=1, description="smallest p* emitted")
    instances: int = Field(2, ge=2, description="instances per fraction (2 = dual learners)")
    members: int | None = Field(None, ge=2, description="M; default: the loop's")
    seed_base: int = 7000

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if len(set(value)) < 2 or any(not 0 < p <= 1 for p in value):
            raise ValueError(f"need >= 2 distinct fractions in (0, 1], got {value}")
        return sorted(set(value), reverse=True)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        if not value or any(m not in MODELS for m in value):
            raise ValueError(f"models must be a non-empty subset of {MODELS}, got {value}")
        return value


def set_feature_fraction(source: str, fraction: float) -> str:
    """`source` with its module-level FEATURE_FRACTION set to `fraction` (assignment replaced in
    place, or added after the last top-level import). ClosedFormError if the source is not Python."""
    try:
        tree = parse_python(source)
    except SyntaxError as exc:
        raise ClosedFormError(f"cannot set FEATURE_FRACTION: the program does not parse ({exc.msg})") from exc
    line = f"FEATURE_FRACTION = {fraction:.4f}"
    lines = source.splitlines()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "FEATURE_FRACTION" for t in targets):
            lines[node.lineno - 1 : node.end_lineno] = [line]
            return "\n".join(lines) + "\n"
    imports = [n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    doc = tree.body[0].end_lineno if tree.body and isinstance(tree.body[0], ast.Expr) \
        and isinstance(getattr(tree.body[0], "value", None), ast.Constant) else 0
    at = max(imports or [doc])
    lines[at:at] = ["", line]
    return "\n".join(lines) + "\n"


def _fraction_free(source: str) -> str:
    """Identity of a program up to its FEATURE_FRACTION (the proposer fits each parent once)."""
    return hashlib.sha256(set_feature_fraction(source, 1.0).encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class ClosedFormResult:
    fit: FeatureBaggingFit
    members: int
    p_star: float
    effective_p_star: float          # what the worker realises: round(p* x features) / features
    source: str
    dual: dict[str, dict[str, float]]  # p -> E, rho, sigma2, D of the dual runs
    errors: dict[str, str]           # models that did not fit, and why
    trainings: int

    def meta(self) -> dict[str, Any]:
        return {"fit": self.fit.summary(self.members), "p_star": self.p_star,
                "effective_p_star": self.effective_p_star, "dual": self.dual, "fit_errors": self.errors,
                "trainings": self.trainings, "t2_vs_p1": self.fit.t2_check(self.members)}


def closed_form_strategy(*, evaluator, source: str, members: int, config: ClosedFormConfig = ClosedFormConfig(),
                         known: dict[float, dict[str, float]] | None = None) -> ClosedFormResult:
    """Dual-learner runs of `source` at config.fractions -> fit -> p* -> the p* program.

    `known` maps fractions to statistics already measured (e.g. the incumbent's own evaluation);
    those are not re-run. Raises ClosedFormError when a run fails or no model fits (the message
    carries every model's reason)."""
    if evaluator is None:
        raise ClosedFormError("the closed-form proposer needs an Evaluator (make_proposer(..., evaluator=...) or bind)")
    dual, trainings = dict(known or {}), 0
    for i, p in enumerate(config.fractions):
        if p in dual:
            continue
        result = evaluator.evaluate(set_feature_fraction(source, p), instances=config.instances,
                                    seed_base=config.seed_base + 100 * i)
        trainings += config.instances
        if not result.ok:
            raise ClosedFormError(f"dual run at p = {p} failed [{result.reason.value}]: {result.detail[:300]}")
        s = result.statistics
        dual[p] = {"member_error": s.member_error, "correlation": s.correlation, "variance": s.variance,
                   "diversity": s.diversity}
    ps = sorted(dual, reverse=True)
    columns = {k: [dual[p][k] for p in ps] for k in ("member_error", "correlation", "variance", "diversity")}
    errors: dict[str, str] = {}
    for model in config.models:
        try:
            fit = fit_feature_bagging(ps, columns["member_error"], columns["correlation"], columns["variance"],
                                      diversity=columns["diversity"], model=model)
        except TheoryInputError as exc:
            errors[model] = str(exc)
            continue
        p_star = fit.optimal_fraction(members, p_min=config.p_min)
        features = int(evaluator.data.input_shape[0]) if len(evaluator.data.input_shape) == 1 else None
        effective = round(p_star * features) / features if features else p_star
        return ClosedFormResult(fit=fit, members=members, p_star=p_star, effective_p_star=effective,
                                source=set_feature_fraction(source, p_star), errors=errors,
                                dual={str(p): v for p, v in dual.items()}, trainings=trainings)
    raise ClosedFormError("no feature-bagging model fits the dual runs: "
                          + "; ".join(f"{m}: {e}" for m, e in errors.items()))


def _current_fraction(source: str) -> float | None:
    try:
        tree = parse_python(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FEATURE_FRACTION" for t in node.targets):
            value = node.value.value if isinstance(node.value, ast.Constant) else None
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return 1.0


@register_proposer("closed_form")
class ClosedFormProposer(Proposer):
    """Emits the incumbent at FEATURE_FRACTION = p* (one candidate per new parent)."""

    def __init__(self, *, evaluator=None, config: ClosedFormConfig | dict | None = None) -> None:
        self.evaluator = evaluator
        try:
            self.config = config if isinstance(config, ClosedFormConfig) else ClosedFormConfig.model_validate(config or {})
        except ValidationError as exc:
            raise ClosedFormError(f"invalid closed_form config: {exc}") from exc
        self.fitted: dict[str, dict[str, Any]] = {}   # parent identity -> meta of its fit

    def bind(self, resources) -> None:
        if self.evaluator is None:
            self.evaluator = getattr(resources, "evaluator", None)

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        parent = ctx.incumbent
        if n < 1:
            return []
        try:
            key = _fraction_free(parent.source)
        except ClosedFormError as exc:
            return [self._failed(parent.id, "unparsable_parent", str(exc))]
        if key in self.fitted:
            return []  # this parent's p* was already proposed; nothing new to say
        members = self.config.members or ctx.members
        known = {}
        current = _current_fraction(parent.source)
        stats = parent.statistics or {}
        if current in self.config.fractions and all(k in stats for k in ("member_error", "correlation", "variance", "diversity")):
            known[current] = {k: float(stats[k]) for k in ("member_error", "correlation", "variance", "diversity")}
        try:
            result = closed_form_strategy(evaluator=self.evaluator, source=parent.source, members=members,
                                          config=self.config, known=known)
        except ClosedFormError as exc:
            self.fitted[key] = {"error": str(exc)}
            return [self._failed(parent.id, "closed_form_failed", str(exc))]
        meta = result.meta()
        self.fitted[key] = {"p_star": result.p_star, "model": result.fit.model}
        if current is not None and abs(round(result.p_star, 4) - current) < 1e-4:
            return [self._failed(parent.id, "no_change",
                                 f"p* = {result.p_star:.4f} equals the incumbent's FEATURE_FRACTION", meta)]
        return [Candidate(source=result.source, parent_id=parent.id, proposer=self.name, meta=meta)]

    def _failed(self, parent_id, failure: str, detail: str, meta: dict | None = None) -> Candidate:
        return Candidate(source="", parent_id=parent_id, proposer=self.name, meta=meta or {},
                         failure=failure, failure_detail=detail)

    def state_dict(self) -> dict[str, Any]:
        return {"fitted": self.fitted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fitted = dict(state.get("fitted", {}))
