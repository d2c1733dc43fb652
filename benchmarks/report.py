"""Report generation time and size on a real run with ≥ 100 candidates (targets: < 2 s, < 5 MB).

Without --run it first runs a real search (digits with a 2-epoch proxy, the LLM proposer with
the bundled model beside random and evolution, no CE update, deploy) big enough to hold
`--min-candidates`, and keeps it in --keep. Then it renders the report `--repeats` times in this
process (matplotlib already imported after the first) and once through the CLI in a fresh
interpreter (everything imported from cold), and records the page's size.

    python benchmarks/report.py [--run RUN | --keep DIR] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from agent.report import open_store, write_report  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402

FAST_TASK = """name: digits-fast
dataset: digits
val_fraction: 0.25
budget: {epochs: 2, batch_size: 64, lr: 0.003}
seed_program: mlp.py
members: 5
"""


def make_run(run_dir: Path, cycles: int, sandbox: str) -> float:
    from agent.config import RunConfig
    from agent.loop import SearchLoop
    task = run_dir.parent / "digits-fast.yaml"
    task.write_text(FAST_TASK)
    config = RunConfig.load(None, task=str(task), cycles=cycles, noise_instances=4,
                            proposers=[{"name": "llm", "candidates": 1}, {"name": "random", "candidates": 6},
                                       {"name": "evolution", "candidates": 5}],
                            sandbox={"backend": sandbox, "workers": 2}, ce_update={"enabled": False},
                            deploy={"members": 5})
    start = time.perf_counter()
    SearchLoop(run_dir=run_dir, config=config, progress=False).run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="an existing run directory to render (default: make one)")
    parser.add_argument("--keep", help="where to make the run (default: a temporary directory)")
    parser.add_argument("--cycles", type=int, default=9)
    parser.add_argument("--sandbox", default="subprocess")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-candidates", type=int, default=100)
    args = parser.parse_args()
    search_seconds = None
    if args.run:
        run_dir = Path(args.run)
    else:
        base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ensnas-report-bench-"))
        base.mkdir(parents=True, exist_ok=True)
        run_dir = base / "run"
        search_seconds = make_run(run_dir, args.cycles, args.sandbox)
    store = open_store(run_dir)
    rows = store.candidates()
    if len(rows) < args.min_candidates:
        sys.exit(f"{run_dir} holds {len(rows)} candidates; the benchmark needs ≥ {args.min_candidates}")
    out = Path(tempfile.mkdtemp(prefix="ensnas-report-out-")) / "report.html"
    load_before = open("/proc/loadavg").read().split()[:3]
    in_process, in_process_cpu = [], []
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        write_report(store, out)
        in_process.append(time.perf_counter() - start)
        in_process_cpu.append(time.process_time() - cpu)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "agent.cli", "report", str(run_dir), "--out", str(out)], check=True,
                   cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True)
    cold_cli = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cold_cli_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    size = out.stat().st_size
    started = min((r.created for r in rows if r.created), default=None)
    finished = max((c["finished"] for c in store.cycles() if c["finished"]), default=None)
    load_after = open("/proc/loadavg").read().split()[:3]
    result = {
        "command": " ".join(["python", "benchmarks/report.py", *sys.argv[1:]]),
        "run": {"candidates": len(rows), "status": dict(Counter(r.status for r in rows)),
                "config": {k: (store.get_meta("config") or {}).get(k) for k in ("task", "cycles", "proposers",
                                                                               "sandbox", "ce_update")},
                "cycles": len(list(store.cycles())), "proposers": dict(Counter(r.proposer for r in rows)),
                "search_seconds": search_seconds,
                "seed_to_last_cycle_seconds": finished - started if started and finished else None},
        # wall seconds depend on what else the machine runs (see loadavg); CPU seconds are the render's own
        "render_seconds_in_process": in_process,
        "render_cpu_seconds_in_process": in_process_cpu,
        "render_seconds_first": in_process[0],
        "render_cpu_seconds_first": in_process_cpu[0],
        "render_seconds_median_warm": statistics.median(in_process[1:]) if len(in_process) > 1 else None,
        "render_cpu_seconds_median_warm": statistics.median(in_process_cpu[1:]) if len(in_process) > 1 else None,
        "cli_seconds_cold": cold_cli,
        "cli_cpu_seconds_cold": cold_cli_cpu,
        "html_bytes": size,
        "targets": {"seconds": 2.0, "bytes": 5_000_000},
        "meets_targets_cpu": max(in_process_cpu) < 2.0 and size < 5_000_000,
        "meets_targets_wall": max(in_process) < 2.0 and size < 5_000_000,
        "loadavg_before": load_before, "loadavg_after": load_after,
    }
    warm, warm_cpu = result["render_seconds_median_warm"], result["render_cpu_seconds_median_warm"]
    print_table(["candidates", "first render s (CPU)", "median warm s (CPU)", "cold CLI s (CPU)", "HTML MB",
                 "load avg"],
                [[len(rows), f"{in_process[0]:.2f} ({in_process_cpu[0]:.2f})",
                  f"{warm or float('nan'):.2f} ({warm_cpu or float('nan'):.2f})",
                  f"{cold_cli:.2f} ({cold_cli_cpu:.2f})", f"{size / 1e6:.2f}", " ".join(load_before)]])
    print(f"wrote {write_result('report', result)}")


if __name__ == "__main__":
    main()
