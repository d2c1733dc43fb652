"""The LLM sees the population: inspirations (other archive members, their numbers and their diff
against the parent) and, for crossover, the second parent; without them the prompt is unchanged."""
from __future__ import annotations

import numpy as np

from agent.proposers.base import ProgramRecord, ProposalContext
from agent.proposers.llm import LLMProposer, LLMProposerConfig, archive_view
from agent.proposers.mutation import mutate
from evaluator.tasks import get_task
from prompts import PromptRenderer
from tests.test_llm_proposer import ScriptedGenerator, block

TASK = get_task("digits")
SEED = TASK.seed_source()
STATS = {"member_error": 0.05, "diversity": 0.005, "accuracy": 0.97, "correlation": 0.9, "variance": 0.02,
         "ensemble_error": 0.046}
PARENT = ProgramRecord(id=1, source=SEED, status="seed", statistics=STATS, param_count=26122,
                       latency={"batch_1_ms": 0.04})
OTHER_SOURCE, _ = mutate(SEED, np.random.default_rng(0), edits=2)
OTHER = ProgramRecord(id=5, source=OTHER_SOURCE, status="accepted", statistics=dict(STATS, member_error=0.045),
                      param_count=13061, latency={"batch_1_ms": 0.03})


def test_archive_view_states_the_numbers_and_the_diff_against_the_parent():
    view = archive_view(PARENT, OTHER, 5)
    assert view["id"] == 5 and view["params"] == 13061
    assert abs(view["delta_error"] - (-0.005)) < 1e-12
    assert abs(view["params_ratio"] - 13061 / 26122) < 1e-12 and abs(view["latency_ratio"] - 0.75) < 1e-12
    assert view["diff"].startswith("--- #1\n+++ #5")
    unmeasured = archive_view(PARENT, ProgramRecord(id=6, source=SEED, status="accepted"), 5)
    assert unmeasured["latency_ratio"] is None and unmeasured["params_ratio"] is None


def test_prompt_pieces_appear_only_when_given():
    r = PromptRenderer()
    plain = r.proposal_messages(task=TASK, source=SEED, mode="delta", members=5, statistics=STATS)[1]["content"]
    assert "Second parent" not in plain and "Other programs in the archive" not in plain
    view = archive_view(PARENT, OTHER, 5)
    rich = r.proposal_messages(task=TASK, source=SEED, mode="delta", members=5, statistics=STATS,
                               inspirations=[view], second=view)[1]["content"]
    assert "## Second parent: combine the two programs" in rich and "Program #5" in rich
    assert "## Other programs in the archive" in rich and "13061 parameters (0.50x)" in rich
    added = [line for line in view["diff"].splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added and all(line in rich for line in added)
    assert rich.index("Current program") < rich.index("Second parent") < rich.index("Output format")


def test_the_llm_proposer_shows_the_second_parent_only_for_crossover():
    answer = block("HIDDEN = 128", "HIDDEN = 96")
    for operator, expect in (("crossover", True), ("mutate", False)):
        gen = ScriptedGenerator([answer])
        prop = LLMProposer(config=LLMProposerConfig(check_build=False), generator=gen)
        ctx = ProposalContext(task=TASK, incumbent=PARENT, history=[], elites=[], cycle=1,
                              rng=np.random.default_rng(0), second_parent=OTHER, inspirations=[OTHER],
                              operator=operator, island=0)
        (cand,) = prop.propose(ctx, 1)
        assert cand.failure is None and "HIDDEN = 96" in cand.source
        prompt = gen.calls[0]["messages"][1]["content"]
        assert ("Second parent" in prompt) is expect
        assert "Other programs in the archive" in prompt
