"""Theorem 1 (seed 001) measured inside the EdgeNES implementation, epoch by epoch.

The benchmark `edgenes.py` reports m for the one selected ensemble per seed. Here the members
are many architectures sampled from the trained hypernetwork at lambda ~ U{1..Lambda} (the
theorem's nu), so E[m] for an N-member ensemble is N times the per-member mean; it is shown
per training epoch, because the warm-up starts hot (t = t_start, samples nearly random, few
alpha* edges) and only the late, cold epochs realise mu ~ lambda. Scale: digits, the CPU
config of benchmarks/edgenes.py (C=8, 2 cells, 600/600 search images), 3 seeds.

    .venv/bin/python benchmarks/edgenes_theorem1.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

N_MEMBERS = 3
SAMPLED_MEMBERS = 160


def main() -> int:
    import torch

    from agent.proposers.darts.darts import run_darts
    from agent.proposers.darts.data import load_task, search_split
    from agent.proposers.darts.edgenes import sample_architectures, train_hypernetwork, updated_edges
    from edgenes import task_config
    from evaluator.tasks import get_task
    from theory.edgenes import expected_updated_edges

    torch.set_num_threads(1)
    cfg = task_config("digits", False)
    arrays = load_task(get_task("digits"))
    start = time.perf_counter()
    rows = []
    for seed in (0, 1, 2):
        search = search_split(arrays, cfg.data, seed)
        darts = run_darts(search, input_shape=arrays.input_shape, num_classes=arrays.num_classes, space=cfg.space,
                          cfg=cfg.darts, batching=cfg.data, seed=1000 * seed)
        res = train_hypernetwork(search, supernet=darts.supernet, alpha_star=darts.genotype, init_alpha=darts.alpha,
                                 cfg=cfg.edgenes, batching=cfg.data, seed=seed)
        lam = darts.genotype.size
        nus = np.random.default_rng(seed).integers(1, lam + 1, SAMPLED_MEMBERS).astype(float).tolist()
        members = [g for _, g in sample_architectures(res.hypernet, nus, t=cfg.edgenes.t_end, seed=seed)]
        per_epoch = len(res.step_edges) // cfg.edgenes.epochs
        for epoch in range(cfg.edgenes.epochs):
            steps = res.step_edges[epoch * per_epoch:(epoch + 1) * per_epoch]
            got = updated_edges(steps, members, darts.genotype)
            rows.append({"seed": seed, "epoch": epoch, "t": res.history[epoch]["t"], "c": res.history[epoch]["c"],
                         "mean_mu": got["mean_mu"], "mean_nu": float(np.mean(got["nu"])),
                         "m_alpha_star": N_MEMBERS * got["m_alpha_star"] / len(members),
                         "m_all_shared": N_MEMBERS * got["m_all_shared"] / len(members),
                         "plug_in": N_MEMBERS * got["mean_mu"] * float(np.mean(got["nu"])) / lam})
    theory = expected_updated_edges(N_MEMBERS, 16)
    print(f"Theorem 1, N={N_MEMBERS}, Lambda=16: theory E[m] = {theory:.2f} (mu, nu ~ U{{1..16}}: E[mu] = E[nu] = 8.5); "
          f"DARTS-ensembling updates 16 final edges per step")
    print(f"{'epoch':>5}{'t':>6}{'c':>6}{'E[mu]':>8}{'E[nu]':>8}{'m (alpha*)':>12}{'plug-in':>9}{'m (all)':>9}")
    summary = []
    for epoch in range(cfg.edgenes.epochs):
        r = [x for x in rows if x["epoch"] == epoch]
        row = {k: float(np.mean([x[k] for x in r])) for k in ("t", "c", "mean_mu", "mean_nu", "m_alpha_star",
                                                              "plug_in", "m_all_shared")}
        row["epoch"] = epoch
        summary.append(row)
        print(f"{epoch:>5}{row['t']:>6.2f}{row['c']:>6.2f}{row['mean_mu']:>8.2f}{row['mean_nu']:>8.2f}"
              f"{row['m_alpha_star']:>12.2f}{row['plug_in']:>9.2f}{row['m_all_shared']:>9.2f}")
    out = {"benchmark": "edgenes_theorem1", "theory": theory, "N": N_MEMBERS, "Lambda": 16,
           "sampled_members": SAMPLED_MEMBERS, "scale": "digits, CPU config of benchmarks/edgenes.py, 3 seeds",
           "per_epoch": summary, "rows": rows, "wall_s": time.perf_counter() - start}
    path = ROOT / "benchmarks" / "results" / "edgenes_theorem1.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
