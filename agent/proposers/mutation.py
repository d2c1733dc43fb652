"""Baselines without an LLM: random mutation of the incumbent, regularized (aging) evolution, and
crossover of two programs (uniform over the hunks where they differ).

Mutations edit the program text token by token (numbers, activation names), so formatting and
comments survive and the stored diff shows exactly what changed.
"""
from __future__ import annotations

import difflib
import io
import tokenize

import numpy as np

from agent.proposers.base import Candidate, ProgramRecord, ProposalContext, Proposer, register_proposer
from evaluator.parse_lock import parse_python
from evaluator.statistics import predicted_from_dict

ACTIVATIONS = ["ReLU", "GELU", "Tanh", "SiLU", "ELU", "LeakyReLU", "Sigmoid", "Mish"]


def _sites(source: str) -> list[tuple[str, tokenize.TokenInfo]]:
    """Mutable tokens: numeric literals and activation class names."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    sites = []
    for tok in toks:
        if tok.type == tokenize.NUMBER and not tok.string.lower().endswith("j"):
            sites.append(("number", tok))
        elif tok.type == tokenize.NAME and tok.string in ACTIVATIONS:
            sites.append(("activation", tok))
    return sites


def _new_number(text: str, rng: np.random.Generator) -> str:
    value = float(text.replace("_", ""))
    is_int = all(c.isdigit() or c == "_" for c in text)
    if is_int:
        value = int(value)
        if value <= 1:
            return str(value + 1)
        return str(max(1, int(round(value * rng.choice([0.5, 0.75, 1.5, 2.0])))))
    if 0.0 <= value <= 1.0:  # a rate (dropout, fraction): move it, stay in [0, 1]
        return f"{float(np.clip(value + rng.choice([-0.2, -0.1, 0.1, 0.2]), 0.0, 0.95)):.2f}"
    return f"{value * rng.choice([0.3, 0.5, 2.0, 3.0]):.4g}"


def float_or_none(text: str) -> float | str:
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return text


def mutate(source: str, rng: np.random.Generator, *, edits: int = 1) -> tuple[str, list[str]]:
    """Apply `edits` random token edits; returns the new source and a description of each edit."""
    lines = source.splitlines(keepends=True)
    done: list[str] = []
    for _ in range(edits):
        sites = _sites("".join(lines))
        if not sites:
            break
        kind, tok = sites[int(rng.integers(len(sites)))]
        (row, col), (_, end) = tok.start, tok.end
        new = tok.string
        for _ in range(10):  # a clipped rate can land where it started; draw again
            if kind == "number":
                new = _new_number(tok.string, rng)
            else:
                new = str(rng.choice([a for a in ACTIVATIONS if a != tok.string]))
            if float_or_none(new) != float_or_none(tok.string):
                break
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[end:]
        done.append(f"line {row}: {tok.string} → {new}")
    return "".join(lines), done


@register_proposer("random")
class RandomMutation(Proposer):
    """Mutate the incumbent at random (1–3 token edits)."""

    def __init__(self, *, max_edits: int = 3) -> None:
        self.max_edits = max_edits

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        out = []
        for _ in range(n):
            source, edits = mutate(ctx.incumbent.source, ctx.rng, edits=int(ctx.rng.integers(1, self.max_edits + 1)))
            out.append(Candidate(source=source, parent_id=ctx.incumbent.id, proposer=self.name, meta={"edits": edits}))
        return out


def predicted_error(record: ProgramRecord, members: int) -> float:
    return predicted_from_dict(record.statistics, members)


@register_proposer("evolution")
class RegularizedEvolution(Proposer):
    """Aging evolution (Real et al. 2019): the population is the P most recent evaluated programs
    (the oldest dies as new ones arrive), or, in the population search, the island's Pareto archive;
    a tournament of S picks the parent by predicted M-ensemble error; the child is a mutation of it."""

    def __init__(self, *, population: int = 10, tournament: int = 3, max_edits: int = 2) -> None:
        self.population, self.tournament, self.max_edits = population, tournament, max_edits

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        # in the population search the island's archive is the population; otherwise the recent programs
        pool = ctx.elites if ctx.island is not None else ctx.history
        alive = [r for r in pool if r.statistics and r.source][: self.population]
        if ctx.incumbent not in alive:
            alive.append(ctx.incumbent)
        out = []
        for _ in range(n):
            picks = ctx.rng.choice(len(alive), size=min(self.tournament, len(alive)), replace=False)
            parent = min((alive[i] for i in picks), key=lambda r: predicted_error(r, ctx.members))
            source, edits = mutate(parent.source, ctx.rng, edits=int(ctx.rng.integers(1, self.max_edits + 1)))
            out.append(Candidate(source=source, parent_id=parent.id, proposer=self.name, meta={"edits": edits}))
        return out


def crossover(first: str, second: str, rng: np.random.Generator, *, rate: float = 0.5) -> tuple[str, list[str]]:
    """Uniform crossover: start from `first` and take each line hunk where `second` differs with
    probability `rate`, at least one and (with two or more hunks) not all, so the child is a new
    program whenever the parents differ. Returns the child and the line ranges taken from `second`."""
    a, b = first.splitlines(keepends=True), second.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    hunks = [i for i, op in enumerate(ops) if op[0] != "equal"]
    if not hunks:
        return first, []
    take = rng.random(len(hunks)) < rate
    if not take.any():
        take[int(rng.integers(len(hunks)))] = True
    if take.all() and len(hunks) > 1:
        take[int(rng.integers(len(hunks)))] = False
    chosen = {hunks[i] for i in np.flatnonzero(take)}
    out, taken = [], []
    for i, (tag, i1, i2, j1, j2) in enumerate(ops):
        if i in chosen:
            out.extend(b[j1:j2])
            taken.append(f"lines {i1 + 1}-{i2} ← second parent lines {j1 + 1}-{j2}")
        else:
            out.extend(a[i1:i2])
    return "".join(out), taken


@register_proposer("crossover")
class Crossover(Proposer):
    """Combine the parent with a second program: the population's second parent when the loop
    gives one, else a random other elite. Children that do not parse are retried with a new draw."""

    def __init__(self, *, rate: float = 0.5, tries: int = 5) -> None:
        self.rate, self.tries = rate, tries

    def propose(self, ctx: ProposalContext, n: int) -> list[Candidate]:
        out = []
        for _ in range(n):
            second = ctx.second_parent
            if second is None:
                others = [r for r in ctx.elites if r.id != ctx.incumbent.id and r.source and r.source != ctx.incumbent.source]
                second = others[int(ctx.rng.integers(len(others)))] if others else None
            if second is None:
                out.append(Candidate(source="", parent_id=ctx.incumbent.id, proposer=self.name,
                                     failure="no_second_parent", failure_detail="no other program to cross with yet"))
                continue
            for _ in range(self.tries):
                source, taken = crossover(ctx.incumbent.source, second.source, ctx.rng, rate=self.rate)
                if taken and _parses(source):
                    break
            else:
                out.append(Candidate(source="", parent_id=ctx.incumbent.id, proposer=self.name,
                                     failure="no_valid_child", failure_detail=f"parents #{ctx.incumbent.id} and #{second.id}",
                                     meta={"second_parent": second.id}))
                continue
            out.append(Candidate(source=source, parent_id=ctx.incumbent.id, proposer=self.name,
                                 meta={"second_parent": second.id, "taken": taken}))
        return out


def _parses(source: str) -> bool:
    try:
        parse_python(source)
    except (SyntaxError, ValueError):
        return False
    return True
