"""The RACHEL loop, its random ablation, the AdaNet-style baseline and the proposer, on tiny real data
(digits, 1-epoch training, narrow widths); the safety net inside the loop on a constructed case."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.proposers.base import ProgramRecord, ProposalContext, make_proposer
from agent.proposers.rachel.adanet import AdaNetConfig, AdaNetSearch, complexity
from agent.proposers.rachel.controller import ControllerConfig
from agent.proposers.rachel.members import Member, SearchData, load_search_data, make_search
from agent.proposers.rachel.mixture import MixtureConfig, log_probs
from agent.proposers.rachel.search import RachelConfig, RachelSearch
from agent.proposers.rachel.subnetworks import Layer, SubnetSpec, render_program
from evaluator.failures import ConfigError
from evaluator.tasks import ProxyBudget

TINY_BUDGET = ProxyBudget(epochs=1, batch_size=64, lr=3e-3)
TINY = RachelConfig(iterations=2, candidates=2, budget=TINY_BUDGET,
                    controller=ControllerConfig(width_min=8, width_max=16, max_new_layers=2))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_data(digits_task, cache_dir) -> SearchData:
    return load_search_data(digits_task, cache_dir=cache_dir)


@pytest.mark.slow
def test_rachel_search_grows_an_ensemble(digits_data):
    result = RachelSearch(config=TINY, data=digits_data).run()
    assert result.trained_candidates + result.failed_candidates == 4 and result.failed_candidates == 0
    assert len(result.history) == 2 and 1 <= len(result.members) <= 2
    assert np.isclose(result.weights.sum(), 1) and (result.weights >= 0).all()
    accepted = [h["accepted_objective"] for h in result.history]
    assert accepted[0] < math.log(10)                      # better than a uniform guess
    assert accepted[1] <= accepted[0] + TINY.safety_tolerance
    # growth: the second iteration's candidates extend the first accepted subnetwork
    first = result.members[0].spec
    assert all(s.startswith(first.describe()) or first.depth == 0 for s in result.history[1]["specs"])
    assert result.trained_params >= result.ensemble_params > 0
    test_probs_len = len(result.members[0].test_logits)
    assert test_probs_len == len(digits_data.x_test)


def _member(spec: SubnetSpec, logits: np.ndarray) -> Member:
    return Member(spec=spec, seed=0, params=1, train_seconds=0.0, val_logits=logits)


def test_safety_net_re_adds_the_previous_best_in_the_loop():
    """Constructed: a good accepted member, then a confidently wrong best candidate scored with the
    paper's truncated mixture fit; the loop discards it and adds the previous best again."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    good_logits = np.full((200, 4), -3.0)
    good_logits[np.arange(200), y] = 0.0
    wrong_logits = np.full((200, 4), -20.0)
    wrong_logits[np.arange(200), (y + 1) % 4] = 0.0
    data = SearchData(x_train=np.zeros((4, 3), np.float32), y_train=np.zeros(4, np.int64),
                      x_val=np.zeros((200, 3), np.float32), y_val=y, num_classes=4)
    cfg = TINY.model_copy(update={"mixture": MixtureConfig(method="adam", steps=10)})
    search = RachelSearch(config=cfg, data=data)
    good = _member(SubnetSpec("dense", (Layer("dense", 8),)), log_probs(np.exp(good_logits) / np.exp(good_logits).sum(1, keepdims=True)))
    added, fired = search.accept(search.objective_with(good), good, good.spec)
    assert added is good and not fired and search.objective is not None
    bad_spec = good.spec.append([Layer("dense", 9)])
    bad = _member(bad_spec, wrong_logits)
    objective = search.objective_with(bad)
    assert objective > search.objective + 0.01
    added, fired = search.accept(objective, bad, bad_spec)
    assert fired and added is good
    assert search.members == [good, good] and search.base == good.spec and search.safety_net_fired == 1
    # with the converged fit the same candidate costs nothing, so the net stays quiet
    converged = RachelSearch(config=TINY, data=data)
    converged.accept(converged.objective_with(good), good, good.spec)
    assert converged.objective_with(bad) <= converged.objective + 1e-6


def test_failing_candidates_are_penalised_not_fatal(digits_data):
    cfg = TINY.model_copy(update={"max_params": 5, "iterations": 1})
    search = RachelSearch(config=cfg, data=digits_data)
    record = search.step()
    assert search.failed == 2 and search.trained == 0 and search.members == []
    assert record["accepted"] is None and set(record["failures"]) == {"too_many_params"}
    assert all(o == pytest.approx(math.log(10) + cfg.failure_penalty) for o in record["objectives"])


def test_random_ablation_and_registry(digits_data):
    result = make_search("random", config=TINY.model_copy(update={"iterations": 1}), data=digits_data).run()
    assert result.strategy == "random" and result.trained_candidates == 2
    with pytest.raises(ConfigError):
        make_search("nope", data=digits_data)


@pytest.mark.slow
def test_adanet_candidates_and_growth(digits_data):
    cfg = AdaNetConfig(iterations=2, widths=(8, 12), budget=TINY_BUDGET)
    search = AdaNetSearch(config=cfg, data=digits_data)
    assert [s.depth for s in search.candidate_specs()] == [0, 0, 1, 1]
    assert [s.layers[0].width for s in search.candidate_specs()[2:]] == [8, 12]
    result = search.run()
    assert result.trained_candidates == 8 and len(result.members) == 2
    depths = [m.spec.depth for m in result.members]
    assert depths[1] in (depths[0], depths[0] + 1)
    assert all(layer.kind == "conv" for m in result.members for layer in m.spec.layers)
    spec = SubnetSpec("image", (Layer("conv", 8),) * 4)
    assert complexity(spec, cfg) == pytest.approx(cfg.complexity_lambda * 2 + cfg.complexity_beta)


@pytest.mark.slow
def test_search_state_round_trip(digits_data):
    first = RachelSearch(config=TINY, data=digits_data)
    first.step()
    state = json.loads(json.dumps(first.state_dict()))
    second = RachelSearch(config=TINY, data=digits_data)
    second.load_state_dict(state)
    assert [m.spec for m in second.members] == [m.spec for m in first.members]
    assert second.iteration == 1 and second.base == first.base
    np.testing.assert_allclose(second.members[0].val_logits, first.members[0].val_logits, atol=1e-5)
    assert second.controller.temperature == first.controller.temperature


def _ctx(task) -> ProposalContext:
    seed = ProgramRecord(id=1, source=task.seed_source(), status="accepted")
    return ProposalContext(task=task, incumbent=seed, history=[], elites=[], cycle=0, rng=np.random.default_rng(0))


@pytest.mark.slow
def test_proposer_emits_accepted_subnetworks_that_pass_the_sandbox(digits_task, digits_evaluator, cache_dir):
    proposer = make_proposer("rachel", search=TINY.model_dump(), use_task_budget=False, cache_dir=str(cache_dir))
    first = proposer.propose(_ctx(digits_task), 1)
    assert len(first) == 1
    cand = first[0]
    spec = SubnetSpec.from_dict(cand.meta["spec"])
    assert cand.source == render_program(spec) and cand.parent_id == 1 and cand.proposer == "rachel"
    assert cand.meta["reward"] == pytest.approx(-cand.meta["objective"])
    evaluation = digits_evaluator.evaluate(cand.source)      # the loop's sandbox path
    assert evaluation.ok, (evaluation.reason, evaluation.detail)
    proposer.observe(None, ProgramRecord(id=42, source=cand.source, status="accepted"))
    second = proposer.propose(_ctx(digits_task), 3)          # iterations_per_call = 1
    assert len(second) <= 1
    if second:                                               # grew from the stored program #42
        assert second[0].parent_id == 42
        assert SubnetSpec.from_dict(second[0].meta["spec"]).layers[:spec.depth] == spec.layers
    assert proposer.propose(_ctx(digits_task), 1) == []      # TINY has 2 iterations: exhausted
    state = json.loads(json.dumps(proposer.state_dict()))
    assert state["search"]["iteration"] == 2 and state["gate"][0]["id"] == 42


def test_proposer_rejects_bad_options():
    with pytest.raises(ConfigError):
        make_proposer("rachel", iterations_per_call=0)
    with pytest.raises(ConfigError):
        make_proposer("rachel", not_an_option=1)
