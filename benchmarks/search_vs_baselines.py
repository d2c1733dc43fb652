"""LLM proposer vs random mutation vs regularized evolution, at equal candidate evaluations.

Each (task, proposer, seed) is a full `SearchLoop` run: same seed program, same proxy budget,
same acceptance gate, same number of evaluated candidates (a proposer whose proposals fail
before evaluation gets extra cycles until it has had as many evaluations, up to a cap). Reported:
the final incumbent's real M-member ensemble on the test split (mean ± std over seeds), the
acceptance trace (incumbent's predicted ensemble error per cycle), and the time split.

    python benchmarks/search_vs_baselines.py [--proposers llm random evolution] [--tasks digits mnist1d]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config import RunConfig  # noqa: E402
from agent.loop import SearchLoop, predicted  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402

TASKS = {
    "digits": "name: digits-proxy\ndataset: digits\nval_fraction: 0.25\nbudget: {epochs: 5, batch_size: 64, lr: 0.003}\n"
              "seed_program: mlp.py\nmembers: 5\n",
    "mnist1d": "name: mnist1d-proxy\ndataset: mnist1d\nval_fraction: 0.2\nbudget: {epochs: 5, batch_size: 100, lr: 0.003}\n"
               "seed_program: mlp.py\nmembers: 5\n",
}


def one_run(workdir: Path, task: str, proposer: str, seed: int, evaluations: int, candidates: int,
            max_cycles: int, generator: dict) -> dict:
    task_file = workdir / "task.yaml"
    task_file.write_text(TASKS[task])
    cycles = -(-evaluations // candidates)
    config = RunConfig.load(None, task=str(task_file), cycles=cycles, seed=seed, noise_instances=4,
                            proposers=[{"name": proposer, "candidates": candidates}], generator=generator,
                            sandbox={"backend": "subprocess", "workers": 2}, ce_update={"enabled": False},
                            deploy={"members": 5})
    run_dir = workdir / "run"
    start = time.perf_counter()
    loop = SearchLoop(run_dir=run_dir, config=config, progress=False)
    loop.config = loop.config.model_copy(update={"deploy": loop.config.deploy.model_copy(update={"export": False})})
    loop.run()
    while True:
        done = sum(r.evaluations for r in loop.store.candidates() if r.proposer != "seed")
        if done >= evaluations or loop.config.cycles >= max_cycles:
            break
        loop.config = loop.config.model_copy(update={"cycles": loop.config.cycles + 1})
        loop.run()
    from agent.deploy import deploy_final
    report = deploy_final(loop)
    rows = loop.store.candidates()
    trace = []
    for c in loop.store.cycles():
        inc = loop.store.candidate(c["incumbent_after"])
        trace.append(predicted(inc, loop.members))
    return {"task": task, "proposer": proposer, "seed": seed, "wall_seconds": time.perf_counter() - start,
            "evaluations": sum(r.evaluations for r in rows if r.proposer != "seed"),
            "proposals": sum(r.proposer != "seed" for r in rows),
            "accepted": sum(r.status == "accepted" for r in rows),
            "failed": sum(r.status == "failed" for r in rows),
            "proposal_failed": sum(r.status == "proposal_failed" for r in rows),
            "filtered": sum(r.status == "filtered" for r in rows),
            "test_brier": report["final"]["brier"], "test_accuracy": report["final"]["accuracy"],
            "seed_test_brier": report["seed"]["brier"], "trace": trace,
            "timings": dict(loop.timings), "cycles": loop.config.cycles}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proposers", nargs="+", default=["llm", "random", "evolution"])
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--evaluations", type=int, default=9)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--max-cycles", type=int, default=6)
    parser.add_argument("--generator", default="{}", help="JSON generator config for the llm proposer")
    parser.add_argument("--name", default="search_vs_baselines")
    args = parser.parse_args()
    out = Path(__file__).parent / "results" / f"{args.name}.json"
    previous = json.loads(out.read_text()).get("runs", []) if out.exists() else []
    done = {(r["task"], r["proposer"], r["seed"]) for r in previous}
    runs = list(previous)
    for task in args.tasks:
        for proposer in args.proposers:
            for seed in args.seeds:
                if (task, proposer, seed) in done:
                    continue
                workdir = Path(tempfile.mkdtemp(prefix="ensnas-svb-"))
                try:
                    r = one_run(workdir, task, proposer, seed, args.evaluations, args.candidates, args.max_cycles,
                                json.loads(args.generator))
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                runs.append(r)
                print(f"  {task}/{proposer}/seed {seed}: test Brier {r['test_brier']:.4f} (seed program "
                      f"{r['seed_test_brier']:.4f}), {r['accepted']} accepted of {r['evaluations']} evaluated, "
                      f"{r['wall_seconds']:.0f} s", flush=True)
                write_result(args.name, {"runs": runs})  # incremental: a long benchmark resumes
    rows = []
    for task in args.tasks:
        for proposer in args.proposers:
            rs = [r for r in runs if r["task"] == task and r["proposer"] == proposer]
            if not rs:
                continue
            b = np.array([r["test_brier"] for r in rs])
            a = np.array([r["test_accuracy"] for r in rs])
            rows.append([task, proposer, len(rs), f"{b.mean():.4f} ± {b.std():.4f}", f"{a.mean():.4f} ± {a.std():.4f}",
                         f"{np.mean([r['seed_test_brier'] for r in rs]):.4f}",
                         f"{np.mean([r['evaluations'] for r in rs]):.1f}", f"{np.mean([r['accepted'] for r in rs]):.1f}",
                         f"{np.mean([r['wall_seconds'] for r in rs]):.0f}"])
    print("\nfinal incumbent as a real 5-member ensemble, test split (mean ± std over seeds)")
    print_table(["task", "proposer", "seeds", "test Brier", "test accuracy", "seed prog. Brier", "evaluations",
                 "accepted", "wall s"], rows)
    write_result(args.name, {"runs": runs, "table": rows})


if __name__ == "__main__":
    main()
