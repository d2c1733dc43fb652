"""The gate's storage and bookkeeping: instances by seed in the store, one M for gate and deploy,
the gate's cost in `ensnas status`, and a real gate that trains the instances its test asks for."""
from __future__ import annotations

import numpy as np
import pytest

from agent.config import RunConfig
from agent.gate import Gate, gate_cost
from agent.store import CandidateRow, RunStore
from evaluator.acceptance import AcceptanceConfig
from tests.conftest import program


def _probs(rng, k, n=20, c=3):
    p = rng.random((k, n, c))
    return p / p.sum(-1, keepdims=True)


def test_instances_are_stored_with_their_seeds_and_added_once(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    rng = np.random.default_rng(0)
    val, test = _probs(rng, 2), _probs(rng, 2, n=30)
    store.save_predictions(7, val, test, seeds=[0, 1])
    more_val, more_test = _probs(rng, 2), _probs(rng, 2, n=30)
    got = store.add_instances(7, seeds=[1, 2], val=more_val, test=more_test, origin=9)
    assert got.seeds == (0, 1, 2) and got.origin == (-1, -1, 9)
    assert np.allclose(got.val[1], val[1], atol=1e-6)       # seed 1 was there: kept, not replaced
    assert np.allclose(got.val[2], more_val[1], atol=1e-6)
    again = store.add_instances(7, seeds=[2], val=more_val[1:], test=more_test[1:], origin=12)
    assert again.seeds == (0, 1, 2) and again.origin == (-1, -1, 9)  # a job finishing twice counts once
    assert store.load_predictions(7)[0].shape == (3, 20, 3)


def test_artifacts_from_before_per_instance_seeds_read_as_seeds_0_to_k(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    rng = np.random.default_rng(1)
    np.savez(store.artifacts / "3.npz", val=_probs(rng, 4).astype(np.float32), test=_probs(rng, 4).astype(np.float32))
    got = store.load_instances(3)
    assert got.seeds == (0, 1, 2, 3) and got.origin == (-1, -1, -1, -1)


@pytest.mark.parametrize("given, gate, deploy", [
    ({}, 5, 5),
    ({"members": 7}, 7, 7),
    ({"deploy": {"members": 3}}, 3, 3),                           # an older config that set only one
    ({"acceptance": {"members": 9}}, 9, 9),
    ({"acceptance": {"members": 9}, "deploy": {"members": 3}}, 9, 3),  # set apart on purpose
])
def test_one_m_for_gate_and_deploy_unless_set_apart(given, gate, deploy):
    config = RunConfig.load(None, **given)
    assert (config.acceptance.members, config.deploy.members) == (gate, deploy)
    again = RunConfig.model_validate(config.model_dump(mode="json"))  # as a resumed run reads it
    assert (again.acceptance.members, again.deploy.members) == (gate, deploy)


def _row(i, decision):
    return CandidateRow(id=i, cycle=1, proposer="x", parent_id=1, source="", diff="", status="rejected",
                        reason=None, detail=None, statistics=None, decision=decision, param_count=None, meta={},
                        created=None, evaluated=None, eval_seconds=None, evaluations=1)


def test_gate_cost_counts_instances_per_decision():
    rows = [_row(2, {"instances": {"candidate": 2, "candidate_trained": [], "incumbent_trained": []},
                     "looks": [{"instances": 2}]}),
            _row(3, {"instances": {"candidate": 4, "candidate_trained": [2, 3], "incumbent_trained": [3]},
                     "looks": [{"instances": 2}, {"instances": 3}, {"instances": 4}]}),
            _row(4, {"delta": 0.1}),  # a fixed-test decision: no cost record
            _row(5, None)]
    cost = gate_cost(rows)
    assert cost == {"decisions": 2, "candidate": 3.0, "incumbent": 0.5, "total": 3.5, "stopped_at": {2: 1, 4: 1}}
    assert gate_cost([_row(5, None)]) == {"decisions": 0}


@pytest.mark.slow
def test_gate_trains_what_its_test_asks_for_and_reuses_the_incumbents(tmp_path, digits_evaluator):
    """A real gate on digits: with futility off every undecided comparison goes to max_instances; the
    incumbent's extra instances are trained once, tagged with the decision that asked, and reused."""
    store = RunStore(tmp_path / "run", create=True)
    with store.transaction() as db:
        ids = [store.insert_candidate(db, cycle=0, proposer="t", parent_id=None, source=program(name), diff="",
                                      status="pending") for name in ("wide_mlp.py", "tiny_linear.py", "tiny_linear.py")]
    config = AcceptanceConfig(members=5, futility=0.0, max_instances=4)  # a linear model never beats the MLP
    for cid in ids:
        e = digits_evaluator.evaluate(store.candidate(cid).source, instances=2)
        store.save_predictions(cid, e.val_probs, e.test_probs, seeds=e.seeds)
    gate = Gate(store=store, evaluator=digits_evaluator, config=config, workers=2)
    first = gate.decide(ids[1], ids[0])
    assert not first["accept"] and [look["instances"] for look in first["looks"]][-1] == 4
    assert first["instances"] == {"candidate": 4, "candidate_trained": [2, 3], "incumbent_trained": [2, 3]}
    second = gate.decide(ids[2], ids[0])
    assert second["instances"] == {"candidate": 4, "candidate_trained": [2, 3], "incumbent_trained": []}
    assert store.load_instances(ids[0]).origin == (-1, -1, ids[1], ids[1])
