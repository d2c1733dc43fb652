"""DARTS search space, genotypes, rendering to programs, first-order DARTS and selection."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agent.proposers.darts.config import DartsConfig, SearchData, SpaceConfig
from agent.proposers.darts.darts import run_darts
from agent.proposers.darts.data import SearchArrays
from agent.proposers.darts.genotype import (Genotype, GenotypeError, derive, perturb, random_genotype, render,
                                            shared_edges)
from agent.proposers.darts.ops import PRIMITIVES, make_op
from agent.proposers.darts.search_space import CELL_TYPES, EDGES, NUM_EDGES, NUM_OPS, build_supernet
from agent.proposers.darts.selection import SelectionError, ensemble_nll, select_ensemble
from evaluator.worker import load_program

torch.set_num_threads(1)
OPS = [p for p in PRIMITIVES if p != "none"]


def uniform(op: str) -> Genotype:
    """Every slot uses `op`; inputs 0 and 1 for every node (valid for all nodes)."""
    return Genotype(normal=tuple((op, i) for _ in range(4) for i in (0, 1)),
                    reduce=tuple((op, i) for _ in range(4) for i in (0, 1)))


def test_search_space_has_14_edges_and_the_standard_ops():
    assert len(EDGES) == NUM_EDGES == 14
    assert set(PRIMITIVES) == {"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                               "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"}


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("size", [7, 8])
def test_every_op_keeps_channels_and_halves_with_stride_2(name, size):
    x = torch.randn(2, 6, size, size)
    assert make_op(name, 6, 1)(x).shape == (2, 6, size, size)
    half = (size + 1) // 2
    assert make_op(name, 6, 2)(x).shape == (2, 6, half, half)


def test_unknown_op_is_rejected():
    with pytest.raises(ValueError, match="unknown operation"):
        make_op("conv_7x7", 4, 1)


@pytest.mark.parametrize("op", OPS)
def test_genotype_to_program_to_model_for_every_operation(op):
    genotype = uniform(op)
    source = render(genotype, channels=4, layers=3)
    assert "import" in source and "agent." not in source  # self-contained: torch only
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"torch", "torch.nn"}
    module = load_program(source)
    for shape, x in [((1, 8, 8), torch.randn(3, 1, 8, 8)), ((1, 28, 28), torch.randn(3, 1, 28, 28)),
                     ((1, 40), torch.randn(3, 1, 40))]:
        model = module.build_model(shape, 10)
        out = model(x)
        assert out.shape == (3, 10) and torch.isfinite(out).all()
        F.cross_entropy(out, torch.zeros(3, dtype=torch.long)).backward()
    assert Genotype.from_dict(module.GENOTYPE) == genotype


def test_rendered_program_passes_the_sandbox_check(digits_evaluator):
    source = render(random_genotype(np.random.default_rng(3)), channels=4, layers=2)
    result = digits_evaluator.check(source)
    assert result.ok, result.detail
    assert result.param_count > 0


@pytest.mark.slow
def test_rendered_program_evaluates_like_any_candidate(digits_evaluator):
    source = render(uniform("sep_conv_3x3"), channels=4, layers=2)
    evaluation = digits_evaluator.evaluate(source, instances=2)
    assert evaluation.ok, evaluation.detail
    assert evaluation.statistics.accuracy > 0.3   # digits, 3 epochs: well above chance (0.1)


def test_genotype_validation_errors_are_typed():
    good = uniform("skip_connect")
    with pytest.raises(GenotypeError, match="operations"):
        Genotype(normal=good.normal[:7], reduce=good.reduce)
    with pytest.raises(GenotypeError, match="none"):
        Genotype(normal=(("none", 0),) + good.normal[1:], reduce=good.reduce)
    with pytest.raises(GenotypeError, match="earlier state"):
        Genotype(normal=good.normal[:1] + (("skip_connect", 2),) + good.normal[2:], reduce=good.reduce)
    with pytest.raises(GenotypeError):
        Genotype.from_dict({"normal": []})
    with pytest.raises(GenotypeError, match="finite"):
        derive({k: np.full((NUM_EDGES, NUM_OPS), np.nan) for k in CELL_TYPES})


def test_derive_keeps_the_two_strongest_inputs_and_ignores_none():
    alpha = {k: np.zeros((NUM_EDGES, NUM_OPS)) for k in CELL_TYPES}
    a = alpha["normal"]
    # node 2 (index 2 of intermediate nodes) has inputs 0..3 = edges 5..8
    a[5, PRIMITIVES.index("none")] = 9.0               # 'none' is never chosen
    a[5, PRIMITIVES.index("max_pool_3x3")] = 1.0
    a[7, PRIMITIVES.index("sep_conv_5x5")] = 3.0
    a[8, PRIMITIVES.index("dil_conv_3x3")] = 2.0
    g = derive(alpha)
    assert g.normal[4:6] == (("sep_conv_5x5", 2), ("dil_conv_3x3", 3))
    for _ in range(20):
        r = random_genotype(np.random.default_rng(_))
        assert derive(r.one_hot()) == r


def test_perturb_replaces_exactly_k_edges():
    rng = np.random.default_rng(0)
    for _ in range(20):
        base = random_genotype(rng)
        for k in range(base.size + 1):
            assert shared_edges(base, perturb(base, k, rng)) == base.size - k
    with pytest.raises(GenotypeError):
        perturb(base, 17, rng)


def test_single_path_gives_gradient_only_to_selected_operations():
    net = build_supernet(channels=4, layers=2, stride=None, input_shape=(1, 8, 8), num_classes=10)
    genotype = random_genotype(np.random.default_rng(1))
    weights = {k: torch.ones(NUM_EDGES, NUM_OPS) for k in CELL_TYPES}
    net(torch.randn(4, 1, 8, 8), weights, genotype.selected()).sum().backward()
    for kind, pairs in genotype.selected().items():
        chosen = set(pairs)
        for e in range(NUM_EDGES):
            for op in range(NUM_OPS):
                params = net.edge_parameters(kind, e, op)
                got = any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
                if (e, op) in chosen and params and PRIMITIVES[op] != "skip_connect":
                    assert got, (kind, e, PRIMITIVES[op])
                if (e, op) not in chosen:
                    assert not got, (kind, e, PRIMITIVES[op])


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of 8x8 images, each a bright quadrant plus noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 1.5
    return x, y.astype(np.int64)


def test_first_order_darts_learns_alpha_and_derives_a_genotype():
    (xt, yt), (xv, yv) = _blobs(96, 0), _blobs(96, 1)
    data = SearchArrays(x_train=xt, y_train=yt, x_val=xv, y_val=yv)
    result = run_darts(data, input_shape=(1, 8, 8), num_classes=4, space=SpaceConfig(channels=4, layers=2),
                       cfg=DartsConfig(epochs=2, arch_lr=3e-2), batching=SearchData(batch_size=32), seed=0)
    assert isinstance(result.genotype, Genotype)
    assert result.cost.steps == 6 and result.cost.cpu_seconds > 0
    assert max(np.abs(a).max() for a in result.alpha.values()) > 1e-2   # alpha moved off its 1e-3 init
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] + 0.5
    assert result.genotype == derive(result.alpha)


def test_exhaustive_selection_matches_brute_force_and_greedy_is_reasonable():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    pool = [rng.dirichlet(np.ones(3), 50) for _ in range(6)]
    pool[2] = np.eye(3)[y] * 0.9 + 0.1 / 3                        # a strong member
    sel = select_ensemble(pool, y, size=2)
    brute = min(itertools.combinations(range(6), 2), key=lambda s: ensemble_nll([pool[i] for i in s], y))
    assert sel.method == "exhaustive" and sel.indices == brute and sel.evaluated == 15
    greedy = select_ensemble(pool, y, size=2, exhaustive_limit=1)
    assert greedy.method == "greedy" and greedy.indices[0] == 2
    assert greedy.val_nll >= sel.val_nll - 1e-12
    with pytest.raises(SelectionError):
        select_ensemble(pool, y, size=7)
    with pytest.raises(SelectionError):
        select_ensemble(pool, y[:10], size=2)
