"""The `llm` proposer: prompt -> generator -> delta (or full rewrite) -> repair loop -> Candidate.

One proposal is a short conversation. The first user turn is rendered from the prompt
templates (task, parent with line numbers, its statistics, recent attempts, the edits already
tried on this parent, an optional direction, output format).
The answer is applied to the parent (agent.delta); if that fails, or the result does not
parse, or the sandbox build/shape/size check (Evaluator.check, no training) rejects it, the
exact error goes back to the model as the next user turn, up to `repair_retries` times.

Distinct ideas, not one idea n times: proposals of a cycle are generated one after another and
each sees the edits already tried on its parent (its own earlier answers, the history's
candidates of that parent, and the archived programs nearest to the parent, as compact diffs),
with a per-proposal seed, a temperature from a rotating schedule and, optionally, a rotating
operator hint ("change the activation", "add a residual path", ...). Seeing the list did not stop
small models from repeating themselves, so two structural checks back it: under the delta grammar
the lines that earlier edits of the parent changed (`avoid_tried_lines` times; an edit that broke the
build counts `broken_line_load` times, a repeat `repeat_line_load` times) are closed as SEARCH anchors
(agent.delta_grammar.open_windows), and an answer whose program was already tried is drawn again
within the same proposal (`resample_repeats`; under the grammar with the repeated lines closed), cheap
because the server caches the prompt. Under the grammar an answer that breaks the program is drawn
again too, with the lines it broke closed (`resample_broken`), before a repair turn, and one that
leaves the parent unchanged counts as a repeat of the parent.

Bad model output never raises: every failure is one typed EditFailure, stored on the Candidate
and counted in `self.stats` (per attempt and per final outcome). The Candidate's meta keeps the
prompt, every raw answer, each attempt's failure, tokens and seconds, and the unified diff.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import logging
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.delta import EditFailure, apply_output, parse_blocks, unified_diff
from agent.delta_grammar import delta_grammar, open_windows, unique_windows
from agent.generators.base import Generation, Generator, GeneratorConfig, GeneratorError, GeneratorTimeout, make_generator
from agent.novelty import exact_jaccard
from agent.population.engine import member_of
from agent.population.selection import difference
from agent.proposers.base import Candidate, ProgramRecord, ProposalContext, Proposer, register_proposer
from evaluator.failures import ConfigError
from evaluator.parse_lock import parse_python
from prompts import PromptRenderer

log = logging.getLogger(__name__)


class LLMProposerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    generator: GeneratorConfig = GeneratorConfig()
    mode: Literal["delta", "full"] = "delta"
    repair_retries: int = Field(2, ge=0, description="extra turns that feed the exact error back")
    history: int = Field(4, ge=0, description="recent attempts shown in the prompt")
    fuzzy_threshold: float = Field(0.85, gt=0, le=1)
    max_answer_chars: int = Field(20_000, ge=100, description="longer answers fail as too_long")
    check_build: bool = Field(True, description="run Evaluator.check on each applied edit (needs an evaluator)")
    prompts_dir: str | None = Field(None, description="directory whose templates override the bundled ones")
    repair_echo_chars: int = Field(4000, ge=0, description="how much of a failed answer is replayed in the repair turn")
    constrained: bool = Field(True, description="delta mode on a backend that takes a grammar: decode under "
                                                "agent.delta_grammar, so every answer is one block that applies")
    max_blocks: int = Field(1, ge=1, le=4, description="SEARCH/REPLACE blocks the delta grammar admits")
    temperatures: list[float] = Field(default_factory=lambda: [0.7, 0.9, 1.1],
                                      description="sampling temperature per proposal, rotating (empty: the generator's)")
    show_tried: int = Field(8, ge=0, description="edits already tried on the parent shown as 'do not repeat' (0: off)")
    hints: list[str] = Field(default_factory=list, description="operator hints, one per proposal, rotating "
                                                               "(empty: none; see OPERATOR_HINTS)")
    avoid_tried_lines: int = Field(3, ge=0, description="constrained delta: close the SEARCH windows whose lines "
                                                        "this many edits already tried on the parent changed (0: off)")
    broken_line_load: int = Field(6, ge=0, description="constrained delta: an edit that failed to parse or build "
                                                      "loads its lines this much toward avoid_tried_lines (a tried "
                                                      "edit: 1), so lines whose edits build stay open longer")
    repeat_line_load: int = Field(3, ge=0, description="constrained delta: an answer that repeated a known program "
                                                      "loads its lines this much (one closes them; they reopen "
                                                      "before lines whose edits broke the build)")
    resample_broken: int = Field(1, ge=0, description="constrained delta: an answer that fails to parse or build is "
                                                      "first drawn again, new seed, with the lines it broke closed, "
                                                      "up to this many times, before any repair turn")
    keep_windows: int = Field(4, ge=1, description="windows that stay open however often their lines were tried "
                                                   "(the least tried)")
    reject_repeats: bool = Field(True, description="an answer giving a program already known (the parent, a tried "
                                                   "edit, the history, same program_key) fails as `duplicate` "
                                                   "(False: it is passed on and only not counted as distinct)")
    resample_repeats: int = Field(2, ge=0, description="a repeated answer (under the grammar also one that leaves "
                                                       "the parent unchanged) is first drawn again, new seed and "
                                                       "hotter, up to this many times")
    resample_heat: float = Field(0.3, ge=0, description="temperature added per re-draw of a repeated answer")


OPERATOR_HINTS = [
    "Change the activation function (for example GELU, SiLU, Tanh or LeakyReLU instead of ReLU).",
    "Add a residual (skip) path or a normalisation layer.",
    "Change the width or the depth of the network.",
    "Regularise differently: dropout rate, weight noise, or a smaller layer.",
    "Make the ensemble members more diverse: an architectural choice whose errors differ between runs.",
]


# Final outcomes of an edit that wasted its lines: it broke the program (weighed by broken_line_load) or
# the model had no new idea there (a repeat, repeat_line_load); timeouts and backend errors say nothing
# about the lines.
BROKEN = frozenset({"syntax_error", "build_failed"})
REPEATED = frozenset({"duplicate", "no_change"})      # no_change: the answer repeated the parent itself


def lines_of_noop(parent: str, answer: str) -> str | None:
    """The parent with the lines that a no-op answer's SEARCH parts name marked (a comment appended),
    so open_windows can count them like a repeat's: a no-op leaves no changed lines of its own. None
    when the answer names none (not parseable, or its SEARCH text is not in the parent)."""
    try:
        blocks = parse_blocks(answer)
    except Exception:       # a no-op answer parsed once already; anything else names no lines
        return None
    marked = parent
    for block in blocks:
        if block.search and block.search in marked:
            lines = block.search.splitlines(keepends=True)
            tagged = "".join(ln.rstrip("\n") + "  # unchanged" + ("\n" if ln.endswith("\n") else "") for ln in lines)
            marked = marked.replace(block.search, tagged, 1)
    return marked if marked != parent else None


def empty_stats() -> dict[str, Any]:
    return {"proposals": 0, "valid": 0, "valid_first_try": 0, "distinct_valid": 0, "attempts": 0, "tokens": 0,
            "seconds": 0.0, "attempt_failures": {}, "final_failures": {}}


def program_key(source: str) -> str:
    """A program's identity up to formatting and comments (ast.unparse); two edits that give the
    same key are the same idea written twice."""
    try:
        text = ast.unparse(parse_python(source))
    except (SyntaxError, ValueError, RecursionError):
        text = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def edit_counts(rows) -> dict[str, Any]:
    """What the LLM contributed to a run, from its store rows (anything with .proposer, .status, .source,
    .reason): proposed, valid (an applicable, building edit that reached the pre-filter), distinct
    (different programs among the valid ones, program_key), evaluated, accepted, and the proposal
    failures by reason. For run summaries and `ensnas status`."""
    mine = [r for r in rows if r.proposer == "llm"]
    valid = [r for r in mine if r.status != "proposal_failed"]
    failures = Counter(r.reason or "unknown" for r in mine if r.status == "proposal_failed")
    return {"proposed": len(mine), "valid": len(valid), "distinct": len({program_key(r.source or "") for r in valid}),
            "evaluated": sum(r.status in ("accepted", "rejected", "failed") for r in valid),
            "accepted": sum(r.status == "accepted" for r in valid), "failed_by_reason": dict(failures)}


def compact_diff(parent: str, child: str, *, max_lines: int = 8) -> str:
    """Only the changed lines ('- old', '+ new'), at most max_lines of them."""
    lines = [ln for ln in difflib.unified_diff(parent.splitlines(), child.splitlines(), lineterm="", n=0)
             if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"  ... ({len(lines) - max_lines} more changed lines)"]
    return "\n".join(lines)


def archive_view(parent: ProgramRecord, other: ProgramRecord, members: int) -> dict[str, Any]:
    """Another archive member as the prompt states it: its numbers next to the parent's, and its
    source as a diff against the parent (what the model would have to change to get there)."""
    mine, theirs = member_of(parent, members), member_of(other, members)
    d = difference(mine, theirs)
    finite = lambda x: x if x == x and abs(x) != float("inf") else None  # noqa: E731
    return {"id": other.id, "error": theirs.error, "delta_error": d.error, "params": other.param_count,
            "params_ratio": finite(d.params_ratio), "latency_ratio": finite(d.latency_ratio),
            "diff": unified_diff(parent.source, other.source, parent_name=f"#{parent.id}", child_name=f"#{other.id}")}


@register_proposer("llm")
class LLMProposer(Proposer):
    def __init__(self, *, config: LLMProposerConfig | dict | None = None, generator: Generator | None = None,
                 evaluator: Any = None) -> None:
        if isinstance(config, dict):
            try:
                config = LLMProposerConfig.model_validate(config)
            except ValueError as exc:
                raise ConfigError(f"bad llm proposer config: {exc}") from exc
        self.config = config or LLMProposerConfig()
        self._generator = generator          # built on first use, so the loop can bind() its config first
        self._owns_generator = False         # close() stops only a generator made here
        self.evaluator = evaluator
        self.renderer = PromptRenderer(prompts_dir=self.config.prompts_dir)
        self.stats = empty_stats()
        self._grammar_for: tuple[Any, str | None] = (None, None)  # ((parent, open windows), grammar)
        self._own: dict[str, list[tuple[str, str]]] = {}   # parent key -> (source, outcome) of this process' edits
        self._valid_keys: set[str] = set()
        self._counter = 0                                  # proposals made: rotates temperature and hint

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = make_generator(self.config.generator)
            self._owns_generator = True
        return self._generator

    def close(self) -> None:
        """Stop the generator this proposer made (its llama.cpp server holds ~2 GB for the 1.5B; runs in
        one process, e.g. a benchmark's, left one server each). A generator passed in is the caller's."""
        if self._generator is not None and self._owns_generator:
            # keep what it serves now (an adapter loaded since), so a later proposal starts the same one
            self.config = self.config.model_copy(update={"generator": self._generator.config})
            self._generator.close()
            self._generator = None

    def bind(self, resources: Any) -> None:
        """Take the loop's evaluator (for build checks), generator config and newest adapter."""
        if self.evaluator is None:
            self.evaluator = getattr(resources, "evaluator", None)
        given = getattr(resources, "generator", None)
        if self._generator is None and given:
            try:
                gen_cfg = GeneratorConfig.model_validate(given)
            except ValueError as exc:
                raise ConfigError(f"bad generator config: {exc}") from exc
            self.config = self.config.model_copy(update={"generator": gen_cfg})
        adapter = getattr(resources, "adapter_path", None)
        if adapter:
            self.use_adapter(adapter)

    def use_adapter(self, path: str) -> None:
        """Generate with a new adapter version (the CE update's output) from now on."""
        current = self.config.generator
        if current.adapter == str(path):
            return
        version = current.adapter_version + 1 if current.adapter else 1
        if self._generator is None:
            gen_cfg = current.model_copy(update={"adapter": str(path), "adapter_version": version})
            self.config = self.config.model_copy(update={"generator": gen_cfg})
        else:
            self._generator.load_adapter(path, version=version)
            self.config = self.config.model_copy(update={"generator": self._generator.config})

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        if n > 1 and self.generator.batched:      # vLLM: all first answers in one batched call
            plans = [self._plan(ctx) for _ in range(n)]
            firsts: list[Generation | None] = [None] * n
            try:
                firsts = list(self.generator.generate_batch([p["prompt"] for p in plans], seeds=[p["seed"] for p in plans]))
            except GeneratorError as exc:
                log.warning("batched generation failed, falling back to one call per proposal: %s", exc)
            return [self._one(ctx, plan, first) for plan, first in zip(plans, firsts)]
        # one after another: each proposal sees the edits the previous ones made
        return [self._one(ctx, self._plan(ctx)) for _ in range(n)]

    def _plan(self, ctx: ProposalContext) -> dict[str, Any]:
        """This proposal's prompt, seed, temperature and hint."""
        cfg = self.config
        k = self._counter
        self._counter += 1
        hint = cfg.hints[k % len(cfg.hints)] if cfg.hints else None
        if ctx.operator is not None:   # the population's bandit chose the operator: its hint, or none
            hint = cfg.hints[int(ctx.operator[5:]) % len(cfg.hints)] \
                if ctx.operator.startswith("hint:") and cfg.hints else None
        temperature = cfg.temperatures[k % len(cfg.temperatures)] if cfg.temperatures else None
        history = ctx.history[:cfg.history]
        crossing = ctx.operator == "crossover" and ctx.second_parent is not None
        prompt = self.renderer.proposal_messages(
            task=ctx.task, source=ctx.incumbent.source, mode=cfg.mode, members=ctx.members,
            statistics=ctx.incumbent.statistics, history=history,
            tried=self.tried(ctx, skip={r.id for r in history}), hint=hint,
            inspirations=[archive_view(ctx.incumbent, r, ctx.members) for r in ctx.inspirations],
            second=archive_view(ctx.incumbent, ctx.second_parent, ctx.members) if crossing else None)
        return {"prompt": prompt, "seed": int(ctx.rng.integers(0, 2**31 - 1)), "temperature": temperature,
                "hint": hint}

    def tried(self, ctx: ProposalContext, *, skip: set[int] = frozenset()) -> list[dict[str, str]]:
        """Edits already tried on the parent, most relevant first: this proposer's own earlier answers,
        the history's children of the parent, then the history's programs nearest to the parent."""
        limit = self.config.show_tried
        if not limit:
            return []
        parent = ctx.incumbent.source
        seen, out = {program_key(parent)}, []

        def add(source: str, label: str) -> None:
            key = program_key(source)
            if key not in seen and len(out) < limit:
                seen.add(key)
                diff = compact_diff(parent, source)
                if diff:
                    out.append({"label": label, "diff": diff})

        for source, outcome in reversed(self._own.get(program_key(parent), [])):
            if outcome != EditFailure.no_change.value:     # its source is the parent with lines marked
                add(source, f"an earlier answer ({outcome})")
        others = [r for r in ctx.history if r.source and r.id not in skip and r.id != ctx.incumbent.id]
        for r in others:
            if r.parent_id == ctx.incumbent.id:
                add(r.source, f"#{r.id} {r.status}")
        for r in sorted(others, key=lambda r: -exact_jaccard(parent, r.source)):
            add(r.source, f"#{r.id} {r.status} (a similar program)")
        return out

    def tried_sources(self, ctx: ProposalContext) -> list[str]:
        """Programs already made from the parent: this proposer's own answers and the history's children."""
        parent = ctx.incumbent.source
        own = [source for source, _ in self._own.get(program_key(parent), [])]
        return own + [r.source for r in ctx.history if r.source and r.parent_id == ctx.incumbent.id]

    def tried_edits(self, ctx: ProposalContext) -> tuple[list[str], list[str], list[str]]:
        """What was tried on the parent, split by what it says about the lines it touched: (edits that
        worked, edits that only repeated a known program, edits that broke the program). Every answer
        of this proposer counts (so a line the model keeps repeating itself on fills up), and the
        history's children of the parent: failed in the sandbox or to build counts as broken. The
        history's children that are this proposer's own answers are not counted twice."""
        parent = ctx.incumbent.source
        worked, repeated, broken, own = [], [], [], set()
        for source, outcome in self._own.get(program_key(parent), []):
            own.add(program_key(source))
            (broken if outcome in BROKEN else repeated if outcome in REPEATED else worked).append(source)
        for r in ctx.history:
            if r.source and r.parent_id == ctx.incumbent.id and program_key(r.source) not in own:
                reason = r.reason if r.status == "proposal_failed" else None
                if r.status == "failed" or reason in BROKEN:
                    broken.append(r.source)
                else:
                    (repeated if reason in REPEATED else worked).append(r.source)
        return worked, repeated, broken

    def known_keys(self, ctx: ProposalContext) -> set[str]:
        """Identities of every program a new answer must not reproduce: the parent, what was tried
        from it, the history, elites and inspirations, and every valid program this proposer wrote."""
        records = [ctx.incumbent, *ctx.history, *ctx.elites, *ctx.inspirations]
        return ({program_key(r.source) for r in records if r.source} | set(self._valid_keys)
                | {program_key(source) for source in self.tried_sources(ctx)})

    def _one(self, ctx: ProposalContext, plan: dict[str, Any], first: Generation | None = None) -> Candidate:
        cfg = self.config
        parent = ctx.incumbent.source
        prompt, seed = plan["prompt"], plan["seed"]
        worked, repeated, broken = self.tried_edits(ctx)
        grammar, windows = self._grammar(parent, worked, repeated, broken)
        plan = {**plan, "windows": windows, "constrained": grammar is not None}
        update: dict[str, Any] = {"grammar": grammar}
        if plan["temperature"] is not None:
            update["temperature"] = plan["temperature"]
        base_sampling = self.generator.config.sampling.model_copy(update=update)
        known = self.known_keys(ctx) if cfg.reject_repeats else set()
        messages = list(prompt)
        attempts: list[dict[str, Any]] = []
        raw: list[str] = []
        failure, detail, source, build_reason = None, "", parent, None
        turn, redraws = 0, 0            # repair turns taken; re-draws of repeated answers in this turn
        broken_redraws = 0              # re-draws of answers that broke the program (before any repair)

        def reanchor() -> None:
            """The grammar again, with the line loads just updated (what the last attempt wasted)."""
            nonlocal grammar, base_sampling
            grammar, windows_after = self._grammar(parent, worked, repeated, broken)
            base_sampling = base_sampling.model_copy(update={"grammar": grammar})
            attempts[-1]["windows_after"] = windows_after

        while True:
            k = len(attempts)
            heat = redraws * cfg.resample_heat
            sampling = base_sampling.model_copy(update={"seed": seed + k, **(
                {"temperature": min(2.0, (base_sampling.temperature or 0.0) + heat)} if heat else {})})
            try:
                gen = first if k == 0 and first is not None else \
                    self.generator.generate(messages, n=1, sampling=sampling)[0]
            except GeneratorError as exc:
                failure = EditFailure.timeout if isinstance(exc, GeneratorTimeout) else EditFailure.generator_error
                detail = str(exc)
                attempts.append({"attempt": k, "turn": turn, "failure": failure.value, "detail": detail, "tokens": 0,
                                 "seconds": None, "finish_reason": None})
                break   # the backend already retried; the repair loop is for the model's answers
            raw.append(gen.text)
            result = apply_output(parent, gen.text, mode=cfg.mode, threshold=cfg.fuzzy_threshold,
                                  max_chars=cfg.max_answer_chars, truncated=gen.truncated)
            failure, detail, build_reason = result.failure, result.detail, None
            source = result.source or parent          # the failed program is kept when there is one
            if result.ok and program_key(result.source) in known:
                failure = EditFailure.duplicate
                detail = "the edit gives a program that was already tried (equal up to formatting and comments)"
            elif result.ok and cfg.check_build and self.evaluator is not None:
                check = self.evaluator.check(result.source)
                if not check.ok:
                    failure, build_reason = EditFailure.build_failed, check.reason.value
                    detail = f"{check.reason.value}: {check.detail}".strip()
            attempts.append({"attempt": k, "turn": turn, "failure": failure.value if failure else None,
                             "detail": detail, "build_reason": build_reason, "tokens": gen.tokens,
                             "prompt_tokens": gen.prompt_tokens, "seconds": gen.seconds,
                             "temperature": sampling.temperature,
                             "finish_reason": gen.finish_reason, "matched": result.fuzzy})
            if failure is None:
                break
            noop = lines_of_noop(parent, gen.text) if failure is EditFailure.no_change and grammar is not None else None
            if noop is not None:                       # under the grammar a no-op repeats the parent: same as a repeat
                self._own.setdefault(program_key(parent), []).append((noop, EditFailure.no_change.value))
            if failure is EditFailure.duplicate or noop is not None:
                if redraws < cfg.resample_repeats:     # the same conversation again, another sample
                    redraws += 1
                    seen = source if noop is None else noop
                    if noop is None:
                        self._own.setdefault(program_key(parent), []).append((source, EditFailure.duplicate.value))
                    if grammar is not None:            # ... anchored away from the lines it just repeated
                        repeated = repeated + [seen]
                        reanchor()
                    continue
                break                                  # not a mistake to repair: the model has no other idea here
            if (grammar is not None and turn == 0 and failure.value in BROKEN and source != parent
                    and broken_redraws < cfg.resample_broken):
                # A fresh sample anchored away from the lines this one broke: measured on the 1.5B, a repair
                # turn fixed 1 of 21 broken answers, a fresh draw on other lines builds about a third of the time.
                broken_redraws += 1
                self._own.setdefault(program_key(parent), []).append((source, failure.value))
                broken = broken + [source]
                reanchor()
                if grammar is not None:
                    continue
            if turn >= cfg.repair_retries:
                break
            turn, redraws = turn + 1, 0
            echo = gen.text[:cfg.repair_echo_chars] if gen.text.strip() else "(empty answer)"
            messages = list(prompt) + [{"role": "assistant", "content": echo},
                                       self.renderer.repair_message(mode=cfg.mode, failure=failure.value,
                                                                    detail=detail[:2000])]
        if source != parent:
            outcome = "valid" if failure is None else failure.value
            self._own.setdefault(program_key(parent), []).append((source, outcome))
        return self._candidate(ctx, plan, raw, attempts, failure, detail, source, build_reason)

    def _grammar(self, parent: str, tried: list[str] = (), repeated: list[str] = (),
                 broken: list[str] = ()) -> tuple[str | None, dict[str, int] | None]:
        """The delta grammar for `parent` (None: unconstrained) and how many SEARCH windows it leaves
        open of how many, after closing the lines already tried (open_windows)."""
        if self.config.mode != "delta" or not self.config.constrained or not self.generator.accepts_grammar:
            return None, None
        cfg = self.config
        windows = open_windows(parent, tried, avoid_after=cfg.avoid_tried_lines, keep=cfg.keep_windows,
                               broken=broken, broken_weight=cfg.broken_line_load,
                               repeated=repeated, repeated_weight=cfg.repeat_line_load)
        key = (parent, tuple(windows))
        if self._grammar_for[0] != key:
            try:
                self._grammar_for = (key, delta_grammar(parent, max_blocks=cfg.max_blocks, windows=windows))
            except ValueError:  # no unique line to anchor on: generate unconstrained
                self._grammar_for = (key, None)
        if self._grammar_for[1] is None:
            return None, None
        return self._grammar_for[1], {"open": len(windows), "all": len(unique_windows(parent))}

    def _candidate(self, ctx, plan, raw, attempts, failure, detail, source, build_reason) -> Candidate:
        parent = ctx.incumbent.source
        tokens = sum(a["tokens"] or 0 for a in attempts)
        seconds = sum(a["seconds"] or 0.0 for a in attempts)
        key = program_key(source)
        distinct = failure is None and key not in self._valid_keys
        if failure is None:
            self._valid_keys.add(key)
        self._count(attempts, failure, tokens, seconds, distinct)
        meta = {"prompt": plan["prompt"], "raw_outputs": raw, "attempts": attempts, "mode": self.config.mode,
                "tokens": tokens,
                "prompt_tokens": sum(a.get("prompt_tokens") or 0 for a in attempts), "seconds": seconds, "seed": plan["seed"], "temperature": plan["temperature"],
                "hint": plan["hint"], "program_key": key, "distinct": distinct,
                "generator": self.generator.describe(),
                "constrained": plan["constrained"], "windows": plan["windows"],
                "failure_reasons": [a["failure"] for a in attempts if a["failure"]],
                "diff": unified_diff(parent, source) if source != parent else ""}
        if build_reason:
            meta["build_reason"] = build_reason
        return Candidate(source=source, parent_id=ctx.incumbent.id, proposer=self.name, meta=meta,
                         failure=failure.value if failure else None, failure_detail=detail if failure else "")

    def _count(self, attempts: list[dict[str, Any]], failure: EditFailure | None, tokens: int, seconds: float,
               distinct: bool) -> None:
        s = self.stats
        s["proposals"] += 1
        s["distinct_valid"] = s.get("distinct_valid", 0) + int(distinct)
        s["attempts"] += len(attempts)
        s["tokens"] += tokens
        s["seconds"] += seconds
        if failure is None:
            s["valid"] += 1
            s["valid_first_try"] += int(len(attempts) == 1)
        else:
            s["final_failures"][failure.value] = s["final_failures"].get(failure.value, 0) + 1
        counts = Counter(a["failure"] for a in attempts if a["failure"])
        for reason, k in counts.items():
            s["attempt_failures"][reason] = s["attempt_failures"].get(reason, 0) + k

    def state_dict(self) -> dict[str, Any]:
        gen_cfg = self._generator.config if self._generator is not None else self.config.generator
        return {"stats": self.stats, "adapter": gen_cfg.adapter, "adapter_version": gen_cfg.adapter_version,
                "counter": self._counter, "valid_keys": sorted(self._valid_keys)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = {**empty_stats(), **state.get("stats", {})}
        self._counter = int(state.get("counter", 0))
        self._valid_keys = set(state.get("valid_keys", []))
        current = self._generator.config if self._generator is not None else self.config.generator
        if state.get("adapter") and not current.adapter:     # an adapter bound by the loop is newer: keep it
            path, version = state["adapter"], int(state.get("adapter_version") or 1)
            if self._generator is None:
                gen_cfg = current.model_copy(update={"adapter": path, "adapter_version": version})
                self.config = self.config.model_copy(update={"generator": gen_cfg})
            else:
                self._generator.load_adapter(path, version=version)
                self.config = self.config.model_copy(update={"generator": self._generator.config})
