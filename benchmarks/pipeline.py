"""The overlapped pipeline: how busy the sandbox is, and wall time per cycle, before vs after.

Three runs of the same configuration and seed (default: `ensnas run`'s proposers, the LLM on, with
the CE update off so only the pipeline differs):
- off: today's loop; each cycle proposes after the previous one decided, then evaluates;
- lagged: proposals for cycle n see the decisions up to n-2, written one after the other;
- overlapped: the same proposals, but cycle n+1's are written while cycle n trains.
lagged and overlapped must take identical decisions (the check below); off differs from them only
by the information its proposals see one cycle earlier.

Sandbox-busy fraction: share of the window [first cycle starts, last cycle ends] with at least
one evaluation running (the union of the stored evaluation intervals, agent/utilization.py);
occupancy: mean running evaluations per worker slot. Per cycle: the window from the previous
cycle's end to this one's.

    nice -n 10 python benchmarks/pipeline.py [--task digits] [--cycles 4] [--proposers llm:2 evolution:2]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config import RunConfig  # noqa: E402
from agent.loop import SearchLoop  # noqa: E402
from agent.store import RunStore  # noqa: E402
from agent.utilization import evaluation_intervals, sandbox_utilization  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402


def signature(store: RunStore) -> list:
    return [(r.cycle, r.proposer, r.parent_id, r.source, r.status) for r in store.candidates()]


def measure(run_dir: Path, workers: int) -> dict:
    store = RunStore(run_dir, read_only=True)
    cycles = [c for c in store.cycles() if c["status"] == "done"]
    intervals = evaluation_intervals([r for r in store.candidates() if r.cycle > 0])
    start, end = min(c["started"] for c in cycles), max(c["finished"] for c in cycles)
    per_cycle, previous = [], start
    for c in sorted(cycles, key=lambda c: c["finished"]):
        u = sandbox_utilization(intervals, previous, c["finished"], workers)
        per_cycle.append({"cycle": c["cycle"], "wall_s": u["wall_s"], "busy_fraction": u["busy_fraction"]})
        previous = c["finished"]
    total = sandbox_utilization(intervals, start, end, workers)
    rows = store.candidates()
    out = {"total": total, "per_cycle": per_cycle, "signature": signature(store),
           "tokens": sum(int(r.meta.get("tokens") or 0) + int(r.meta.get("prompt_tokens") or 0) for r in rows),
           "proposal_seconds": (store.get_state("timings") or {}).get("proposal", 0.0),
           "evaluations": sum(r.evaluations for r in rows if r.cycle > 0),
           "statuses": {s: sum(r.status == s for r in rows) for s in sorted({r.status for r in rows})}}
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="digits")
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proposers", nargs="+", default=["llm:2", "evolution:2"])
    parser.add_argument("--modes", nargs="+", default=["off", "lagged", "overlapped"])
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--population", action="store_true", help="the population search (default: hill climber)")
    parser.add_argument("--name", default="pipeline")
    args = parser.parse_args()
    proposers = [{"name": p.split(":")[0], "candidates": int(p.split(":")[1])} for p in args.proposers]
    results = {}
    for mode in args.modes:
        work = Path(tempfile.mkdtemp(prefix=f"ensnas-pipe-{mode}-"))
        try:
            config = RunConfig.load(None, task=args.task, cycles=args.cycles, seed=args.seed, proposers=proposers,
                                    pipeline=mode, ce_update={"enabled": False}, deploy={"export": False},
                                    sandbox={"backend": args.sandbox}, population={"enabled": args.population})
            start = time.perf_counter()
            SearchLoop(run_dir=work / "run", config=config, progress=False).run()
            results[mode] = measure(work / "run", config.sandbox.workers)
            results[mode]["wall_s"] = time.perf_counter() - start
            results[mode]["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        r = results[mode]
        print(f"  {mode}: busy {r['total']['busy_fraction']:.0%}, cycles {r['total']['wall_s']:.0f} s, "
              f"{r['evaluations']} evaluations, {r['tokens']} tokens", flush=True)
    rows = []
    for mode, r in results.items():
        per = r["per_cycle"]
        rows.append([mode, f"{r['total']['busy_fraction']:.1%}", f"{r['total']['occupancy']:.1%}",
                     f"{r['total']['wall_s']:.0f}", " ".join(f"{c['wall_s']:.0f}" for c in per),
                     " ".join(f"{c['busy_fraction']:.0%}" for c in per), r["evaluations"], r["tokens"],
                     " ".join(r["loadavg"])])
    headers = ["pipeline", "sandbox busy", "occupancy", "cycles wall s", "wall per cycle s", "busy per cycle",
               "evaluations", "tokens", "loadavg after"]
    print_table(headers, rows)
    same = None
    if "lagged" in results and "overlapped" in results:
        same = results["lagged"]["signature"] == results["overlapped"]["signature"]
        print(f"lagged and overlapped took identical decisions: {same}")
    for r in results.values():
        r.pop("signature")
    write_result(args.name, {"config": vars(args), "results": results, "identical_decisions": same,
                             "table": {"headers": headers, "rows": rows}, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
