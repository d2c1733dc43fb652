"""Ray vs the local executor: the same search on this machine, evaluations per hour and the
per-evaluation overhead Ray adds.

    nice -n 10 .venv/bin/python benchmarks/ray_scaling.py [--repeats 3] [--cycles 4] [--sandbox process]

The search: `ensnas run`'s loop on digits (its bundled proxy budget, a sub-second training: the
worst case for relative overhead), the no-LLM proposers (random 2 + evolution 2 per cycle), the
default population search on error and parameters (not the measured latency), a fixed seed, no
export. Every configuration makes the same candidates and the same decisions (checked), so they
do the same evaluations and their wall clocks compare directly:

    local-1   the local executor, 1 worker (warm starts)          the reference
    ray-1     Ray, 1 worker raylet of 1 CPU (tasks pinned to it)   -> overhead per evaluation
    ray-1c    the same without warm starts on the node             -> does the warm sandbox pay on Ray
    local-2   the local executor, 2 workers
    ray-2     Ray, 2 worker raylets of 1 CPU each

One cluster (a head with no CPUs and two worker raylets, loopback only, 80 MB object stores) is
started once; this process connects to it once, so a run's wall clock holds its own work only
(the inputs put, the tasks, scoring, the store). Configurations are interleaved within each
repeat, forwards then backwards (ABBA); medians are reported with the load average around each
run. Overhead per evaluation = median wall(ray-k) / median wall(local-k) - 1, and the median of
the per-repeat ratios (the pairs ran back to back). Then, closer to the mechanism: jobs one at a
time through each executor, the head's wall per job minus the sandbox run's own wall (measured
where it ran) = what the executor adds per evaluation. Also measured: the round trip of an
empty Ray task, the head's scoring time per evaluation, and the local executor against the bare
thread pool the loop used before it (same jobs, interleaved): "unchanged in speed".

What this machine can say: 2 cores, shared with other work, the head and both worker raylets on
them. So ray-2 vs local-2 compares two ways of keeping the same 2 cores busy; neither can exceed
them, and the worker raylets compete with the head's scoring and with each other. What scales
with machines is the per-evaluation overhead (measured here) and the head's serial work per
evaluation (scoring + the store write, measured here): with N worker machines, evaluations per
hour ≈ N × (one worker's rate) until the head's serial work per evaluation × that rate reaches
1 — that bound is printed; it is an extrapolation, not a measurement of many machines.
Writes benchmarks/results/ray_scaling.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import print_table, write_result  # noqa: E402


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def search_config(args, executor: str, workers: int, ray: dict | None = None):
    from agent.config import RunConfig
    return RunConfig.load(None, task=args.task, cycles=args.cycles, seed=args.seed, executor=executor,
                          proposers=[{"name": "random", "candidates": args.candidates},
                                     {"name": "evolution", "candidates": args.candidates}],
                          sandbox={"backend": args.sandbox, "workers": workers, "timeout_s": 300, "memory_mb": 2048},
                          ray=ray or {}, deploy={"export": False},
                          # latency is measured, so as an objective it could place candidates differently per run
                          population={"objectives": ["error", "params"]})


def run_search(config, run_dir: Path) -> dict:
    from agent.loop import SearchLoop
    from agent.store import RunStore
    before = loadavg()
    start = time.perf_counter()
    loop = SearchLoop(run_dir=run_dir, config=config, progress=False)
    loop.run()
    wall = time.perf_counter() - start
    store = RunStore(run_dir)
    rows = store.candidates()
    evaluated = [r for r in rows if r.evaluations]
    outcome = [(r.id, r.source, r.status, r.decision and r.decision.get("accept")) for r in rows]
    result = {"wall_s": wall, "evaluations": sum(r.evaluations for r in rows),
              "eval_seconds_sum": sum(r.eval_seconds or 0.0 for r in evaluated),
              "store_s": (store.get_state("timings") or {}).get("store", 0.0),
              "loadavg_before": before, "loadavg_after": loadavg(), "outcome": outcome}
    store.close()
    loop.store.close()
    return result


def ray_round_trip(ray, n: int = 50) -> list[float]:
    @ray.remote(num_cpus=1)
    def empty():
        return None
    ray.get(empty.remote())  # a worker process exists
    out = []
    for _ in range(n):
        start = time.perf_counter()
        ray.get(empty.remote())
        out.append(time.perf_counter() - start)
    return out


def head_scoring_seconds(args, source: str, n: int = 20) -> float:
    """Evaluator.score on the head (validation + statistics with the labels), per evaluation."""
    from evaluator.evaluate import Evaluator
    from evaluator.tasks import get_task
    from sandbox import Limits, make_sandbox
    evaluator = Evaluator(task=get_task(args.task), sandbox=make_sandbox(args.sandbox), limits=Limits(timeout_s=300))
    raw = evaluator.run(source, [0, 1])
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert evaluator.score(raw).ok
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dispatch_overhead(args, ray, sources: list[str], repeats: int, node_cache: Path) -> dict:
    """One job at a time through each executor: the head's wall per job (submit to scored result)
    minus the sandbox run's own wall (Evaluation.wall_seconds: measured where it ran) is what the
    executor adds per evaluation; the Ray worker is pinned to worker0, warm starts on in both."""
    from evaluator.evaluate import Evaluator
    from evaluator.tasks import get_task
    from sandbox import Limits, make_sandbox
    from sandbox.executor import EvalJob, LocalExecutor
    from sandbox.ray_executor import RayExecutor
    task = get_task(args.task)
    evaluator = Evaluator(task=task, sandbox=make_sandbox(args.sandbox), limits=Limits(timeout_s=300), warm_start=1)
    executors = {"local": LocalExecutor(evaluator=evaluator, workers=1),
                 "ray": RayExecutor(evaluator=evaluator, sandbox=args.sandbox, resources={"worker0": 0.001},
                                    node_cache_dir=node_cache)}
    rows: dict[str, dict[str, list[float]]] = {k: {"head_s": [], "run_s": []} for k in executors}
    try:
        for name, executor in executors.items():  # one job each first: data, worker processes, warm pools
            executor.prewarm()
            executor.map([EvalJob(source=sources[0], job_id=f"warm-up-{name}")]).__next__()
        for rep in range(repeats):
            order = list(executors) if rep % 2 == 0 else list(executors)[::-1]
            for name in order:
                for i, source in enumerate(sources):
                    job = EvalJob(source=source, job_id=f"{name}-{rep}-{i}")
                    start = time.perf_counter()
                    executors[name].submit(job)
                    (_, evaluation), = executors[name].wait()
                    rows[name]["head_s"].append(time.perf_counter() - start)
                    rows[name]["run_s"].append(evaluation.wall_seconds)
    finally:
        for executor in executors.values():
            executor.close()
        evaluator.close()
    out = {}
    for name, r in rows.items():
        added = [h - w for h, w in zip(r["head_s"], r["run_s"])]
        out[name] = {"n": len(added), "median_head_s": statistics.median(r["head_s"]),
                     "median_run_s": statistics.median(r["run_s"]), "median_added_s": statistics.median(added),
                     "mean_added_s": statistics.fmean(added), **r}
    local_eval = out["local"]["median_head_s"]
    out["ray_added_over_local_per_eval"] = (out["ray"]["median_added_s"] - out["local"]["median_added_s"]) / local_eval
    out["ray_head_wall_ratio"] = out["ray"]["median_head_s"] / local_eval
    return out


def pool_check(args, sources: list[str], repeats: int) -> dict:
    """LocalExecutor (2 workers) vs the bare ThreadPoolExecutor over Evaluator.evaluate that the loop
    used before the executor: the same jobs, interleaved, warm starts on in both."""
    from evaluator.evaluate import Evaluator
    from evaluator.tasks import get_task
    from sandbox import Limits, make_sandbox
    from sandbox.executor import EvalJob, LocalExecutor
    task = get_task(args.task)
    walls: dict[str, list[float]] = {"thread pool (before)": [], "LocalExecutor": []}
    loads = []
    for rep in range(repeats):
        order = list(walls) if rep % 2 == 0 else list(reversed(walls))
        for name in order:
            evaluator = Evaluator(task=task, sandbox=make_sandbox(args.sandbox), limits=Limits(timeout_s=300),
                                  warm_start=2)
            evaluator.prewarm()
            time.sleep(3)  # both start from warm sandboxes, as the loop does after proposing
            loads.append(loadavg())
            start = time.perf_counter()
            if name == "LocalExecutor":
                with LocalExecutor(evaluator=evaluator, workers=2) as executor:
                    done = list(executor.map(EvalJob(source=s) for s in sources))
            else:
                with ThreadPoolExecutor(max_workers=2) as pool:
                    futures = [pool.submit(evaluator.evaluate, s, instances=2) for s in sources]
                    done = [f.result() for f in as_completed(futures)]
            walls[name].append(time.perf_counter() - start)
            evaluator.close()
            assert len(done) == len(sources)
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {"jobs": len(sources), "repeats": repeats, "walls_s": walls, "median_s": med, "loadavg": loads,
            "ratio": med["LocalExecutor"] / med["thread pool (before)"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=2, help="per proposer per cycle (random, evolution)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", default="digits")
    parser.add_argument("--sandbox", default="process")
    parser.add_argument("--pool-repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from tests.ray_cluster import LocalRayCluster

    configs = {
        "local-1": ("local", 1, {}),
        "ray-1": ("ray", 1, {"resources": {"worker0": 0.001}}),
        "ray-1c": ("ray", 1, {"resources": {"worker0": 0.001}, "warm_start": False}),
        "local-2": ("local", 2, {}),
        "ray-2": ("ray", 2, {}),
    }
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    scratch = Path(tempfile.mkdtemp(prefix="ensnas-ray-bench-"))
    with LocalRayCluster(workers=2) as cluster:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        try:
            cluster.wait_for_nodes(ray, 3)
            round_trip = ray_round_trip(ray)
            names = list(configs)
            for rep in range(args.repeats):
                order = names if rep % 2 == 0 else names[::-1]  # ABBA: each pair runs back to back, both ways
                for name in order:
                    executor, workers, ray_options = configs[name]
                    if executor == "ray":
                        ray_options = {**ray_options, "node_cache_dir": str(scratch / "node-cache")}
                    result = run_search(search_config(args, executor, workers, ray_options),
                                        scratch / f"{name}-{rep}")
                    runs[name].append(result)
                    print(f"repeat {rep} {name:<8} {result['wall_s']:7.1f} s  {result['evaluations']} evaluations  "
                          f"load {result['loadavg_before'][0]:.2f}->{result['loadavg_after'][0]:.2f}", flush=True)
            reference = runs["local-1"][0]["outcome"]
            sources = [s for _, s, status, _ in reference if s and status in ("accepted", "rejected")][:8]
            dispatch = dispatch_overhead(args, ray, sources, args.pool_repeats, scratch / "node-cache")
        finally:
            ray.shutdown()

    same = all(r["outcome"] == reference for rs in runs.values() for r in rs)
    scoring_s = head_scoring_seconds(args, sources[0])
    pool = pool_check(args, sources, args.pool_repeats)

    rows, summary = [], {}
    for name, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        evals = rs[0]["evaluations"]
        base = "local-1" if name.endswith("1") or name == "ray-1c" else "local-2"
        paired = [r["wall_s"] / b["wall_s"] for r, b in zip(rs, runs[base])]
        summary[name] = {"median_wall_s": wall, "evaluations": evals, "evals_per_hour": 3600 * evals / wall,
                         "wall_per_eval_s": wall / evals, "vs": base, "ratio_of_medians": wall / statistics.median(
                             b["wall_s"] for b in runs[base]), "median_paired_ratio": statistics.median(paired),
                         "walls_s": [r["wall_s"] for r in rs]}
        rows.append([name, len(rs), evals, wall, 3600 * evals / wall, wall / evals, base,
                     f"{100 * (summary[name]['ratio_of_medians'] - 1):+.1f}%",
                     f"{100 * (summary[name]['median_paired_ratio'] - 1):+.1f}%"])
    print(f"\n{args.task}, {args.cycles} cycles x {2 * args.candidates} candidates + seed, sandbox {args.sandbox}, "
          f"{args.repeats} interleaved repeats; same candidates and decisions in every run: {same}")
    print_table(["config", "n", "evals", "median wall s", "evals/hour", "s/eval", "vs", "overhead (medians)",
                 "overhead (paired)"], rows)
    one = summary["ray-1"]["wall_per_eval_s"]
    head_serial = scoring_s + statistics.median(r["store_s"] / r["evaluations"] for r in runs["ray-1"])
    bound = 1 / head_serial if head_serial > 0 else float("inf")
    print(f"\nempty Ray task round trip: median {1000 * statistics.median(round_trip):.1f} ms (n={len(round_trip)}); "
          f"head scoring {1000 * scoring_s:.1f} ms and store write "
          f"{1000 * (head_serial - scoring_s):.1f} ms per evaluation")
    print(f"one worker: {one:.2f} s per evaluation -> the head's serial work saturates at ~{bound:.0f} evaluations/s, "
          f"i.e. ~{bound * one:.0f} one-CPU workers of this speed (an extrapolation)")
    d = dispatch
    print(f"one job at a time, n={d['local']['n']} each: local {d['local']['median_head_s']:.2f} s per evaluation "
          f"({1000 * d['local']['median_added_s']:.0f} ms outside the sandbox run), Ray {d['ray']['median_head_s']:.2f} s "
          f"({1000 * d['ray']['median_added_s']:.0f} ms outside it): Ray adds "
          f"{100 * d['ray_added_over_local_per_eval']:+.1f}% of a local evaluation; head wall ratio "
          f"{d['ray_head_wall_ratio']:.3f}")
    print(f"local executor vs the loop's old thread pool, {pool['jobs']} jobs, 2 workers, n={pool['repeats']}: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in pool["median_s"].items()) + f", ratio {pool['ratio']:.3f}")
    print(f"load average now: {loadavg()}")
    write_result("ray_scaling", {
        "task": args.task, "cycles": args.cycles, "candidates_per_proposer": args.candidates, "seed": args.seed,
        "sandbox": args.sandbox, "repeats": args.repeats, "same_decisions_everywhere": same,
        "cluster": {"head_cpus": 0, "worker_raylets": 2, "cpus_per_worker": 1, "object_store_bytes": 80_000_000},
        "summary": summary, "runs": {k: [{x: y for x, y in r.items() if x != "outcome"} for r in v]
                                     for k, v in runs.items()},
        "ray_empty_task_round_trip_s": round_trip, "head_scoring_s_per_eval": scoring_s,
        "head_serial_s_per_eval": head_serial, "head_bound_evals_per_s": bound, "pool_check": pool,
        "dispatch": dispatch,
        "cpu_count": os.cpu_count(), "loadavg_end": loadavg(),
        "caveat": "2 shared cores: ray-2 and local-2 share them with the head and other work; scaling to more "
                  "machines is extrapolated from the per-evaluation overhead and the head's serial work, not measured"})
    import shutil
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
