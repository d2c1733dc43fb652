"""RACHEL vs an AdaNet-style baseline vs a random-controller ablation (issue 8, docs/theory.md T5).

On each task and seed, the three grow-an-ensemble strategies train the same number of candidate
subnetworks (iterations x 4) under the same proxy budget; the search sees validation labels
only, test labels are used here, once, for the report. Per run it records ensemble test
accuracy and cross-entropy, total trained parameters (every candidate), deployed ensemble
parameters, safety-net firings and wall time, then prints a table of means +- std over seeds
and paired per-seed differences, and writes benchmarks/results/rachel.json.

CPU scale `small` (2 contended cores, one thread per process, (task, seed) runs in parallel processes):
  fashion-mnist: images 2x2-average-pooled to 14x14, first 1500 train / 1000 val examples,
                 full 10k test; widths 16..32; 2 epochs per candidate.
  mnist1d:       3200 train / 800 val / 1000 test (the bundled split); widths 16..128; 8 epochs.
  Both: 4 iterations x 4 candidates (the paper: 10 x 4) and 3 seeds. AdaNet candidate widths are
  the quartiles of RACHEL's width range, so both searches draw from comparable sizes.

    .venv/bin/python benchmarks/rachel.py [--iterations 4] [--seeds 0 1 2] [--tasks fashion-mnist mnist1d]
    .venv/bin/python benchmarks/rachel.py --scale medium --tasks fashion-mnist --out benchmarks/results/rachel_medium.json

Results: rachel.json (small, 4 iterations, both tasks), rachel_medium.json (Fashion-MNIST, medium),
rachel_mnist1d_8iter.json and rachel_fashion_8iter.json (small, --iterations 8 --tasks X).
`--scale medium` (Fashion-MNIST only was run: 3000 train, 3 epochs) checks whether the small-scale
ranking is an artefact of under-training (at small scale each candidate gets 24 optimiser steps).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "rachel.json"
STRATEGIES = ("rachel", "random", "adanet")
SCALES = {
    "small": {
        "fashion-mnist": {"train": 1500, "val": 1000, "pool": 2, "width": (16, 32), "epochs": 2, "batch": 128, "lr": 2e-3},
        "mnist1d": {"train": 3200, "val": 800, "pool": 1, "width": (16, 128), "epochs": 8, "batch": 100, "lr": 3e-3},
    },
    "medium": {  # fashion-mnist with 2x the data and 3 epochs: does the small-scale ranking survive?
        "fashion-mnist": {"train": 3000, "val": 1000, "pool": 2, "width": (16, 32), "epochs": 3, "batch": 128, "lr": 2e-3},
        "mnist1d": {"train": 3200, "val": 800, "pool": 1, "width": (16, 128), "epochs": 15, "batch": 100, "lr": 3e-3},
    },
}
SCALE = dict(SCALES["small"])


def _data(task_name: str, cache_dir: str | None):
    from agent.proposers.rachel.members import SearchData, load_search_data
    from evaluator.task_data import materialize
    from evaluator.tasks import get_task

    scale = SCALE[task_name]
    task = get_task(task_name)
    raw = load_search_data(task, cache_dir=cache_dir, train_subset=scale["train"], val_subset=scale["val"])
    y_test = materialize(task, cache_dir).y_test
    k = scale["pool"]
    if k > 1:  # average-pool images k x k (CPU scale)
        def pool(x):
            n, c, h, w = x.shape
            return np.ascontiguousarray(x.reshape(n, c, h // k, k, w // k, k).mean((3, 5)), dtype=np.float32)
        raw = SearchData(x_train=pool(raw.x_train), y_train=raw.y_train, x_val=pool(raw.x_val), y_val=raw.y_val,
                         x_test=pool(raw.x_test), num_classes=raw.num_classes)
    return raw, y_test


def _configs(task_name: str, strategy: str, seed: int, iterations: int):
    from agent.proposers.rachel.adanet import AdaNetConfig
    from agent.proposers.rachel.controller import ControllerConfig
    from agent.proposers.rachel.search import RachelConfig
    from evaluator.tasks import ProxyBudget

    s = SCALE[task_name]
    budget = ProxyBudget(epochs=s["epochs"], batch_size=s["batch"], lr=s["lr"])
    lo, hi = s["width"]
    if strategy == "adanet":
        quartiles = (lo + (hi - lo) // 4, lo + 3 * (hi - lo) // 4)
        return AdaNetConfig(iterations=iterations, widths=quartiles, budget=budget, seed=seed)
    return RachelConfig(iterations=iterations, candidates=4, budget=budget, seed=seed,
                        controller=ControllerConfig(width_min=lo, width_max=hi))


def run_task(task_name: str, seeds: list[int], iterations: int, cache_dir: str | None,
             scale: str = "small") -> list[dict]:
    import torch

    from agent.proposers.rachel.members import make_search

    torch.set_num_threads(1)
    SCALE.update(SCALES[scale])  # spawned workers start from the module default
    data, y_test = _data(task_name, cache_dir)
    rows = []
    for seed in seeds:
        for strategy in STRATEGIES:
            start = time.perf_counter()
            result = make_search(strategy, config=_configs(task_name, strategy, seed, iterations), data=data).run()
            wall = time.perf_counter() - start
            test = result.test_metrics(y_test)
            row = {"task": task_name, "strategy": strategy, "seed": seed, "test_accuracy": test["accuracy"],
                   "test_cross_entropy": test["cross_entropy"], "val_objective": result.val_objective,
                   "trained_candidates": result.trained_candidates, "failed_candidates": result.failed_candidates,
                   "trained_params": result.trained_params, "ensemble_params": result.ensemble_params,
                   "ensemble_size": len(result.members), "unique_members": len({id(m) for m in result.members}),
                   "safety_net_fired": result.safety_net_fired, "wall_seconds": wall,
                   "final_subnetwork": result.members[-1].spec.describe() if result.members else None,
                   "weights": [round(float(w), 4) for w in result.weights],
                   "history": [{k: v for k, v in h.items() if k != "controller"} for h in result.history]}
            rows.append(row)
            print(f"[{task_name}] seed {seed} {strategy:7s} acc {row['test_accuracy']:.4f} "
                  f"CE {row['test_cross_entropy']:.4f} trained {row['trained_params']:,} params "
                  f"{wall:.0f}s", flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    summary: dict = {}
    for task in sorted({r["task"] for r in rows}):
        summary[task] = {}
        for strategy in STRATEGIES:
            sel = [r for r in rows if r["task"] == task and r["strategy"] == strategy]
            if not sel:
                continue
            summary[task][strategy] = {
                key: {"mean": float(np.mean([r[key] for r in sel])), "std": float(np.std([r[key] for r in sel], ddof=1))
                      if len(sel) > 1 else 0.0}
                for key in ("test_accuracy", "test_cross_entropy", "trained_params", "ensemble_params",
                            "wall_seconds", "safety_net_fired", "trained_candidates")}
        for other in ("adanet", "random"):
            diffs_acc, diffs_ce = [], []
            for seed in sorted({r["seed"] for r in rows if r["task"] == task}):
                a = [r for r in rows if r["task"] == task and r["seed"] == seed and r["strategy"] == "rachel"]
                b = [r for r in rows if r["task"] == task and r["seed"] == seed and r["strategy"] == other]
                if a and b:
                    diffs_acc.append(a[0]["test_accuracy"] - b[0]["test_accuracy"])
                    diffs_ce.append(a[0]["test_cross_entropy"] - b[0]["test_cross_entropy"])
            if diffs_acc:
                summary[task][f"rachel_minus_{other}"] = {
                    "accuracy_per_seed": diffs_acc, "cross_entropy_per_seed": diffs_ce,
                    "mean_accuracy": float(np.mean(diffs_acc)), "mean_cross_entropy": float(np.mean(diffs_ce)),
                    "rachel_wins_accuracy": int(sum(d > 0 for d in diffs_acc)), "seeds": len(diffs_acc)}
    return summary


def print_table(summary: dict) -> None:
    header = (f"{'task':14s} {'strategy':8s} {'test acc':>15s} {'test CE':>15s} {'trained params':>16s} "
              f"{'ensemble params':>16s} {'cands':>5s} {'net':>4s} {'wall s':>10s}")
    print(header)
    print("-" * len(header))
    for task, per in summary.items():
        for strategy in STRATEGIES:
            if strategy not in per:
                continue
            s = per[strategy]
            print(f"{task:14s} {strategy:8s} {s['test_accuracy']['mean']:.4f}±{s['test_accuracy']['std']:.4f} "
                  f"{s['test_cross_entropy']['mean']:.4f}±{s['test_cross_entropy']['std']:.4f} "
                  f"{s['trained_params']['mean']:16,.0f} {s['ensemble_params']['mean']:16,.0f} "
                  f"{s['trained_candidates']['mean']:5.0f} {s['safety_net_fired']['mean']:4.1f} "
                  f"{s['wall_seconds']['mean']:6.0f}±{s['wall_seconds']['std']:3.0f}")
        for other in ("adanet", "random"):
            d = per.get(f"rachel_minus_{other}")
            if d:
                print(f"{task:14s} RACHEL - {other}: accuracy {d['mean_accuracy']:+.4f} "
                      f"(per seed {', '.join(f'{x:+.4f}' for x in d['accuracy_per_seed'])}; RACHEL higher on "
                      f"{d['rachel_wins_accuracy']}/{d['seeds']}), CE {d['mean_cross_entropy']:+.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(SCALE), choices=list(SCALE))
    parser.add_argument("--scale", default="small", choices=list(SCALES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--processes", type=int, default=2, help="(task, seed) runs in parallel processes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    SCALE.update(SCALES[args.scale])
    jobs = [(t, [seed], args.iterations, args.cache_dir, args.scale) for t in args.tasks for seed in args.seeds]
    if args.processes > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(args.processes, len(jobs))) as pool:
            rows = [r for part in pool.starmap(run_task, jobs) for r in part]
    else:
        rows = [r for job in jobs for r in run_task(*job)]
    summary = summarise(rows)
    print()
    print_table(summary)
    total = time.perf_counter() - start
    print(f"\ntotal wall {total:.0f} s; scale {args.scale}: {json.dumps(SCALE)}; iterations {args.iterations} x 4 candidates; "
          f"seeds {args.seeds}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "rachel", "scale_name": args.scale, "scale": SCALE, "processes": args.processes, "iterations": args.iterations, "candidates_per_iteration": 4,
        "seeds": args.seeds, "total_wall_seconds": total, "python": platform.python_version(),
        "machine": platform.machine(), "threads_per_process": 1, "summary": summary, "runs": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
