"""docs/theory.md T6.2–T6.3 observed: the CE update's effect on the generator, and what it costs.

One search with the default generator (llm + evolution, digits, the run's defaults otherwise) for
C cycles with the CE update every k cycles, so that at least two adapters serve later cycles
through the llama.cpp server (PEFT -> GGUF LoRA). Per adapter version that wrote proposals (the
version is read from each proposal's own record, not inferred from the cycle): llm proposals,
valid (an edit that applied and built), distinct valid programs, elite rate (accepted, or a point
estimate better than the incumbent), tokens/s of generation. Per CE update: examples, steps,
seconds per example, where the base came from (de-quantised from the GGUF, or the cached
safetensors copy: agent.ce_update.load_base) and how long that took, and the worker's peak memory.

    python benchmarks/ce_update.py [--cycles 7] [--every 2] [--model qwen2.5-coder-1.5b]
    python benchmarks/ce_update.py --cycles 6 --every 2 --llm 3 --evolution 0   # the llm alone

With the overlapped pipeline, cycle n+1's proposals are written while cycle n trains, so an adapter
trained after cycle n first writes in cycle n+2; with evolution beside it the bandit may also give
the llm no slot in that cycle, which is why --evolution 0 exists.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config import RunConfig  # noqa: E402
from agent.loop import SearchLoop  # noqa: E402
from agent.proposers.llm import program_key  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402


def elite(row) -> bool:
    return row.status == "accepted" or (row.decision or {}).get("predicted_improvement", 0) > 0


def per_version(rows) -> list[dict]:
    """The llm's proposals grouped by the adapter version that wrote them (0: the base model)."""
    out = []
    mine = [r for r in rows if r.proposer == "llm"]
    for version in sorted({_version(r) for r in mine}):
        group = [r for r in mine if _version(r) == version]
        valid = [r for r in group if r.status != "proposal_failed"]
        tokens = sum(a.get("tokens") or 0 for r in group for a in (r.meta or {}).get("attempts", []))
        seconds = sum(a.get("seconds") or 0.0 for r in group for a in (r.meta or {}).get("attempts", []))
        out.append({"adapter_version": version, "cycles": sorted({r.cycle for r in group}), "proposals": len(group),
                    "valid": len(valid), "valid_rate": len(valid) / len(group),
                    "distinct_valid": len({program_key(r.source or "") for r in valid}),
                    "evaluated": sum(r.statistics is not None for r in valid),
                    "elite": sum(elite(r) for r in group), "elite_rate": sum(elite(r) for r in group) / len(group),
                    "tokens": tokens, "generation_seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9),
                    "served_by": sorted({((r.meta or {}).get("generator") or {}).get("served_by") or "?" for r in group}),
                    "failures": _counts(r.reason for r in group if r.status == "proposal_failed")})
    return out


def per_cycle(rows) -> list[dict]:
    out = []
    for cycle in sorted({r.cycle for r in rows if r.proposer == "llm"}):
        group = [r for r in rows if r.proposer == "llm" and r.cycle == cycle]
        valid = [r for r in group if r.status != "proposal_failed"]
        out.append({"cycle": cycle, "adapter_versions": sorted({_version(r) for r in group}), "proposals": len(group),
                    "valid": len(valid), "distinct_valid": len({program_key(r.source or "") for r in valid}),
                    "elite": sum(elite(r) for r in group)})
    return out


def _version(row) -> int:
    gen = (row.meta or {}).get("generator") or {}
    return int(gen.get("adapter_version") or 0) if gen.get("adapter") else 0


def _counts(items) -> dict:
    out: dict = {}
    for item in items:
        out[item or "unknown"] = out.get(item or "unknown", 0) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=7)
    ap.add_argument("--every", type=int, default=2, help="CE update every n cycles")
    ap.add_argument("--llm", type=int, default=3, help="llm candidates per cycle")
    ap.add_argument("--evolution", type=int, default=2, help="evolution candidates per cycle (elites for the CE); 0: the llm alone, "
                    "so the bandit cannot starve it of the cycles where a new adapter serves")
    ap.add_argument("--model", default=None, help="catalogue name or .gguf (default: the catalogue's default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sandbox", default="subprocess")
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="ce_update")
    args = ap.parse_args()
    generator = {"backend": "llama_cpp", "threads": args.threads, **({"model": args.model} if args.model else {})}
    config = RunConfig.load(None, cycles=args.cycles, seed=args.seed, generator=generator,
                            proposers=[{"name": "llm", "candidates": args.llm}]
                            + ([{"name": "evolution", "candidates": args.evolution}] if args.evolution > 0 else []),
                            sandbox={"backend": args.sandbox}, ce_update={"every": args.every, "max_steps": args.max_steps})
    workdir = Path(tempfile.mkdtemp(prefix="ensnas-ce-"))
    load_before, start = os.getloadavg(), time.perf_counter()
    try:
        loop = SearchLoop(run_dir=workdir / "run", config=config, progress=False)
        report = loop.run()
        wall = time.perf_counter() - start
        rows = loop.store.candidates()
        adapters = loop.store.adapters()
        timings = dict(loop.timings)
        model = loop.config.generator.get("model")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    versions, cycles = per_version(rows), per_cycle(rows)
    updates = [{"version": a["version"], "after_cycle": a["cycle"], "examples": a["examples"],
                **{k: a["metrics"].get(k) for k in ("steps", "epochs", "seconds", "seconds_per_example", "load_source",
                                                    "load_seconds", "save_seconds", "peak_rss_mb", "dtype", "params",
                                                    "train_loss_first", "train_loss_last", "gguf_adapter")}}
               for a in adapters]
    print(f"{model}: {args.cycles} cycles, CE every {args.every}, {len(adapters)} adapter(s), {wall:.0f} s "
          f"(load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f})")
    print_table(["adapter", "cycles", "llm proposals", "valid rate", "distinct valid", "elite rate", "tokens/s",
                 "failures"],
                [[f"v{v['adapter_version']}", v["cycles"], v["proposals"], f"{v['valid_rate']:.2f}", v["distinct_valid"],
                  f"{v['elite_rate']:.2f}", f"{v['tokens_per_s']:.1f}", v["failures"]] for v in versions])
    print_table(["CE update", "after cycle", "examples", "steps", "s/example", "base from", "load s", "save s",
                 "peak MB"],
                [[f"v{u['version']}", u["after_cycle"], u["examples"], u["steps"], f"{u['seconds_per_example']:.1f}",
                  u["load_source"], f"{u['load_seconds']:.0f}" if u["load_seconds"] is not None else "-",
                  f"{u['save_seconds']:.0f}" if u["save_seconds"] else "-", f"{u['peak_rss_mb']:.0f}"] for u in updates])
    write_result(args.name, {"model": model, "cycles": args.cycles, "every": args.every, "llm_per_cycle": args.llm,
                             "evolution_per_cycle": args.evolution, "sandbox": args.sandbox, "threads": args.threads,
                             "wall_seconds": wall, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                             "timings": timings, "per_adapter_version": versions, "per_cycle": cycles,
                             "updates": updates, "final": report.get("final"), "seed": report.get("seed")})


if __name__ == "__main__":
    main()
