"""LLM proposer vs random mutation vs regularized evolution, at equal spent proposals.

Each (task, arm, seed) is a full `SearchLoop` run: same seed program, same proxy budget, same
acceptance gate, same search (the run's defaults for population and gate, recorded in the
results), and the same number of spent proposals: a proposal that failed before evaluation (an
edit that did not apply or build, a duplicate, a timeout) is spent like an evaluated one, so an
arm pays for its invalid edits. Both counts are reported. Arms (ARMS): `llm` (the default
generator), `llm-0.5b` / `llm-1.5b` (a bundled Qwen2.5-Coder by name), `random`, `evolution`,
`llm+evolution`. Reported: the final incumbent's real M-member ensemble on the test split (mean ±
std over seeds), accepted candidates, valid rate (evaluated / spent), distinct LLM edits, the
acceptance trace and wall time.

    python benchmarks/search_vs_baselines.py [--arms llm random evolution] [--tasks digits mnist1d] \
        [--seeds 0 1 2] [--proposals 12]
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


# arm -> (proposers with candidates per cycle, generator model); every arm spends 4 proposals a cycle
ARMS: dict[str, tuple[list[dict], str | None]] = {
    "llm": ([{"name": "llm", "candidates": 4}], None),
    "llm-0.5b": ([{"name": "llm", "candidates": 4}], "qwen2.5-coder-0.5b"),
    "llm-1.5b": ([{"name": "llm", "candidates": 4}], "qwen2.5-coder-1.5b"),
    "random": ([{"name": "random", "candidates": 4}], None),
    "evolution": ([{"name": "evolution", "candidates": 4}], None),
    "llm+evolution": ([{"name": "llm", "candidates": 2}, {"name": "evolution", "candidates": 2}], None),
}


def spent(rows) -> int:
    return sum(r.proposer != "seed" for r in rows)


def one_run(workdir: Path, task: str, arm: str, seed: int, proposals: int, max_cycles: int, generator: dict) -> dict:
    task_file = workdir / "task.yaml"
    task_file.write_text(TASKS[task])
    specs, model = ARMS[arm]
    per_cycle = sum(s["candidates"] for s in specs)
    cycles = -(-proposals // per_cycle)
    generator = {"backend": "llama_cpp", **generator, **({"model": model} if model else {})}
    config = RunConfig.load(None, task=str(task_file), cycles=cycles, seed=seed, noise_instances=4,
                            proposers=specs, generator=generator,
                            sandbox={"backend": "subprocess", "workers": 2}, ce_update={"enabled": False},
                            deploy={"members": 5})
    run_dir = workdir / "run"
    start = time.perf_counter()
    loop = SearchLoop(run_dir=run_dir, config=config, progress=False)
    loop.config = loop.config.model_copy(update={"deploy": loop.config.deploy.model_copy(update={"export": False})})
    loop.run()
    while True:
        if spent(loop.store.candidates()) >= proposals or loop.config.cycles >= max_cycles:
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
    from agent.proposers.llm import edit_counts
    search = {"population": loop.config.population.enabled, "islands": loop.config.population.islands
              if loop.config.population.enabled else None, "gate": loop.config.acceptance.method,
              "pipeline": loop.config.pipeline, "generator": loop.config.generator.get("model")
              if any(s["name"] == "llm" for s in specs) else None}
    return {"task": task, "arm": arm, "seed": seed, "wall_seconds": time.perf_counter() - start, "search": search,
            "evaluations": sum(r.evaluations > 0 for r in rows if r.proposer != "seed"),
            "proposals": spent(rows), "llm_edits": edit_counts(rows),
            "accepted": sum(r.status == "accepted" for r in rows),
            "failed": sum(r.status == "failed" for r in rows),
            "proposal_failed": sum(r.status == "proposal_failed" for r in rows),
            "filtered": sum(r.status == "filtered" for r in rows),
            "test_brier": report["final"]["brier"], "test_accuracy": report["final"]["accuracy"],
            "seed_test_brier": report["seed"]["brier"], "trace": trace,
            "timings": dict(loop.timings), "cycles": loop.config.cycles}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--proposals", type=int, default=12, help="spent proposals per run (failed ones count)")
    parser.add_argument("--max-cycles", type=int, default=6)
    parser.add_argument("--generator", default="{}", help="JSON generator config for the llm arms")
    parser.add_argument("--name", default="search_vs_baselines")
    args = parser.parse_args()
    out = Path(__file__).parent / "results" / f"{args.name}.json"
    previous = json.loads(out.read_text()).get("runs", []) if out.exists() else []
    runs = [r for r in previous if "arm" in r]          # runs of the older, per-proposer layout are dropped
    done = {(r["task"], r["arm"], r["seed"]) for r in runs}
    import os
    for task in args.tasks:
        for arm in args.arms:
            for seed in args.seeds:
                if (task, arm, seed) in done:
                    continue
                workdir = Path(tempfile.mkdtemp(prefix="ensnas-svb-"))
                try:
                    r = one_run(workdir, task, arm, seed, args.proposals, args.max_cycles, json.loads(args.generator))
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                r["loadavg"] = os.getloadavg()
                runs.append(r)
                print(f"  {task}/{arm}/seed {seed}: test Brier {r['test_brier']:.4f} (seed program "
                      f"{r['seed_test_brier']:.4f}), {r['accepted']} accepted, {r['evaluations']} evaluated of "
                      f"{r['proposals']} spent, {r['wall_seconds']:.0f} s", flush=True)
                write_result(args.name, {"runs": runs})  # incremental: a long benchmark resumes
    rows = []
    for task in args.tasks:
        for arm in args.arms:
            rs = [r for r in runs if r["task"] == task and r["arm"] == arm]
            if not rs:
                continue
            b = np.array([r["test_brier"] for r in rs])
            a = np.array([r["test_accuracy"] for r in rs])
            valid = sum(r["evaluations"] for r in rs) / max(1, sum(r["proposals"] for r in rs))
            distinct = [r["llm_edits"]["distinct"] for r in rs if r["llm_edits"]["proposed"]]
            rows.append([task, arm, len(rs), f"{b.mean():.4f} ± {b.std():.4f}", f"{a.mean():.4f} ± {a.std():.4f}",
                         f"{np.mean([r['seed_test_brier'] for r in rs]):.4f}",
                         f"{np.mean([r['proposals'] for r in rs]):.1f}", f"{np.mean([r['evaluations'] for r in rs]):.1f}",
                         f"{valid:.2f}", f"{np.mean(distinct):.1f}" if distinct else "-",
                         f"{np.mean([r['accepted'] for r in rs]):.1f}", f"{np.mean([r['wall_seconds'] for r in rs]):.0f}"])
    print("\nfinal incumbent as a real 5-member ensemble, test split (mean ± std over seeds)")
    print_table(["task", "arm", "seeds", "test Brier", "test accuracy", "seed prog. Brier", "spent", "evaluated",
                 "valid rate", "distinct LLM edits", "accepted", "wall s"], rows)
    write_result(args.name, {"runs": runs, "table": rows})


if __name__ == "__main__":
    main()
