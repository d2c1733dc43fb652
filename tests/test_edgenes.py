"""EdgeNES: the hypernetwork, Gumbel-softmax, the regulariser, warm-up, training, sampling,
Theorem 1's count, and the `darts`/`edgenes` proposers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agent.proposers.base import LAZY_PROPOSERS, ProgramRecord, ProposalContext, make_proposer
from agent.proposers.darts.config import EdgeNESConfig, SearchData, SpaceConfig
from agent.proposers.darts.data import SearchArrays
from agent.proposers.darts.edgenes import (Hypernetwork, genotype_of, gumbel_softmax, hard_sample, lambda_grid,
                                           regulariser, sample_architectures, schedule, selected_edges,
                                           shared_mass, straight_through, train_hypernetwork, updated_edges)
from agent.proposers.darts.genotype import GenotypeError, perturb, random_genotype, shared_edges
from agent.proposers.darts.search_space import CELL_TYPES, NUM_EDGES, NUM_OPS, build_supernet
from evaluator.failures import ConfigError
from evaluator.worker import load_program
from theory.edgenes import expected_updated_edges

torch.set_num_threads(1)


def _hyper(seed=0, pivots=5, lam=16):
    rng = np.random.default_rng(seed)
    init = {k: rng.normal(size=(NUM_EDGES, NUM_OPS)).astype(np.float32) for k in CELL_TYPES}
    h = Hypernetwork(init=init, edges_kept=lam, pivots=pivots, noise=0.5, seed=seed)
    with torch.no_grad():
        h.gap_logits.copy_(torch.tensor(rng.normal(size=pivots - 1), dtype=torch.float32))
    return h


def _stack(alpha):
    return torch.stack([alpha[k] for k in CELL_TYPES])


def test_hypernetwork_hits_its_endpoint_vectors_and_pivots():
    h = _hyper()
    r = h.pivots().detach()
    assert r[0] == 0 and r[-1] == 16 and torch.all(r[1:] > r[:-1])
    with torch.no_grad():
        assert torch.equal(_stack(h(0.0)), h.vectors[0])
        assert torch.allclose(_stack(h(16.0)), h.vectors[-1], atol=1e-6)
        for k in range(1, h.num_pivots - 1):                   # inner pivots too
            assert torch.allclose(_stack(h(float(r[k]))), h.vectors[k], atol=1e-5)
        mid = float((r[1] + r[2]) / 2)                            # linear in between
        assert torch.allclose(_stack(h(mid)), (h.vectors[1] + h.vectors[2]) / 2, atol=1e-5)
        # outside [0, Lambda] the end segments extrapolate linearly
        slope = (h.vectors[1] - h.vectors[0]) / r[1]
        assert torch.allclose(_stack(h(-0.2)), h.vectors[0] - 0.2 * slope, atol=1e-5)


def test_gradients_reach_pivots_and_the_segment_vectors():
    h = _hyper()
    r = h.pivots().detach()
    lam = float((r[1] + r[2]) / 2)
    _stack(h(lam)).pow(2).sum().backward()
    assert h.gap_logits.grad is not None and h.gap_logits.grad.abs().sum() > 0
    norms = h.vectors.grad.flatten(1).norm(dim=1)
    assert norms[1] > 0 and norms[2] > 0
    assert norms[0] == 0 and norms[3] == 0 and norms[4] == 0   # only the segment's two vectors


def test_hypernetwork_rejects_bad_shapes():
    with pytest.raises(GenotypeError):
        Hypernetwork(init={k: np.zeros((14, 8)) for k in CELL_TYPES}, edges_kept=16, pivots=1)
    with pytest.raises(GenotypeError):
        Hypernetwork(init={k: np.zeros((14, 8)) for k in CELL_TYPES}, edges_kept=0)


def test_regulariser_on_hand_made_cases():
    star = random_genotype(np.random.default_rng(0))
    a_star = {k: torch.as_tensor(v) for k, v in star.one_hot().items()}
    exact = {k: torch.as_tensor(v) for k, v in star.one_hot().items()}          # GS = alpha* itself
    assert shared_mass(a_star, exact).item() == 16
    assert regulariser(16.0, a_star, exact, c=3.0).item() == 0
    assert regulariser(10.0, a_star, exact, c=0.5).item() == pytest.approx(0.5 * 36)
    flat = {k: torch.full((NUM_EDGES, NUM_OPS), 1 / NUM_OPS) for k in CELL_TYPES}  # uniform: 16/8 = 2 shared
    assert shared_mass(a_star, flat).item() == pytest.approx(2.0)
    assert regulariser(0.0, a_star, flat, c=0.5).item() == pytest.approx(0.5 * 4)
    other = {k: torch.as_tensor(v) for k, v in random_genotype(np.random.default_rng(5)).one_hot().items()}
    other_g = random_genotype(np.random.default_rng(5))
    assert shared_mass(a_star, other).item() == shared_edges(star, other_g)


def test_gumbel_softmax_samples_follow_softmax_alpha():
    """Gumbel-max: argmax of a GS sample is distributed as softmax(alpha), at any temperature."""
    gen = torch.Generator().manual_seed(0)
    alpha = torch.tensor([[0.0, 1.0, -1.0, 2.0]]).repeat(20000, 1)
    y = gumbel_softmax(alpha, 0.5, gen)
    assert torch.allclose(y.sum(-1), torch.ones(20000))
    freq = torch.bincount(y.argmax(-1), minlength=4).float() / 20000
    assert torch.allclose(freq, torch.softmax(alpha[0], 0), atol=0.015)
    cold = gumbel_softmax(alpha[:100], 0.01, gen)
    assert (cold.max(-1).values > 0.99).float().mean() > 0.95   # low t: nearly one-hot


def test_warm_up_schedule_is_linear_c_up_t_down():
    cfg = EdgeNESConfig()
    cs = [schedule(cfg.c_start, cfg.c_end, e, 5) for e in range(5)]
    ts = [schedule(cfg.t_start, cfg.t_end, e, 5) for e in range(5)]
    assert cs[0] == cfg.c_start and cs[-1] == cfg.c_end and np.allclose(np.diff(cs), np.diff(cs)[0]) and cs[1] > cs[0]
    assert ts[0] == cfg.t_start and ts[-1] == pytest.approx(cfg.t_end) and ts[1] < ts[0]
    assert schedule(1.0, 2.0, 0, 1) == 2.0


def test_hard_sample_is_a_genotype_and_straight_through_is_one():
    gen = torch.Generator().manual_seed(1)
    y = {k: gumbel_softmax(torch.randn(NUM_EDGES, NUM_OPS), 1.0, gen).requires_grad_() for k in CELL_TYPES}
    sel = hard_sample(y)
    g = genotype_of(sel)
    assert g.selected() == sel and selected_edges(sel) == frozenset(g.edges())
    st = straight_through(y)
    assert all(torch.allclose(v, torch.ones_like(v)) for v in st.values())
    st["normal"][0, 3].backward()
    assert y["normal"].grad[0, 3] == 1


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 1.5
    return x, y.astype(np.int64)


@pytest.mark.slow
def test_training_tracks_lambda_and_records_updated_edges():
    (xt, yt), (xv, yv) = _blobs(64, 0), _blobs(64, 1)
    data = SearchArrays(x_train=xt, y_train=yt, x_val=xv, y_val=yv)
    star = random_genotype(np.random.default_rng(2))
    net = build_supernet(channels=4, layers=2, stride=None, input_shape=(1, 8, 8), num_classes=4)
    init = {k: 3.0 * v for k, v in star.one_hot().items()}     # alpha* strongly preferred at the start
    cfg = EdgeNESConfig(epochs=6, c_start=0.5, c_end=2.0, t_start=1.0, t_end=0.3, arch_lr=0.1)
    res = train_hypernetwork(data, supernet=net, alpha_star=star, init_alpha=init, cfg=cfg,
                             batching=SearchData(batch_size=16), seed=0)
    assert res.cost.steps == 24 and len(res.step_edges) == 24
    assert all(len(s) == 16 for s in res.step_edges)
    assert all(-0.2 <= lam <= 16.2 for lam in res.step_lambdas)
    assert res.history[-1]["lambda_gap"] < res.history[0]["lambda_gap"]   # the regulariser is doing its job
    arch = sample_architectures(res.hypernet, [0.0, 16.0], t=0.3, seed=0)
    low, high = (shared_edges(g, star) for _, g in arch)
    assert high > low


def test_updated_edge_count_matches_theorem_1_under_its_assumptions():
    """Steps and members that share uniform random mu-, nu-subsets of alpha* (mu, nu ~ U{1..Lambda})."""
    rng = np.random.default_rng(0)
    star = random_genotype(rng)
    lam = star.size

    def sharing(k):
        return perturb(star, lam - k, rng)

    members = [sharing(int(rng.integers(1, lam + 1))) for _ in range(3)]
    steps = [frozenset(sharing(int(rng.integers(1, lam + 1))).edges()) for _ in range(4000)]
    got = updated_edges(steps, members, star)
    nu = got["nu"]
    # conditional on the members' nu, E[m] = E[mu] * sum(nu) / Lambda with E[mu] = (Lambda+1)/2
    assert got["m_alpha_star"] == pytest.approx((lam + 1) / 2 * sum(nu) / lam, rel=0.03)
    # averaging over members too gives the theorem's N (Lambda+1)^2 / (4 Lambda)
    many = [sharing(int(rng.integers(1, lam + 1))) for _ in range(300)]
    per_member = updated_edges(steps[:300], many, star)["m_alpha_star"] / len(many)
    assert per_member * 3 == pytest.approx(expected_updated_edges(3, lam), rel=0.05)
    assert got["m_all_shared"] >= got["m_alpha_star"]


def test_lambda_grid():
    assert lambda_grid(16, 5) == [0.0, 4.0, 8.0, 12.0, 16.0]
    assert lambda_grid(16, 1) == [16.0]


def _ctx(task):
    return ProposalContext(task=task, incumbent=ProgramRecord(id=7, source="", status="accepted"), history=[],
                           elites=[], cycle=0, rng=np.random.default_rng(0))


TINY = {"space": {"channels": 4, "layers": 2}, "data": {"train_subset": 128, "batch_size": 32},
        "darts": {"epochs": 1}, "edgenes": {"epochs": 2}, "ensemble": {"pool": 4}}


def test_proposers_are_registered_lazily_and_validate_options():
    assert LAZY_PROPOSERS["edgenes"] == LAZY_PROPOSERS["darts"] == "agent.proposers.darts.proposer"
    with pytest.raises(ConfigError):
        make_proposer("edgenes", search={"darts": {"epochs": 0}})
    with pytest.raises(ConfigError):
        make_proposer("darts", preset="huge")


@pytest.mark.slow
def test_edgenes_proposer_emits_programs_and_resumes_without_searching(digits_task, cache_dir):
    proposer = make_proposer("edgenes", search=TINY, cache_dir=str(cache_dir))
    first = proposer.propose(_ctx(digits_task), 2)
    assert len(first) == 2 and all(c.failure is None for c in first)
    assert first[0].meta["lambda"] == 16.0 and first[0].parent_id == 7 and first[0].proposer == "edgenes"
    for c in first:
        model = load_program(c.source).build_model((1, 8, 8), 10)
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    state = json.loads(json.dumps(proposer.state_dict()))
    resumed = make_proposer("edgenes", search=TINY, cache_dir=str(cache_dir))
    resumed.load_state_dict(state)
    assert resumed.hyper is not None
    more = resumed.propose(_ctx(digits_task), 3)
    keys = {json.dumps(c.meta["genotype"], sort_keys=True) for c in first}
    assert len(more) == 3 and not keys & {json.dumps(c.meta["genotype"], sort_keys=True) for c in more}


@pytest.mark.slow
def test_darts_proposer_advances_its_seed(digits_task, cache_dir):
    proposer = make_proposer("darts", search=TINY, cache_dir=str(cache_dir), seed=3)
    out = proposer.propose(_ctx(digits_task), 1)
    assert out[0].meta["search_seed"] == 3 and proposer.state_dict()["runs"] == 1
    assert "GENOTYPE" in out[0].source
