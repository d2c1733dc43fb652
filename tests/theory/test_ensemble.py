"""T1 checks: Monte-Carlo ensembles and brute-force loops, never a re-typed formula."""

from __future__ import annotations

import numpy as np
import pytest

from theory import (
    KroghVedelsby,
    TheoryInputError,
    diversity,
    diversity_from_two_instances,
    ensemble_error,
    homogeneous_ambiguity,
    krogh_vedelsby,
)

CASES = [  # (members, sigma2, rho, bias2)
    (5, 1.0, 0.3, 0.2),
    (10, 0.5, 0.8, 0.1),
    (2, 2.0, -0.5, 0.0),  # negative correlation is feasible for M = 2
    (1, 1.0, 0.5, 0.3),  # a single member gains nothing
    (20, 1.5, 0.0, 0.05),
]


@pytest.mark.parametrize(("members", "sigma2", "rho", "bias2"), CASES)
def test_ensemble_error_matches_simulated_average(simulate_members, members, sigma2, rho, bias2):
    rng = np.random.default_rng(100 + members)
    preds, y = simulate_members(
        rng, members=members, n=100_000, sigma2=sigma2, rho=rho, bias2=bias2
    )
    empirical_ens = float(((preds.mean(axis=0) - y) ** 2).sum(axis=1).mean())
    empirical_member = float(((preds - y) ** 2).sum(axis=2).mean())
    member_error = bias2 + sigma2  # the simulator's member error: squared bias + variance
    # tolerance: 2 % relative (Monte-Carlo SE of an MSE at n = 1e5 is ~0.5 %)
    assert empirical_member == pytest.approx(member_error, rel=0.02)  # the simulator is sound
    predicted = ensemble_error(member_error, diversity(sigma2, rho), members)
    assert predicted == pytest.approx(empirical_ens, rel=0.02)


@pytest.mark.parametrize(("members", "sigma2", "rho", "bias2"), CASES)
def test_homogeneous_ambiguity_matches_simulated_kv_ambiguity(
    simulate_members, members, sigma2, rho, bias2
):
    rng = np.random.default_rng(200 + members)
    preds, y = simulate_members(
        rng, members=members, n=60_000, sigma2=sigma2, rho=rho, bias2=bias2, classes=3
    )
    kv = krogh_vedelsby(preds, y)
    # tolerance: 2 % relative plus 1e-12 absolute (M = 1 has zero ambiguity exactly)
    assert homogeneous_ambiguity(sigma2, rho, members) == pytest.approx(
        kv.mean_ambiguity, rel=0.02, abs=1e-12
    )


@pytest.mark.parametrize("shape", [(1, 7, 3), (4, 50, 10), (9, 13, 1), (3, 20)])
def test_krogh_vedelsby_identity_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    preds = rng.normal(size=shape)
    y = rng.normal(size=shape[1:])
    kv = krogh_vedelsby(preds, y)
    m, n = shape[0], shape[1]
    p3 = preds.reshape(m, n, -1)
    y2 = y.reshape(n, -1)
    ens = member = amb = 0.0
    for x in range(n):  # explicit loops: the definitions, example by example
        avg = [sum(p3[i, x, k] for i in range(m)) / m for k in range(p3.shape[2])]
        ens += sum((avg[k] - y2[x, k]) ** 2 for k in range(len(avg))) / n
        for i in range(m):
            member += sum((p3[i, x, k] - y2[x, k]) ** 2 for k in range(len(avg))) / (n * m)
            amb += sum((p3[i, x, k] - avg[k]) ** 2 for k in range(len(avg))) / (n * m)
    assert isinstance(kv, KroghVedelsby)
    # tolerance: 1e-10 absolute (floating-point round-off only; the identity is exact)
    assert kv.ensemble_error == pytest.approx(ens, abs=1e-10)
    assert kv.mean_member_error == pytest.approx(member, abs=1e-10)
    assert kv.mean_ambiguity == pytest.approx(amb, abs=1e-10)
    assert kv.mean_member_error - kv.mean_ambiguity == pytest.approx(ens, abs=1e-10)


@pytest.mark.parametrize(("sigma2", "rho"), [(1.0, 0.2), (0.3, 0.9), (2.0, -0.4)])
def test_two_instances_estimate_diversity(simulate_members, sigma2, rho):
    rng = np.random.default_rng(7)
    preds, _ = simulate_members(rng, members=2, n=100_000, sigma2=sigma2, rho=rho, classes=4)
    estimate = diversity_from_two_instances(preds[0], preds[1])
    # empirical (1 - rho) sigma^2 from the samples' own variance and correlation, per class
    f1, f2 = preds[0], preds[1]
    var = 0.5 * (f1.var(axis=0) + f2.var(axis=0))
    cor = np.array([np.corrcoef(f1[:, k], f2[:, k])[0, 1] for k in range(4)])
    empirical = float(((1 - cor) * var).sum())
    # tolerance: 2 % relative (against sample stats and against the true parameters)
    assert estimate == pytest.approx(empirical, rel=0.02)
    assert estimate == pytest.approx(diversity(sigma2, rho), rel=0.02)
    # 1-D input: one output per example
    assert diversity_from_two_instances(f1[:, 0], f2[:, 0]) == pytest.approx(
        diversity(sigma2 / 4, rho), rel=0.03  # tolerance: 3 % (one class, fewer numbers)
    )


def test_diversity_of_identical_instances_is_zero():
    f = np.random.default_rng(0).random((30, 5))
    assert diversity_from_two_instances(f, f.copy()) == 0.0  # exact


BAD_CALLS = [
    lambda: diversity(-1.0, 0.5),
    lambda: diversity(1.0, 1.5),
    lambda: diversity(1.0, -1.01),
    lambda: diversity(float("nan"), 0.0),
    lambda: ensemble_error(1.0, 0.5, 0),
    lambda: ensemble_error(1.0, -0.5, 3),
    lambda: ensemble_error(1.0, 0.5, 2.5),
    lambda: ensemble_error(1.0, 0.5, True),
    lambda: homogeneous_ambiguity(1.0, 2.0, 3),
    lambda: diversity_from_two_instances(np.zeros((3, 2)), np.zeros((3, 3))),
    lambda: diversity_from_two_instances(np.zeros(0), np.zeros(0)),
    lambda: diversity_from_two_instances(np.array([np.inf]), np.array([0.0])),
    lambda: krogh_vedelsby(np.zeros((2, 3, 4)), np.zeros((3, 5))),
    lambda: krogh_vedelsby(np.zeros(3), np.zeros(3)),
]


@pytest.mark.parametrize("call", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_inputs_raise(call):
    with pytest.raises(TheoryInputError):
        call()


def test_error_type_is_value_error():
    assert issubclass(TheoryInputError, ValueError)


def test_every_public_function_names_its_result():
    import theory

    for name in theory.__all__:
        obj = getattr(theory, name)
        if name != "TheoryInputError":
            assert "docs/theory.md T" in (obj.__doc__ or ""), name




def test_numpy_scalars_are_accepted_and_bools_rejected():
    # exact: the same value whatever scalar type carries it
    assert diversity(np.float32(2.0), np.array(0.5)) == diversity(2.0, 0.5)
    assert ensemble_error(np.float64(1.0), 0.5, np.int64(3)) == ensemble_error(1.0, 0.5, 3)
    with pytest.raises(TheoryInputError):
        diversity(np.bool_(True), 0.5)
