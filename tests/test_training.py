"""The proxy trainer's hand-written Adam against torch.optim.Adam, and what a fresh worker imports."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from evaluator.training import Adam


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6, 5), torch.nn.LayerNorm(5))


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
@pytest.mark.parametrize("lr", [3e-3, 1e-1])
def test_adam_matches_torch_optim_step_for_step(lr, weight_decay):
    ours, ref = _model(0), _model(0)
    ours[4].weight.requires_grad_(False)  # frozen parameters are skipped by both
    ref[4].weight.requires_grad_(False)
    opt_ours = Adam(ours.parameters(), lr=lr, weight_decay=weight_decay)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(1)
    for step in range(40):
        x, y = torch.randn(16, 2, 8, generator=gen), torch.randint(0, 5, (16,), generator=gen)
        for model, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        for a, b in zip(ours.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"step {step}")
    assert any((a != _model(0).state_dict()[k]).any() for k, a in ours.state_dict().items())  # it did train


def test_training_does_not_import_torch_dynamo():
    """The reason the optimizer is written out: keep ~1 s of imports out of every fresh worker."""
    code = ("import sys, numpy as np, torch\n"
            "from evaluator.training import Budget, train_instance, predict_probabilities\n"
            "m = torch.nn.Sequential(torch.nn.Linear(4, 3))\n"
            "x, y = np.random.rand(32, 4).astype(np.float32), np.random.randint(0, 3, 32)\n"
            "train_instance(m, x, y, Budget(epochs=1, batch_size=8), 0)\n"
            "predict_probabilities(m, x)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
