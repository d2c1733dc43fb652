"""Candidates per hour of the default search on this machine, and where the time goes.

Runs the bundled defaults (LLM proposer with the bundled model, digits, CE update on) for a few
cycles and splits the wall time into generation (proposal), sandbox overhead, training inside
the sandbox, the CE update, the store, and the rest (seed evaluation, deploy, start-up).

    python benchmarks/throughput.py [--cycles 4] [--sandbox auto] [--proposer llm]
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
from benchmarks._common import print_table, write_result  # noqa: E402


def cycle_rates(store) -> list[dict]:
    """Per cycle and proposer: proposals, valid (evaluated without failure) and elite (accepted, or
    point estimate better than the incumbent) rates, and which adapter version generated them —
    the CE update as observed (docs/theory.md T6.2–T6.3), not assumed."""
    adapters = store.adapters()
    out = []
    for c in store.cycles():
        rows = [r for r in store.candidates(cycle=c["cycle"])]
        for proposer in sorted({r.proposer for r in rows}):
            mine = [r for r in rows if r.proposer == proposer]
            valid = sum(r.statistics is not None for r in mine)
            elite = sum(r.status == "accepted" or (r.decision or {}).get("predicted_improvement", 0) > 0 for r in mine)
            version = max([a["version"] for a in adapters if a["cycle"] < c["cycle"]], default=0)
            out.append({"cycle": c["cycle"], "proposer": proposer, "adapter_version": version, "proposals": len(mine),
                        "valid_rate": valid / len(mine), "elite_rate": elite / len(mine)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--proposer", action="append", help="default: the run defaults (llm + evolution)")
    parser.add_argument("--ce-every", type=int, default=2, help="CE update every n cycles")
    parser.add_argument("--ce-steps", type=int, default=30)
    parser.add_argument("--llm-options", default="{}", help="JSON options for the llm proposer")
    parser.add_argument("--name", default="throughput")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ensnas-throughput-"))
    import json
    proposers = [{"name": p, "candidates": args.candidates,
                  "options": json.loads(args.llm_options) if p == "llm" else {}}
                 for p in (args.proposer or ["llm", "evolution"])]
    config = RunConfig.load(None, cycles=args.cycles, proposers=proposers, sandbox={"backend": args.sandbox},
                            ce_update={"every": args.ce_every, "max_steps": args.ce_steps})
    start = time.perf_counter()
    try:
        loop = SearchLoop(run_dir=workdir / "run", config=config, progress=False)
        report = loop.run()
        wall = time.perf_counter() - start
        rows = loop.store.candidates()
        timings = dict(loop.timings)
        backend = loop.store.get_state("sandbox_backend")
        adapters = loop.store.adapters()
        per_cycle = cycle_rates(loop.store)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    proposals = sum(r.proposer != "seed" for r in rows)
    evaluated = sum(r.evaluations for r in rows if r.proposer != "seed")
    timings["other (seed, deploy, start-up)"] = max(0.0, wall - sum(timings.values()))
    table = [[k, v, v / wall] for k, v in sorted(timings.items(), key=lambda kv: -kv[1])]
    print(f"default search, {args.cycles} cycles × {args.candidates} candidates from {[p['name'] for p in proposers]}, "
          f"sandbox {backend}: "
          f"{wall:.0f} s wall, {proposals} proposals, {evaluated} evaluations, {len(adapters)} adapter(s)")
    print(f"candidates per hour: {3600 * proposals / wall:.1f} proposed, {3600 * evaluated / wall:.1f} evaluated")
    print_table(["where", "seconds", "share (sandbox/training summed over parallel workers)"], table)
    print("\nper cycle (CE update as observed):")
    print_table(["cycle", "proposer", "adapter", "proposals", "valid rate", "elite rate"],
                [[r["cycle"], r["proposer"], f"v{r['adapter_version']}", r["proposals"], r["valid_rate"], r["elite_rate"]]
                 for r in per_cycle])
    write_result(args.name, {"cycles": args.cycles, "candidates": args.candidates, "proposers": proposers,
                             "sandbox": backend, "wall_seconds": wall, "proposals": proposals, "evaluations": evaluated,
                             "proposed_per_hour": 3600 * proposals / wall, "evaluated_per_hour": 3600 * evaluated / wall,
                             "timings": timings, "adapters": adapters, "per_cycle": per_cycle,
                             "final": report.get("final"), "seed": report.get("seed")})


if __name__ == "__main__":
    main()
