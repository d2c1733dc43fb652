"""Does the 2-instance acceptance test (docs/theory.md T2) agree with really trained M = 10 ensembles?

For each task a pool of genuinely different architectures (width, depth, dropout, activation,
feature fraction, convolution) is trained 2 times (the test's instances, seeds 0–1) and 10 more
times (ground truth, seeds 100–109). Every ordered pair (baseline, candidate) gets the test's
decision — point estimate and the bounded test — and the ground truth: is the candidate's real
10-member ensemble better than the baseline's (Brier, on the held-out test split; on validation too)?

    python benchmarks/acceptance_fidelity.py [--tasks digits mnist1d] [--pool 10]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import load_inputs, print_table, train_program, write_result  # noqa: E402
from evaluator.acceptance import AcceptanceConfig, acceptance_test  # noqa: E402
from evaluator.statistics import ensemble_metrics  # noqa: E402
from evaluator.tasks import get_task  # noqa: E402

MLP = '''import torch.nn as nn
FEATURE_FRACTION = {fraction}

def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    layers, width = [nn.Flatten()], n
    for _ in range({depth}):
        layers += [nn.Linear(width, {width}), nn.{act}(), nn.Dropout({dropout})]
        width = {width}
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
'''

CONV = '''import torch.nn as nn

def build_model(input_shape, num_classes):
    conv = nn.Conv1d if len(input_shape) == 2 else nn.Conv2d
    pool = nn.AdaptiveAvgPool1d(4) if len(input_shape) == 2 else nn.AdaptiveAvgPool2d(2)
    cells = 4 if len(input_shape) == 2 else 4
    return nn.Sequential(conv(input_shape[0], {channels}, 3, padding=1), nn.{act}(),
                         conv({channels}, {channels}, 3, padding=1), nn.{act}(), pool, nn.Flatten(),
                         nn.Dropout({dropout}), nn.Linear({channels} * cells, num_classes))
'''

POOL = [  # (name, template, parameters)
    ("mlp-w16-d1", MLP, dict(width=16, depth=1, act="ReLU", dropout=0.0, fraction=1.0)),
    ("mlp-w64-d1", MLP, dict(width=64, depth=1, act="ReLU", dropout=0.0, fraction=1.0)),
    ("mlp-w256-d2", MLP, dict(width=256, depth=2, act="ReLU", dropout=0.1, fraction=1.0)),
    ("mlp-w64-d3-tanh", MLP, dict(width=64, depth=3, act="Tanh", dropout=0.0, fraction=1.0)),
    ("mlp-w128-d2-drop0.5", MLP, dict(width=128, depth=2, act="ReLU", dropout=0.5, fraction=1.0)),
    ("mlp-w128-d2-gelu", MLP, dict(width=128, depth=2, act="GELU", dropout=0.1, fraction=1.0)),
    ("mlp-w128-d1-ff0.5", MLP, dict(width=128, depth=1, act="ReLU", dropout=0.0, fraction=0.5)),
    ("mlp-w64-d2-ff0.7", MLP, dict(width=64, depth=2, act="ReLU", dropout=0.2, fraction=0.7)),
    ("conv-c16-relu", CONV, dict(channels=16, act="ReLU", dropout=0.0)),
    ("conv-c32-gelu", CONV, dict(channels=32, act="GELU", dropout=0.3)),
    ("mlp-w32-d2-sigmoid", MLP, dict(width=32, depth=2, act="Sigmoid", dropout=0.0, fraction=1.0)),
    ("mlp-w512-d1-drop0.3", MLP, dict(width=512, depth=1, act="ReLU", dropout=0.3, fraction=1.0)),
]


def run_task(task_name: str, pool_size: int, members: int, gt_members: int) -> dict:
    task = get_task(task_name)
    data, arrays = load_inputs(task)
    trained = {}
    train_program(POOL[0][1].format(**POOL[0][2]), task, data, arrays, seeds=[999])  # warm-up, not timed
    for name, template, params in POOL[:pool_size]:
        source = template.format(**params)
        val2, test2, sec2 = train_program(source, task, data, arrays, seeds=[0, 1])
        valm, testm, secm = train_program(source, task, data, arrays, seeds=list(range(100, 100 + gt_members)))
        trained[name] = dict(val2=val2, sec2=sum(sec2), valm=valm, testm=testm, secm=sum(secm),
                             gt_test=ensemble_metrics(testm, data.y_test)["brier"],
                             gt_val=ensemble_metrics(valm, data.y_val)["brier"])
        print(f"  {task_name}/{name}: 10-ensemble test Brier {trained[name]['gt_test']:.4f}, "
              f"train {sum(sec2):.1f}+{sum(secm):.1f} s", flush=True)
    config = AcceptanceConfig(members=members, alpha=0.1, bootstrap=2000)
    pairs = []
    for base, cand in itertools.permutations(trained, 2):
        b, c = trained[base], trained[cand]
        d = acceptance_test(b["val2"], c["val2"], data.y_val, config)
        pairs.append(dict(base=base, candidate=cand, point_accept=d.point_accept, accept=d.accept,
                          confident=d.confident, lower=d.lower_bound, upper=d.upper_bound,
                          predicted_gain=d.predicted_improvement,
                          true_gain_test=b["gt_test"] - c["gt_test"], true_gain_val=b["gt_val"] - c["gt_val"],
                          test_seconds=b["sec2"] + c["sec2"], truth_seconds=b["secm"] + c["secm"]))
    return summarise(task_name, pairs)


def summarise(task_name: str, pairs: list[dict]) -> dict:
    def rate(rows, decide, truth="true_gain_test"):
        return float(np.mean([decide(p) == (p[truth] > 0) for p in rows])) if rows else float("nan")
    confident = [p for p in pairs if p["confident"]]
    clear = [p for p in pairs if abs(p["true_gain_test"]) > 0.002]
    return {
        "task": task_name, "pairs": len(pairs),
        "agreement_point": rate(pairs, lambda p: p["point_accept"]),
        "agreement_bounded": rate(pairs, lambda p: p["accept"]),
        "confident_pairs": len(confident),
        "agreement_confident": rate(confident, lambda p: p["lower"] > 0),
        "agreement_point_clear_gap": rate(clear, lambda p: p["point_accept"]),
        "clear_gap_pairs": len(clear),
        "agreement_point_vs_val_truth": rate(pairs, lambda p: p["point_accept"], "true_gain_val"),
        "false_accepts_bounded": int(sum(p["accept"] and p["true_gain_test"] <= 0 for p in pairs)),
        "false_accepts_point": int(sum(p["point_accept"] and p["true_gain_test"] <= 0 for p in pairs)),
        "cost_ratio": float(sum(p["test_seconds"] for p in pairs) / sum(p["truth_seconds"] for p in pairs)),
        "pair_details": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--pool", type=int, default=8, help="architectures per task (pairs = pool·(pool−1))")
    parser.add_argument("--members", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    summaries = [run_task(t, args.pool, args.members, args.members) for t in args.tasks]
    headers = ["task", "pairs", "agree point", "agree bounded", "confident", "agree confident",
               "agree (|gap|>.002)", "false acc. point/bounded", "cost ratio"]
    rows = [[s["task"], s["pairs"], s["agreement_point"], s["agreement_bounded"], s["confident_pairs"],
             s["agreement_confident"], f"{s['agreement_point_clear_gap']:.3f} ({s['clear_gap_pairs']})",
             f"{s['false_accepts_point']}/{s['false_accepts_bounded']}", s["cost_ratio"]] for s in summaries]
    all_pairs = [p for s in summaries for p in s["pair_details"]]
    overall = summarise("all", all_pairs)
    rows.append(["all", overall["pairs"], overall["agreement_point"], overall["agreement_bounded"],
                 overall["confident_pairs"], overall["agreement_confident"],
                 f"{overall['agreement_point_clear_gap']:.3f} ({overall['clear_gap_pairs']})",
                 f"{overall['false_accepts_point']}/{overall['false_accepts_bounded']}", overall["cost_ratio"]])
    print(f"\nacceptance test (2 instances, M = {args.members}) vs real {args.members}-member ensembles (test split)")
    print_table(headers, rows)
    path = write_result("acceptance_fidelity", {"members": args.members, "pool": args.pool,
                                                 "wall_seconds": time.perf_counter() - start,
                                                 "overall": {k: v for k, v in overall.items() if k != "pair_details"},
                                                 "tasks": summaries})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
