"""RACHEL subnetworks: growth by appending blocks, rendering under the program contract (only torch
imported, build_model defined), and the rendered program running in the real sandbox."""
from __future__ import annotations

import ast

import numpy as np
import pytest
import torch

from agent.proposers.rachel.subnetworks import (Layer, SubnetSpec, build_subnetwork, decode_layer, modality_for,
                                                render_program)
from evaluator.failures import ConfigError
from evaluator.training import check_model
from evaluator.worker import load_program


pytestmark = pytest.mark.usefixtures("one_torch_thread")


IMAGE = SubnetSpec("image", (Layer("conv", 16), Layer("residual", 24), Layer("conv", 20)))
DENSE = SubnetSpec("dense", (Layer("dense", 32), Layer("dense_residual", 48), Layer("dense_residual", 48)))


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("spec,shape", [(IMAGE, (1, 8, 8)), (DENSE, (1, 40)), (SubnetSpec("image"), (3, 5, 5)),
                                        (SubnetSpec("dense"), (7,))])
def test_rendered_program_follows_the_contract(spec, shape):
    source = render_program(spec)
    assert _imports(source) == {"torch"}
    module = load_program(source)
    model = module.build_model(shape, 10)
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype(np.float32)
    assert check_model(model, x, 10, 10**7) > 0
    assert tuple(model(torch.as_tensor(x)).shape) == (4, 10)


def test_only_used_blocks_are_rendered_and_programs_differ_per_layer():
    src = render_program(SubnetSpec("image", (Layer("conv", 16),)))
    assert "class ConvBlock" in src and "class ResidualBlock" not in src
    a, b = render_program(IMAGE), render_program(IMAGE.append([Layer("conv", 33)]))
    assert a != b and "ConvBlock(channels, 33" in b and "ConvBlock(channels, 33" not in a


def test_growth_appends_and_deep_conv_stacks_stay_valid():
    spec = SubnetSpec("image")
    for _ in range(10):   # 30 blocks, far more pooling than an 8x8 image allows
        spec = spec.append([Layer("conv", 8), Layer("residual", 8), Layer("conv", 12)])
    assert spec.depth == 30 and spec.layers[:3] == (Layer("conv", 8), Layer("residual", 8), Layer("conv", 12))
    model = build_subnetwork(spec, (1, 8, 8), 3)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_build_matches_spec_widths_and_parameter_count():
    model = build_subnetwork(DENSE, (1, 40), 10, dropout=0.0)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    # dense(32): 40x32; residual(48): 32x48, 48x48, skip 32x48; residual(48): 48x48, 48x48 (identity skip); head
    expected = 40 * 32 + (32 * 48 + 48 * 48 + 32 * 48) + (48 * 48 * 2) + (48 * 10 + 10)
    assert sum(p.numel() for m in linears for p in m.parameters()) == expected


def test_tokens_decode_to_blocks():
    assert decode_layer("image", 0, 1, 40) is None
    assert decode_layer("image", 1, 0, 40) == Layer("conv", 40)
    assert decode_layer("image", 1, 1, 40) == Layer("residual", 40)
    assert decode_layer("dense", 1, 0, 17) == Layer("dense", 17)
    assert decode_layer("dense", 1, 1, 17) == Layer("dense_residual", 17)
    assert modality_for((1, 28, 28)) == "image" and modality_for((1, 40)) == "dense" and modality_for((5,)) == "dense"


def test_bad_specs_raise_typed_errors():
    with pytest.raises(ConfigError):
        Layer("transformer", 8)
    with pytest.raises(ConfigError):
        Layer("conv", 0)
    with pytest.raises(ConfigError):
        SubnetSpec("image", (Layer("dense", 8),))
    with pytest.raises(ConfigError):
        build_subnetwork(IMAGE, (1, 40), 10)
    with pytest.raises(ConfigError):
        render_program(IMAGE, dropout=1.5)
    with pytest.raises(ConfigError):
        SubnetSpec.from_dict({"modality": "image"})
    assert SubnetSpec.from_dict(IMAGE.as_dict()) == IMAGE


@pytest.mark.slow
def test_rendered_program_passes_the_sandbox(digits_evaluator):
    """The same text the host trains goes through the real sandboxed worker and statistics."""
    spec = SubnetSpec("image", (Layer("conv", 16), Layer("residual", 16)))
    result = digits_evaluator.evaluate(render_program(spec))
    assert result.ok, (result.reason, result.detail)
    assert result.param_count == sum(p.numel() for p in build_subnetwork(spec, (1, 8, 8), 10).parameters())
    assert result.statistics.member_error < 0.9   # trained: far better than chance Brier (0.9 for 10 classes)
