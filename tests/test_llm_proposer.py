"""The `llm` proposer: prompt rendering, edit application, the repair loop (exact errors fed
back), typed failure reasons counted in stats for every kind of bad model output, build checks in
the real sandbox, and one real generation with the bundled model."""
from __future__ import annotations

import numpy as np
import pytest

from agent.generators.base import Generation, Generator, GeneratorConfig, GeneratorTimeout, SamplingConfig
from agent.proposers.base import LAZY_PROPOSERS, ProgramRecord, ProposalContext, make_proposer
from agent.proposers.llm import LLMProposer, LLMProposerConfig
from evaluator.failures import ConfigError
from evaluator.tasks import get_task
from prompts import PromptError, PromptRenderer

TASK = get_task("digits")
PARENT = TASK.seed_source()


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


class ScriptedGenerator(Generator):
    """A real Generator whose answers are a fixed script (to drive the repair loop exactly)."""
    name = "scripted"

    def __init__(self, answers, *, truncate_long: bool = False) -> None:
        super().__init__(config=GeneratorConfig())
        self.answers, self.calls = list(answers), []
        self.truncate_long = truncate_long

    def generate(self, messages, *, n=1, sampling: SamplingConfig | None = None):
        self.calls.append({"messages": messages, "seed": (sampling or self.config.sampling).seed})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [Generation(text=answer, tokens=max(1, len(answer) // 4), seconds=0.01,
                           finish_reason="length" if self.truncate_long and len(answer) > 1000 else "stop")]


def context(history=(), statistics=None, seed=0) -> ProposalContext:
    return ProposalContext(task=TASK, incumbent=ProgramRecord(id=7, source=PARENT, status="accepted",
                                                              statistics=statistics),
                           history=list(history), elites=[], cycle=1, rng=np.random.default_rng(seed))


def proposer(answers, **cfg) -> tuple[LLMProposer, ScriptedGenerator]:
    gen = ScriptedGenerator(answers)
    return LLMProposer(config=LLMProposerConfig(**cfg), generator=gen), gen


def test_registered_lazily():
    assert LAZY_PROPOSERS["llm"] == "agent.proposers.llm"
    p = make_proposer("llm", config={"mode": "full", "repair_retries": 0})
    assert isinstance(p, LLMProposer) and p.config.mode == "full"
    with pytest.raises(ConfigError):
        make_proposer("llm", config={"mode": "poetry"})


def test_valid_delta_becomes_a_candidate_with_diff_and_meta():
    p, gen = proposer([block("HIDDEN = 128", "HIDDEN = 192")])
    (c,) = p.propose(context(), 1)
    assert c.failure is None and "HIDDEN = 192" in c.source and c.parent_id == 7 and c.proposer == "llm"
    assert "+HIDDEN = 192" in c.meta["diff"] and c.meta["raw_outputs"] == [block("HIDDEN = 128", "HIDDEN = 192")]
    assert c.meta["prompt"][1]["content"] in gen.calls[0]["messages"][1]["content"]
    assert c.meta["tokens"] > 0 and len(c.meta["attempts"]) == 1
    assert p.stats["valid"] == 1 and p.stats["valid_first_try"] == 1


def test_repair_loop_feeds_the_exact_error_back():
    p, gen = proposer([block("HIDDEN = 100", "HIDDEN = 64\nDEPTH = 9"),   # not in the parent
                       block("HIDDEN = 128", "HIDDEN = 64")], repair_retries=2)
    (c,) = p.propose(context(), 1)
    assert c.failure is None and "HIDDEN = 64" in c.source
    assert [a["failure"] for a in c.meta["attempts"]] == ["search_not_found", None]
    second = gen.calls[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": block("HIDDEN = 100", "HIDDEN = 64\nDEPTH = 9")}
    assert "search_not_found" in second[-1]["content"] and "closest: lines" in second[-1]["content"]
    assert gen.calls[1]["seed"] == gen.calls[0]["seed"] + 1
    assert p.stats["attempt_failures"] == {"search_not_found": 1} and p.stats["valid_first_try"] == 0


BAD_OUTPUTS = {
    "empty": "",
    "prose_only": "You should make the network wider, it will help.",
    "unclosed_block": "<<<<<<< SEARCH\nHIDDEN = 128\n=======\nHIDDEN = 256\n",
    "search_not_found": block("model = ResNet50()", "model = ResNet18()"),
    # the first block duplicates a line, so the second block's SEARCH then occurs twice
    "ambiguous_match": block("HIDDEN = 128", "HIDDEN = 128\nDEPTH = 2") + block("DEPTH = 2", "DEPTH = 3"),
    "syntax_error": block("DEPTH = 2", "DEPTH = = 2"),
    "too_long": "<<<<<<< SEARCH\n" + "x = 1\n" * 10_000,
}


@pytest.mark.parametrize("reason", sorted(BAD_OUTPUTS))
def test_each_bad_output_is_a_typed_counted_failure(reason):
    p, gen = proposer([BAD_OUTPUTS[reason]] * 3, repair_retries=2)
    (c,) = p.propose(context(), 1)
    assert c.failure == reason and c.failure_detail
    assert len(gen.calls) == 3 and len(c.meta["attempts"]) == 3
    assert p.stats["final_failures"] == {reason: 1} and p.stats["attempt_failures"] == {reason: 3}
    if reason == "too_long":       # the repair turn replays only a bounded part of the answer
        assert len(gen.calls[1]["messages"][-2]["content"]) <= p.config.repair_echo_chars


def test_generator_timeout_is_a_failure_not_a_crash_and_not_repaired():
    p, gen = proposer([GeneratorTimeout("stalled"), block("HIDDEN = 128", "HIDDEN = 64")], repair_retries=2)
    c1, c2 = p.propose(context(), 2)
    assert c1.failure == "timeout" and c1.source == PARENT and len(gen.calls) == 2
    assert c2.failure is None
    assert p.stats["final_failures"] == {"timeout": 1} and p.stats["proposals"] == 2


def test_a_cycle_of_mixed_answers_never_raises():
    answers = list(BAD_OUTPUTS.values()) + [block("DROPOUT = 0.1", "DROPOUT = 0.2")]
    p, _ = proposer(answers, repair_retries=0)
    cands = p.propose(context(), len(answers))
    assert [c.failure for c in cands] == list(BAD_OUTPUTS) + [None]
    assert sum(p.stats["final_failures"].values()) == len(BAD_OUTPUTS) and p.stats["valid"] == 1
    state = p.state_dict()
    fresh, _ = proposer([])
    fresh.load_state_dict(state)
    assert fresh.stats == p.stats


def test_full_mode():
    new = PARENT.replace("DEPTH = 2", "DEPTH = 3")
    p, gen = proposer(["Here:\n```python\n" + new + "```"], mode="full")
    (c,) = p.propose(context(), 1)
    assert c.failure is None and c.source == new
    assert "complete new program" in gen.calls[0]["messages"][1]["content"]


def test_prompt_shows_numbered_parent_statistics_and_history():
    history = [ProgramRecord(id=5, source="", status="rejected", reason="not better than the bound",
                             diff="-HIDDEN = 128\n+HIDDEN = 8\n"),
               ProgramRecord(id=4, source="", status="failed", reason="shape_mismatch")]
    p, gen = proposer([block("HIDDEN = 128", "HIDDEN = 64")])
    p.propose(context(history, statistics={"member_error": 0.1234, "correlation": 0.9}), 1)
    user = gen.calls[0]["messages"][1]["content"]
    assert " 4 | HIDDEN = 128" in user and "19 |     return nn.Sequential(*layers)" in user
    assert "member_error: 0.1234" in user and "correlation: 0.9000" in user
    assert "#5 rejected: not better than the bound" in user and "+HIDDEN = 8" in user
    assert "#4 failed: shape_mismatch" in user and "<<<<<<< SEARCH" in user
    assert gen.calls[0]["messages"][0]["role"] == "system"


def test_user_prompt_override(tmp_path):
    (tmp_path / "system.j2").write_text("Custom system for {{ 'ensnas' }}.")
    p, gen = proposer([block("HIDDEN = 128", "HIDDEN = 64")], prompts_dir=str(tmp_path))
    p.propose(context(), 1)
    assert gen.calls[0]["messages"][0]["content"] == "Custom system for ensnas.\n"
    (tmp_path / "propose.j2").write_text("{{ not_a_variable }}")
    with pytest.raises(PromptError, match="not_a_variable"):
        PromptRenderer(prompts_dir=tmp_path).proposal_messages(task=TASK, source=PARENT, mode="delta", members=5)
    with pytest.raises(PromptError, match="not a directory"):
        PromptRenderer(prompts_dir=tmp_path / "missing")


def test_bind_takes_the_loops_evaluator_and_generator_config():
    from agent.proposers.base import LoopResources
    p = LLMProposer(config={"mode": "delta"})
    p.bind(LoopResources(evaluator="EV", generator={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
                         run_dir=None))
    assert p.evaluator == "EV" and p.config.generator.backend == "openai"
    assert p.generator.name == "openai"      # built lazily from the bound config


@pytest.mark.slow
def test_build_check_in_the_sandbox_feeds_the_build_error_back(digits_evaluator):
    bad = block("    layers.append(nn.Linear(width, num_classes))", "    layers.append(nn.Linear(width, 3))")
    good = block("HIDDEN = 128", "HIDDEN = 96")
    gen = ScriptedGenerator([bad, good])
    p = LLMProposer(config=LLMProposerConfig(repair_retries=1), generator=gen, evaluator=digits_evaluator)
    (c,) = p.propose(context(), 1)
    assert c.failure is None and "HIDDEN = 96" in c.source
    first = c.meta["attempts"][0]
    assert first["failure"] == "build_failed" and first["build_reason"] == "shape_mismatch"
    assert "shape_mismatch" in gen.calls[1]["messages"][-1]["content"]
    gen2 = ScriptedGenerator([bad])
    p2 = LLMProposer(config=LLMProposerConfig(repair_retries=0), generator=gen2, evaluator=digits_evaluator)
    (c2,) = p2.propose(context(), 1)
    assert c2.failure == "build_failed" and c2.meta["build_reason"] == "shape_mismatch"
    assert "nn.Linear(width, 3)" in c2.source          # the failed program is kept for the store


@pytest.mark.slow
def test_bundled_model_proposes_for_real():
    """The transformers backend on a bundled GGUF (SmolLM2-135M-Instruct, de-quantised) end to end, no repairs."""
    import torch
    torch.set_num_threads(1)
    p = LLMProposer(config=LLMProposerConfig(repair_retries=0, generator=GeneratorConfig(
        model="smollm2-135m", threads=1, sampling=SamplingConfig(temperature=0.4, max_new_tokens=48))))
    (c,) = p.propose(context(), 1)
    assert c.meta["tokens"] >= 1 and c.meta["raw_outputs"][0] is not None
    assert c.meta["generator"]["model"] == "smollm2-135m"
    assert c.failure is None or c.failure in {"empty", "prose_only", "unclosed_block", "malformed_block",
                                              "search_not_found", "ambiguous_match", "no_change",
                                              "syntax_error", "too_long"}
    assert p.stats["proposals"] == 1


class BatchedScripted(ScriptedGenerator):
    batched = True

    def generate_batch(self, conversations, *, sampling=None, seeds=None):
        self.batch_calls = getattr(self, "batch_calls", []) + [seeds]
        return [self.generate(m, sampling=SamplingConfig(seed=s))[0] for m, s in zip(conversations, seeds)]


def test_batched_backends_get_all_first_answers_in_one_call():
    gen = BatchedScripted([block("HIDDEN = 128", "HIDDEN = 64"), "prose", block("DEPTH = 2", "DEPTH = 3"),
                           block("DROPOUT = 0.1", "DROPOUT = 0.3")])
    p = LLMProposer(config=LLMProposerConfig(repair_retries=1), generator=gen)
    cands = p.propose(context(), 3)
    assert len(gen.batch_calls) == 1 and len(gen.batch_calls[0]) == 3
    assert [c.failure for c in cands] == [None, None, None]
    assert [len(c.meta["attempts"]) for c in cands] == [1, 2, 1]      # the prose answer was repaired
    assert "DROPOUT = 0.3" in cands[1].source and "DEPTH = 3" in cands[2].source


def test_failed_candidate_source_belongs_to_its_last_attempt():
    p, _ = proposer([block("DEPTH = 2", "DEPTH = = 2"), "just prose"], repair_retries=1)
    (c,) = p.propose(context(), 1)
    assert c.failure == "prose_only" and c.source == PARENT and c.meta["diff"] == ""
    p, _ = proposer(["just prose", block("DEPTH = 2", "DEPTH = = 2")], repair_retries=1)
    (c,) = p.propose(context(), 1)
    assert c.failure == "syntax_error" and "DEPTH = = 2" in c.source and "+DEPTH = = 2" in c.meta["diff"]


def test_adapter_versions_follow_the_loop(tmp_path):
    from agent.proposers.base import LoopResources
    p = LLMProposer(config={"mode": "delta"})
    p.bind(LoopResources(evaluator=None, generator={}, run_dir=tmp_path, adapter_path=str(tmp_path / "a2")))
    assert p.config.generator.adapter == str(tmp_path / "a2") and p.config.generator.adapter_version == 1
    p.use_adapter(str(tmp_path / "a3"))
    assert p.config.generator.adapter_version == 2
    p.load_state_dict({"stats": {}, "adapter": str(tmp_path / "a1")})    # older saved state does not win
    assert p.config.generator.adapter == str(tmp_path / "a3")
    fresh = LLMProposer(config={"mode": "delta"})
    fresh.load_state_dict(p.state_dict())
    assert fresh.config.generator.adapter == str(tmp_path / "a3") and fresh.config.generator.adapter_version == 2


class GrammarScripted(ScriptedGenerator):
    """Scripted answers from a backend that says it takes a grammar; records what it was given."""

    @property
    def accepts_grammar(self) -> bool:
        return True

    def generate(self, messages, *, n=1, sampling: SamplingConfig | None = None):
        self.grammars = getattr(self, "grammars", []) + [(sampling or self.config.sampling).grammar]
        return super().generate(messages, n=n, sampling=sampling)


def test_grammar_goes_only_to_backends_that_take_one_and_only_in_delta_mode():
    from agent.delta_grammar import delta_grammar
    gen = GrammarScripted([block("HIDDEN = 128", "HIDDEN = 64")])
    (c,) = LLMProposer(config=LLMProposerConfig(check_build=False), generator=gen).propose(context(), 1)
    assert gen.grammars == [delta_grammar(PARENT)] and c.meta["constrained"] is True
    plain = ScriptedGenerator([block("HIDDEN = 128", "HIDDEN = 64")])
    (c,) = LLMProposer(config=LLMProposerConfig(check_build=False), generator=plain).propose(context(), 1)
    assert c.meta["constrained"] is False  # a backend without grammar support generates unconstrained
    for cfg in ({"mode": "full"}, {"constrained": False}):
        gen = GrammarScripted(["```python\n" + PARENT.replace("128", "64") + "```" if cfg.get("mode") else
                               block("HIDDEN = 128", "HIDDEN = 64")])
        LLMProposer(config=LLMProposerConfig(check_build=False, **cfg), generator=gen).propose(context(), 1)
        assert gen.grammars == [None]


@pytest.mark.slow
def test_default_backend_proposes_under_the_delta_grammar(digits_evaluator):
    """The default generator (bundled GGUF behind the private llama.cpp server) through the
    proposer and the sandbox build check: no answer may fail on form."""
    p = LLMProposer(config=LLMProposerConfig(repair_retries=0, generator=GeneratorConfig(
        backend="llama_cpp", sampling=SamplingConfig(temperature=0.7, max_new_tokens=256))),
        evaluator=digits_evaluator)
    try:
        candidates = p.propose(context(seed=3), 3)
    finally:
        p.generator.close()
    for c in candidates:
        assert c.meta["constrained"] is True
        # too_long: cut off at max tokens mid-line, which no grammar can prevent; never a failure of form
        assert c.failure in (None, "syntax_error", "no_change", "build_failed", "too_long"), \
            (c.failure, c.meta["raw_outputs"])


def test_repeated_ideas_are_shown_as_tried_and_counted_once():
    """The defect: ten proposals were nine copies of HIDDEN = 128 -> 64. Each proposal now sees the
    edits already tried on its parent, and distinct valid edits are counted by program identity."""
    same = block("HIDDEN = 128", "HIDDEN = 64")
    p, gen = proposer([same, block("HIDDEN = 128", "HIDDEN  =  64  # same"), block("DEPTH = 2", "DEPTH = 3")],
                      repair_retries=0, reject_repeats=False)
    cands = p.propose(context(), 3)
    assert [c.failure for c in cands] == [None, None, None]
    prompts = [call["messages"][1]["content"] for call in gen.calls]
    assert "Already tried" not in prompts[0]
    assert "Already tried" in prompts[1] and "+HIDDEN = 64" in prompts[1]
    assert [c.meta["distinct"] for c in cands] == [True, False, True]        # formatting is not a new idea
    assert p.stats["valid"] == 3 and p.stats["distinct_valid"] == 2
    temps = [c.meta["temperature"] for c in cands]
    assert len(set(temps)) == 3 and [call["seed"] for call in gen.calls] == [c.meta["seed"] for c in cands]


def test_operator_hints_rotate_and_history_children_are_tried():
    from agent.proposers.base import ProgramRecord
    from agent.proposers.llm import OPERATOR_HINTS, edit_counts
    p, gen = proposer([block("DEPTH = 2", "DEPTH = 3")] * 3, repair_retries=0, hints=OPERATOR_HINTS[:2],
                      show_tried=4, reject_repeats=False)
    ctx = context()
    child = ProgramRecord(id=9, source=PARENT.replace("DROPOUT = 0.1", "DROPOUT = 0.5"), status="rejected",
                          parent_id=ctx.incumbent.id, proposer="evolution")
    ctx.history = [child]
    p.config = p.config.model_copy(update={"history": 0})       # not in the history section: in the tried one
    cands = p.propose(ctx, 3)
    assert [c.meta["hint"] for c in cands] == [OPERATOR_HINTS[0], OPERATOR_HINTS[1], OPERATOR_HINTS[0]]
    assert "+DROPOUT = 0.5" in gen.calls[0]["messages"][1]["content"] and "#9 rejected" in gen.calls[0]["messages"][1]["content"]

    class Row:
        def __init__(self, status, source, reason=None):
            self.proposer, self.status, self.source, self.reason = "llm", status, source, reason
    rows = [Row("accepted", cands[0].source), Row("rejected", cands[1].source), Row("proposal_failed", PARENT, "timeout")]
    assert edit_counts(rows) == {"proposed": 3, "valid": 2, "distinct": 1, "evaluated": 2, "accepted": 1,
                                 "failed_by_reason": {"timeout": 1}}


def test_a_repeated_program_is_drawn_again_and_never_passed_on():
    """The defect's class: an answer that reproduces a known program (an earlier answer, however
    formatted or commented; a program in the history; the parent itself behind a comment) was
    passed on as a new proposal. Now it is re-drawn (new seed, hotter) within the proposal, and
    fails as `duplicate` once the re-draws are spent; no repair turn is used on it."""
    a = block("HIDDEN = 128", "HIDDEN = 64")
    a_again = block("HIDDEN = 128", "HIDDEN  =  64  # smaller")
    b = block("DEPTH = 2", "DEPTH = 3")
    p, gen = proposer([a, a_again, b, a, a_again, a], repair_retries=2, resample_repeats=2)
    first, second, third = p.propose(context(), 3)
    assert first.failure is None and second.failure is None and "DEPTH = 3" in second.source
    assert [x["failure"] for x in second.meta["attempts"]] == ["duplicate", None]
    assert second.meta["attempts"][1]["temperature"] > second.meta["attempts"][0]["temperature"]
    assert gen.calls[2]["seed"] == gen.calls[1]["seed"] + 1
    assert gen.calls[2]["messages"] == gen.calls[1]["messages"]              # a re-draw, not a repair turn
    assert third.failure == "duplicate" and len(third.meta["attempts"]) == 3  # 2 re-draws, then given up
    assert p.stats["valid"] == 2 and p.stats["distinct_valid"] == 2
    assert p.stats["final_failures"] == {"duplicate": 1} and p.stats["attempt_failures"] == {"duplicate": 4}

    seen = ProgramRecord(id=3, source=PARENT.replace("DROPOUT = 0.1", "DROPOUT = 0.3"), status="rejected")
    p, _ = proposer([block("DROPOUT = 0.1", "DROPOUT = 0.3"), block("HIDDEN = 128", "HIDDEN = 128  # keep")],
                    repair_retries=0, resample_repeats=0)
    from_history, same_as_parent = p.propose(context(history=[seen]), 2)
    assert from_history.failure == "duplicate" and same_as_parent.failure == "duplicate"


def test_lines_tried_on_the_parent_are_closed_as_anchors():
    """Under the delta grammar, the SEARCH windows over a line that `avoid_tried_lines` earlier
    edits of the parent changed are no longer offered (at least `keep_windows` stay open)."""
    answers = [block("HIDDEN = 128", "HIDDEN = 64"), block("HIDDEN = 128", "HIDDEN = 256"),
               block("DEPTH = 2", "DEPTH = 3")]
    gen = GrammarScripted(answers)
    p = LLMProposer(config=LLMProposerConfig(check_build=False, avoid_tried_lines=2, repair_retries=0),
                    generator=gen)
    cands = p.propose(context(), 3)
    assert [c.failure for c in cands] == [None, None, None]
    offered = [{ln for ln in g.splitlines() if ln.startswith("b")} for g in gen.grammars]
    assert any("HIDDEN = 128" in ln for ln in offered[0]) and any("HIDDEN = 128" in ln for ln in offered[1])
    assert not any("HIDDEN = 128" in ln for ln in offered[2])                # tried twice: closed
    assert any("DEPTH = 2" in ln for ln in offered[2])
    assert cands[0].meta["windows"]["open"] == cands[0].meta["windows"]["all"] > cands[2].meta["windows"]["open"]
    gen = GrammarScripted(answers)
    LLMProposer(config=LLMProposerConfig(check_build=False, avoid_tried_lines=0, repair_retries=0),
                generator=gen).propose(context(), 3)
    assert len(set(gen.grammars)) == 1                                        # off: the same grammar each time


def offers(gen, k: int, text: str) -> bool:
    """Whether the k-th grammar the scripted generator received offers a SEARCH window containing text."""
    return any(text in ln for ln in gen.grammars[k].splitlines() if ln.startswith("b"))


def test_lines_whose_edits_broke_the_build_close_first():
    """The 1.5B's distinct-edit defect's class: once the lines it edits well (width, depth) were
    tried, closing tried lines pushed it onto the shape bookkeeping, where half its answers broke the
    build. An edit that failed to parse or build now loads its lines `broken_line_load` times, so one
    failure closes them while a line with a working edit stays open for more (distinct) values; a
    history child of the parent that failed in the sandbox counts the same way."""
    answers = [block("HIDDEN = 128", "HIDDEN = 64"),
               block("        in_features *= size", "        in_features *= (size"),     # syntax error
               block("DEPTH = 2", "DEPTH = 3")]
    gen = GrammarScripted(answers)
    p = LLMProposer(config=LLMProposerConfig(check_build=False, avoid_tried_lines=3, broken_line_load=6,
                                             repair_retries=0, resample_broken=0, keep_windows=1), generator=gen)
    ctx = context()
    failed_child = ProgramRecord(id=11, source=PARENT.replace("    width = in_features", "    width = 32"),
                                 status="failed", reason="shape_mismatch", parent_id=ctx.incumbent.id)
    ctx.history = [failed_child]
    cands = p.propose(ctx, 3)
    assert [c.failure for c in cands] == [None, "syntax_error", None]
    worked, repeated, broken = p.tried_edits(ctx)
    assert len(worked) == 2 and len(broken) == 2 and not repeated
    assert not offers(gen, 0, "width = in_features")                               # the failed child, before any answer
    assert offers(gen, 0, "in_features *= size") and not offers(gen, 2, "in_features *= size")   # broken once: closed
    assert offers(gen, 2, "HIDDEN = 128")                                          # tried once, it built: still open
    # the same three answers with failures weighing as much as a working edit: nothing is closed yet
    gen = GrammarScripted(answers)
    LLMProposer(config=LLMProposerConfig(check_build=False, avoid_tried_lines=3, broken_line_load=1,
                                         repair_retries=0, resample_broken=0), generator=gen).propose(context(), 3)
    assert len(set(gen.grammars)) == 1


def test_a_repeat_is_redrawn_away_from_the_lines_it_repeated():
    """Measured with the 1.5B: once its few good lines were tried, it answered the same edit again
    and again (10 of 30 proposals ended as duplicates after their re-draws). Under the grammar a
    re-draw now closes the lines the repeat touched, and a repeated answer loads its lines enough to
    close them, so the next proposal does not start there either."""
    answers = [block("HIDDEN = 128", "HIDDEN = 64"),
               block("HIDDEN = 128", "HIDDEN = 64"), block("DEPTH = 2", "DEPTH = 3"),
               block("DROPOUT = 0.1", "DROPOUT = 0.2")]
    gen = GrammarScripted(answers)
    p = LLMProposer(config=LLMProposerConfig(check_build=False, avoid_tried_lines=3, broken_line_load=6,
                                             repair_retries=0, resample_repeats=2), generator=gen)
    ctx = context()
    first, second, third = p.propose(ctx, 3)
    assert first.failure is None and second.failure is None and "DEPTH = 3" in second.source
    assert [a["failure"] for a in second.meta["attempts"]] == ["duplicate", None]
    assert offers(gen, 1, "HIDDEN = 128") and not offers(gen, 2, "HIDDEN = 128")     # the re-draw: closed
    assert not offers(gen, 3, "HIDDEN = 128") and offers(gen, 3, "DROPOUT = 0.1")     # and for the next proposal
    assert second.meta["attempts"][0]["windows_after"]["open"] < second.meta["windows"]["open"]
    assert len(p.tried_edits(ctx)[1]) == 1                                  # the repeat, counted as such


def redrawn_after(first_answers: list[str], **config):
    """Two proposals from scripted answers: `first_answers`, then DEPTH = 3 and DROPOUT = 0.2; the
    first proposal must end on DEPTH = 3 (drawn again after the first answers, not repaired)."""
    gen = GrammarScripted(first_answers + [block("DEPTH = 2", "DEPTH = 3"), block("DROPOUT = 0.1", "DROPOUT = 0.2")])
    p = LLMProposer(config=LLMProposerConfig(check_build=False, avoid_tried_lines=3, repair_retries=1, **config),
                    generator=gen)
    first, _ = p.propose(context(), 2)
    assert first.failure is None and "DEPTH = 3" in first.source
    return gen, p, first


def test_a_broken_answer_is_redrawn_away_from_the_lines_it_broke_before_a_repair():
    """Measured with the 1.5B (n = 30): a repair turn fixed 1 of 21 answers that broke the build,
    while a fresh answer on other lines built about a third of the time. Under the grammar an answer
    that fails to parse or build is now drawn again first (`resample_broken`), with its lines
    closed; only then does the repair turn see the error."""
    answers = [block("        in_features *= size", "        in_features *= (size")]     # syntax error
    gen, p, first = redrawn_after(answers, resample_broken=1)
    assert [a["failure"] for a in first.meta["attempts"]] == ["syntax_error", None]
    assert all(a["turn"] == 0 for a in first.meta["attempts"])                  # a draw, not a repair turn
    assert offers(gen, 0, "in_features *= size") and not offers(gen, 1, "in_features *= size")
    assert not offers(gen, 2, "in_features *= size")                               # still closed for the next proposal
    assert first.meta["attempts"][0]["windows_after"]["open"] < first.meta["windows"]["open"]
    worked, repeated, broken = p.tried_edits(context())
    assert len(broken) == 1 and not repeated
    # off: the broken answer goes to the repair turn, as before
    gen = GrammarScripted(answers + [block("DEPTH = 2", "DEPTH = 3")])
    (only,) = LLMProposer(config=LLMProposerConfig(check_build=False, avoid_tried_lines=3, repair_retries=1,
                                                   resample_broken=0), generator=gen).propose(context(), 1)
    assert [a["turn"] for a in only.meta["attempts"]] == [0, 1]


def test_close_stops_the_generator_it_made_and_keeps_its_adapter(monkeypatch):
    """A benchmark running 6 searches in one process held 6 llama.cpp servers of the 1.5B (~2 GB
    each): nothing stopped the generator an LLM proposer made. close() (called at a run's end) stops
    it, remembers what it served (an adapter loaded since), and leaves a generator passed in alone."""
    import agent.proposers.llm as llm_module
    from agent.generators.base import GeneratorConfig
    closed = []

    class Served:
        def __init__(self, config):
            self.config = config

        def load_adapter(self, path, *, version):
            self.config = self.config.model_copy(update={"adapter": str(path), "adapter_version": version})

        def close(self):
            closed.append(self)

    monkeypatch.setattr(llm_module, "make_generator", lambda config: Served(config))
    p = LLMProposer(config=LLMProposerConfig(generator=GeneratorConfig(backend="llama_cpp")))
    made = p.generator
    p.use_adapter("/adapters/v1")
    p.close()
    assert closed == [made]
    again = p.generator                                   # a later proposal starts what was served
    assert again is not made and again.config.adapter == "/adapters/v1" and again.config.adapter_version == 1
    given = Served(GeneratorConfig())
    q = LLMProposer(generator=given)
    q.close()
    assert closed == [made] and q.generator is given


def test_a_no_op_answer_under_the_grammar_is_redrawn_away_from_its_lines():
    """Qwen2.5-Coder-0.5B and Gemma 270M copied the SEARCH text unchanged in 13 of 14 and 17 of 30
    constrained answers: a no-op is a repeat of the parent, but it changes no line, so nothing
    closed and the next draw (or proposal) anchored on the same lines. Its SEARCH lines now count
    as a repeat's: it is drawn again with them closed, and they stay loaded for later proposals."""
    gen, p, first = redrawn_after([block("HIDDEN = 128", "HIDDEN = 128")], resample_repeats=2)
    assert [(a["failure"], a["turn"]) for a in first.meta["attempts"]] == [("no_change", 0), (None, 0)]
    assert offers(gen, 0, "HIDDEN = 128") and not offers(gen, 1, "HIDDEN = 128") and not offers(gen, 2, "HIDDEN = 128")
    assert len(p.tried_edits(context())[1]) == 1                              # counted as a repeat
    assert all("unchanged" not in t["diff"] for t in p.tried(context()))    # the prompt never shows the marks
