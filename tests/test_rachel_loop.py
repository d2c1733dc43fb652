"""The rachel proposer inside the real search loop: its accepted subnetworks are stored as programs,
run in the sandbox and judged by the acceptance gate like every other proposer's."""
from __future__ import annotations

import pytest
import torch

from agent.config import RunConfig
from agent.loop import SearchLoop
from agent.proposers.rachel.subnetworks import SubnetSpec, render_program
from agent.store import RunStore

TASK = """name: digits-rachel
dataset: digits
val_fraction: 0.25
budget: {epochs: 1, batch_size: 64, lr: 0.003}
seed_program: mlp.py
members: 5
"""


@pytest.mark.slow
@pytest.mark.integration
def test_rachel_candidates_go_through_sandbox_store_and_gate(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = tmp_path / "task.yaml"
        task.write_text(TASK)
        search = {"iterations": 2, "candidates": 2,
                  "controller": {"width_min": 8, "width_max": 16, "max_new_layers": 2}}
        config = RunConfig.load(None, task=str(task), cycles=1, noise_instances=2,
                                proposers=[{"name": "rachel", "candidates": 1, "options": {"search": search}}],
                                sandbox={"backend": "subprocess", "workers": 1}, deploy={"members": 2})
        SearchLoop(run_dir=tmp_path / "run", config=config, progress=False).run()
    finally:
        torch.set_num_threads(before)
    rows = [r for r in RunStore(tmp_path / "run").candidates() if r.proposer == "rachel"]
    assert len(rows) == 1                           # the first iteration always emits (no net yet)
    assert rows[0].status in ("accepted", "rejected"), (rows[0].status, rows[0].reason)
    for row in rows:
        spec = SubnetSpec.from_dict(row.meta["spec"])
        assert row.source == render_program(spec)
        assert row.statistics is not None and row.decision is not None
    assert rows[0].meta["reward"] == -rows[0].meta["objective"]
