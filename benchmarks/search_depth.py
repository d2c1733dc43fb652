"""Today's hill climber vs the population search (islands + Pareto archives + bandit over proposers
and operators, crossover, migration) at equal candidate evaluations.

Each (task, method, seed) is a full `SearchLoop` run with the same seed program, proxy budget,
acceptance test and proposers (evolution + random; the population search adds its crossover
operator), stopped by the evaluation budget (`budget.max_evaluations`). Reported per run:
- the final incumbent deployed as a real M-member ensemble, test-split Brier;
- the front: what the method returns (the hill climber: its incumbent; the population search:
  its archive members) and, post hoc, the non-dominated set of everything it evaluated, each
  member scored by its predicted M-ensemble test Brier (T1 on the two stored test-split instances),
  its parameters and its measured batch-1 CPU latency;
- the hypervolume of both fronts over (test Brier, params, latency), each axis divided by the seed
  program's value in the same run, reference point REFERENCE, as a fraction of the reference box;
- accepted (hill climber) / entered (population) counts and wall time.

    nice -n 10 python benchmarks/search_depth.py [--tasks digits mnist1d] [--seeds 0 1 2] [--evaluations 24]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config import RunConfig  # noqa: E402
from agent.loop import SearchLoop  # noqa: E402
from agent.population.pareto import hypervolume  # noqa: E402
from benchmarks._common import RESULTS, print_table, write_result  # noqa: E402
from benchmarks.search_vs_baselines import TASKS  # noqa: E402
from evaluator.statistics import compute_statistics  # noqa: E402

REFERENCE = (1.5, 10.0, 10.0)   # (test Brier, params, latency) as multiples of the seed program's
MEMBERS = 5
# per method, the code its results came from: results of an earlier judge (the fixed bootstrap
# test), or of the population search before it deployed only gate-proven programs, are not mixed in
CODE = {"hill_climber": "gate", "population": "gate-vs-incumbent+proven-incumbent+twins"}
METHODS = {"hill_climber": dict(population={"enabled": False}, pipeline="off"),
           "population": dict(population={"enabled": True, "islands": 2, "migrate_every": 3}, pipeline="overlapped")}
# the proposers of each method, per preset; the population search adds its crossover operator (without
# a model: the crossover proposer; with the LLM: the llm:crossover arm, which needs no extra proposer)
PROPOSERS = {
    "mutation": {"hill_climber": [{"name": "random", "candidates": 2}, {"name": "evolution", "candidates": 2}],
                 "population": [{"name": "random", "candidates": 2}, {"name": "evolution", "candidates": 1},
                                {"name": "crossover", "candidates": 1}]},
    "llm": {m: [{"name": "llm", "candidates": 2}, {"name": "evolution", "candidates": 1},
                {"name": "random", "candidates": 1}] for m in METHODS},
}


def point(store, cid: int, y_test: np.ndarray) -> dict:
    row = store.candidate(cid)
    _, test = store.load_predictions(cid)
    stats = compute_statistics(test, y_test)
    return {"id": cid, "test_brier": float(stats.predicted_ensemble_error(MEMBERS)), "params": row.param_count,
            "latency_ms": (row.latency or {}).get("batch_1_ms"), "proposer": row.proposer, "cycle": row.cycle}


def nondominated(points: list[dict]) -> list[dict]:
    keys = ("test_brier", "params", "latency_ms")
    def dominated(p, q):
        return all(q[k] <= p[k] for k in keys) and any(q[k] < p[k] for k in keys)
    usable = [p for p in points if all(p[k] is not None for k in keys)]
    return [p for p in usable if not any(dominated(p, q) for q in usable if q is not p)]


def front_hv(points: list[dict], seed: dict) -> float:
    keys = ("test_brier", "params", "latency_ms")
    pts = [[p[k] / seed[k] for k in keys] for p in points if all(p[k] is not None for k in keys)]
    # as a fraction of the reference box, so 1.0 would be a point at the origin
    return hypervolume(np.array(pts).reshape(-1, 3), REFERENCE) / float(np.prod(REFERENCE)) if pts else 0.0


def one_run(workdir: Path, task: str, method: str, seed: int, evaluations: int, max_cycles: int,
            preset: str = "mutation") -> dict:
    task_file = workdir / "task.yaml"
    task_file.write_text(TASKS[task])
    config = RunConfig.load(None, task=str(task_file), cycles=max_cycles, seed=seed, noise_instances=4,
                            sandbox={"backend": "subprocess", "workers": 2}, ce_update={"enabled": False},
                            deploy={"members": MEMBERS, "export": True}, acceptance={"members": MEMBERS},
                            budget={"max_evaluations": evaluations}, proposers=PROPOSERS[preset][method],
                            **METHODS[method])
    start = time.perf_counter()
    loop = SearchLoop(run_dir=workdir / "run", config=config, progress=False)
    report = loop.run()          # the search, then the final incumbent and the seed as real M-ensembles
    wall = time.perf_counter() - start
    store, y_test = loop.store, loop.evaluator.data.y_test
    rows = store.candidates()
    seed_id = store.get_state("seed_id")
    seed_point = point(store, seed_id, y_test)
    evaluated = [point(store, r.id, y_test) for r in rows if r.status in ("accepted", "rejected", "seed")]
    if method == "population":
        returned = [point(store, cid, y_test) for cid in sorted({a["candidate_id"] for a in store.archive()})]
    else:
        returned = [point(store, store.get_state("incumbent"), y_test)]
    posthoc = nondominated(evaluated)
    return {"task": task, "method": method, "seed": seed, "wall_seconds": wall,
            "evaluations": sum(r.evaluations for r in rows if r.cycle > 0),
            "cycles": sum(c["status"] == "done" for c in store.cycles()),
            "accepted": sum(r.status == "accepted" for r in rows),
            # sandbox instances trained for the search (candidates' own two plus what the gate asked for)
            "instances": sum(len(store.load_instances(r.id).seeds) for r in rows if r.cycle > 0 and r.statistics),
            "failed": sum(r.status == "failed" for r in rows), "filtered": sum(r.status == "filtered" for r in rows),
            "proposal_failed": sum(r.status == "proposal_failed" for r in rows),
            "test_brier": report["final"]["brier"], "seed_test_brier": report["seed"]["brier"],
            "final_id": report["final_id"], "seed_point": seed_point,
            "returned": returned, "posthoc_front": posthoc,
            "hv_returned": front_hv(returned, seed_point), "hv_posthoc": front_hv(posthoc, seed_point),
            "allocations": store.allocations(), "timings": dict(loop.timings)}


def plot(runs: list[dict], task: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"hill_climber": "tab:orange", "population": "tab:blue"}
    for ax, (x, xlabel) in zip(axes, (("params", "parameters"), ("latency_ms", "batch-1 CPU latency (ms)"))):
        for r in runs:
            if r["task"] != task:
                continue
            c = colours[r["method"]]
            post = sorted(r["posthoc_front"], key=lambda p: p[x] or 0)
            ax.scatter([p[x] for p in post], [p["test_brier"] for p in post], s=14, facecolors="none", edgecolors=c,
                       alpha=0.5)
            ret = r["returned"]
            ax.scatter([p[x] for p in ret], [p["test_brier"] for p in ret], s=36, color=c,
                       marker="*" if r["method"] == "hill_climber" else "o",
                       label=f"{r['method']} (returned)" if r["seed"] == min(q["seed"] for q in runs) else None)
            sp = r["seed_point"]
            ax.scatter([sp[x]], [sp["test_brier"]], s=50, marker="x", color="black",
                       label="seed program" if r is runs[0] and ax is axes[0] else None)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"predicted {MEMBERS}-ensemble test Brier")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}: returned sets (filled) and post-hoc fronts of all evaluated programs (hollow), all seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--evaluations", type=int, default=24)
    parser.add_argument("--max-cycles", type=int, default=40)
    parser.add_argument("--proposers", choices=sorted(PROPOSERS), default="mutation",
                        help="mutation: evolution + random; llm: the default generator + evolution + random")
    parser.add_argument("--name", default=None, help="results name (default: search_depth, or search_depth_llm)")
    args = parser.parse_args()
    args.name = args.name or ("search_depth" if args.proposers == "mutation" else f"search_depth_{args.proposers}")
    out = RESULTS / f"{args.name}.json"
    previous = json.loads(out.read_text()).get("runs", []) if out.exists() else []
    runs = [r for r in previous if r.get("evaluations_budget") == args.evaluations and r.get("code") == CODE[r["method"]]]
    done = {(r["task"], r["method"], r["seed"]) for r in runs}
    loads = []
    for seed in args.seeds:                 # interleaved, so load drifts hit both methods alike
        for task in args.tasks:
            for method in args.methods:
                if (task, method, seed) in done:
                    continue
                workdir = Path(tempfile.mkdtemp(prefix="ensnas-depth-"))
                try:
                    r = one_run(workdir, task, method, seed, args.evaluations, args.max_cycles, args.proposers)
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                r["evaluations_budget"], r["code"] = args.evaluations, CODE[method]
                r["proposers"] = PROPOSERS[args.proposers][method]
                r["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
                loads.append(r["loadavg"])
                runs.append(r)
                print(f"  {task}/{method}/seed {seed}: test Brier {r['test_brier']:.4f} (seed {r['seed_test_brier']:.4f}),"
                      f" {r['accepted']} accepted/entered of {r['evaluations']}, HV returned {r['hv_returned']:.3f}"
                      f" post hoc {r['hv_posthoc']:.3f}, {r['wall_seconds']:.0f} s", flush=True)
                write_result(args.name, {"runs": runs})
    for r in runs:   # from the stored points, so a changed REFERENCE needs no rerun
        r["hv_returned"], r["hv_posthoc"] = front_hv(r["returned"], r["seed_point"]), front_hv(r["posthoc_front"], r["seed_point"])
    rows = []
    for task in args.tasks:
        for method in args.methods:
            rs = [r for r in runs if r["task"] == task and r["method"] == method]
            if not rs:
                continue
            f = lambda key: np.array([r[key] for r in rs], float)  # noqa: E731
            rows.append([task, method, len(rs), f"{f('test_brier').mean():.4f} ± {f('test_brier').std():.4f}",
                         f"{f('seed_test_brier').mean():.4f}", f"{f('hv_returned').mean():.3f} ± {f('hv_returned').std():.3f}",
                         f"{f('hv_posthoc').mean():.3f} ± {f('hv_posthoc').std():.3f}",
                         f"{np.mean([len(r['returned']) for r in rs]):.1f}", f"{f('accepted').mean():.1f}",
                         f"{f('evaluations').mean():.1f}", f"{np.mean([r.get('instances', 0) for r in rs]):.1f}",
                         f"{f('wall_seconds').mean():.0f}"])
        plot(runs, task, RESULTS / f"{args.name}_{task}.png")
    headers = ["task", "method", "seeds", "final test Brier (M=5)", "seed prog.", "HV returned", "HV post hoc",
               "front size", "accepted/entered", "evaluations", "instances", "wall s"]
    print(f"\nequal evaluations ({args.evaluations}); HV over (test Brier, params, latency) / seed's, reference "
          f"{REFERENCE}, as a fraction of the reference box")
    print_table(headers, rows)
    write_result(args.name, {"runs": runs, "table": {"headers": headers, "rows": rows}, "reference": REFERENCE,
                             "reference_note": "each axis divided by the seed program's value in the same run",
                             "command": " ".join(sys.argv), "host": platform.node(),
                             "loadavg_after_each_run": loads})


if __name__ == "__main__":
    main()
