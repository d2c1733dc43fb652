"""The MinHash-Jaccard novelty filter on vs off (docs/theory.md T6.5): the same search twice.

Reports, per setting: proposals, evaluations run, duplicates dropped before evaluation,
mean pairwise Jaccard (exact, token 5-shingles) of the evaluated programs, sandbox seconds,
and the model calls made by the filter (it has no model: 0 by construction, counted anyway).

    python benchmarks/novelty.py [--proposer evolution] [--cycles 5] [--candidates 4]
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config import RunConfig  # noqa: E402
from agent.loop import SearchLoop  # noqa: E402
from agent.novelty import exact_jaccard  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402

TASK = """name: digits-proxy
dataset: digits
val_fraction: 0.25
budget: {epochs: 3, batch_size: 64, lr: 0.003}
seed_program: mlp.py
members: 5
"""


def one_run(workdir: Path, *, novelty: bool, proposers: list[str], cycles: int, candidates: int, seed: int,
            generator: dict) -> dict:
    task = workdir / "task.yaml"
    task.write_text(TASK)
    config = RunConfig.load(None, task=str(task), cycles=cycles, seed=seed, noise_instances=4,
                            proposers=[{"name": p, "candidates": candidates} for p in proposers],
                            novelty={"enabled": novelty}, sandbox={"backend": "subprocess", "workers": 2},
                            ce_update={"enabled": False}, deploy={"export": False}, generator=generator)
    run_dir = workdir / ("on" if novelty else "off")
    start = time.perf_counter()
    loop = SearchLoop(run_dir=run_dir, config=config, progress=False)
    calls = {"n": 0}
    original = loop.prefilter.check

    def counting_check(source):  # count generator calls made while the filter runs
        before = sum(getattr(p, "stats", {}).get("calls", 0) for _, p in loop.proposers)
        verdict = original(source)
        calls["n"] += sum(getattr(p, "stats", {}).get("calls", 0) for _, p in loop.proposers) - before
        return verdict
    loop.prefilter.check = counting_check
    loop.run()
    wall = time.perf_counter() - start
    rows = loop.store.candidates()
    evaluated = [r.source for r in rows if r.evaluations > 0 and r.proposer != "seed"]
    pairs = list(itertools.combinations(evaluated, 2))
    return {"novelty": novelty, "proposals": sum(r.proposer != "seed" for r in rows),
            "evaluations": len(evaluated), "filtered": sum(r.status == "filtered" for r in rows),
            "duplicates_exact": sum(1 for a, b in pairs if a == b),
            "mean_pairwise_jaccard": float(np.mean([exact_jaccard(a, b) for a, b in pairs])) if pairs else float("nan"),
            "distinct_evaluated": len(set(evaluated)),
            "sandbox_seconds": float(sum(r.eval_seconds or 0 for r in rows if r.proposer != "seed")),
            "wall_seconds": wall, "filter_model_calls": calls["n"],
            "accepted": sum(r.status == "accepted" for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proposer", action="append", help="default: evolution")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--name", default="novelty")
    args = parser.parse_args()
    proposers = args.proposer or ["evolution"]
    results = []
    for seed in args.seeds:
        for novelty in (True, False):
            workdir = Path(tempfile.mkdtemp(prefix="ensnas-novelty-"))
            try:
                r = one_run(workdir, novelty=novelty, proposers=proposers, cycles=args.cycles,
                            candidates=args.candidates, seed=seed, generator={})
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            r["seed"] = seed
            results.append(r)
            print(f"  seed {seed}, filter {'on' if novelty else 'off'}: {r['evaluations']} evaluations, "
                  f"{r['filtered']} dropped, mean Jaccard {r['mean_pairwise_jaccard']:.3f}", flush=True)
    headers = ["filter", "seed", "proposals", "evaluated", "dropped", "exact dup. evaluated", "distinct",
               "mean pairwise J", "sandbox s", "filter model calls"]
    rows = [["on" if r["novelty"] else "off", r["seed"], r["proposals"], r["evaluations"], r["filtered"],
             r["duplicates_exact"], r["distinct_evaluated"], r["mean_pairwise_jaccard"], r["sandbox_seconds"],
             r["filter_model_calls"]] for r in results]
    print(f"\nnovelty filter on vs off — proposers {proposers}, {args.cycles} cycles × {args.candidates} candidates")
    print_table(headers, rows)
    on = [r for r in results if r["novelty"]]
    off = [r for r in results if not r["novelty"]]
    summary = {"evaluations_saved_fraction": 1 - sum(r["evaluations"] for r in on) / max(1, sum(r["evaluations"] for r in off)),
               "mean_jaccard_on": float(np.mean([r["mean_pairwise_jaccard"] for r in on])),
               "mean_jaccard_off": float(np.mean([r["mean_pairwise_jaccard"] for r in off])),
               "filter_model_calls": sum(r["filter_model_calls"] for r in results)}
    print(f"\nevaluations saved: {summary['evaluations_saved_fraction']:.1%}; mean pairwise Jaccard on "
          f"{summary['mean_jaccard_on']:.3f} vs off {summary['mean_jaccard_off']:.3f}; model calls by the filter: "
          f"{summary['filter_model_calls']}")
    write_result(args.name, {"proposers": proposers, "cycles": args.cycles, "candidates": args.candidates,
                             "runs": results, "summary": summary})


if __name__ == "__main__":
    main()
