"""The bandit over proposers and operators, in one real run where one proposer is useless.

The `llm` proposer talks to an OpenAI-compatible server on 127.0.0.1 (started here) whose every
answer is prose with no edit in it, so each of its proposals fails (proposal_failed, reward 0)
while random mutation, aging evolution and crossover keep entering the island archives now and
then. The population search's Thompson bandit splits each cycle's candidate budget across the
arms random, evolution, crossover, llm:mutate and llm:crossover; the table is the allocation per
cycle, as stored in the run (the `bandit` table) and shown by `ensnas status`.

    nice -n 10 python benchmarks/population_bandit.py [--cycles 14] [--candidates 4]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.config import RunConfig  # noqa: E402
from agent.loop import SearchLoop  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402

TASK = ("name: digits-fast\ndataset: digits\nval_fraction: 0.25\nbudget: {epochs: 2, batch_size: 64, lr: 0.003}\n"
        "seed_program: mlp.py\nmembers: 5\n")


class Useless(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "I would make the network better."},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 500, "completion_tokens": 8}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=14)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Useless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="ensnas-bandit-"))
    try:
        (work / "task.yaml").write_text(TASK)
        config = RunConfig.load(
            None, task=str(work / "task.yaml"), cycles=args.cycles, seed=args.seed, noise_instances=4,
            proposers=[{"name": "random", "candidates": 1}, {"name": "evolution", "candidates": 1},
                       {"name": "crossover", "candidates": 1},
                       {"name": "llm", "candidates": 1, "options": {"config": {"check_build": False, "repair_retries": 0}}}],
            generator={"backend": "openai", "base_url": f"http://127.0.0.1:{server.server_port}/v1", "model": "useless"},
            population={"enabled": True, "islands": 2, "candidates": args.candidates},
            sandbox={"backend": "subprocess", "workers": 2}, ce_update={"enabled": False},
            deploy={"members": 3, "export": False})
        start = time.perf_counter()
        loop = SearchLoop(run_dir=work / "run", config=config, progress=False)
        loop.run()
        wall = time.perf_counter() - start
        store = loop.store
        arms = list(dict.fromkeys(a["arm"] for a in store.allocations()))
        per_cycle: dict[int, dict[str, int]] = {}
        for a in store.allocations():
            per_cycle.setdefault(a["cycle"], {})[a["arm"]] = a["allocated"]
        outcome: dict[int, dict[str, list[int]]] = {}
        for r in store.candidates():
            if r.arm:
                slot = outcome.setdefault(r.cycle, {}).setdefault(r.arm, [0, 0])
                slot[0] += 1
                slot[1] += r.status == "accepted"
        rows = [[c] + [per_cycle[c].get(a, 0) for a in arms] + [
            ", ".join(f"{a} {n[1]}/{n[0]}" for a, n in sorted(outcome.get(c, {}).items()))] for c in sorted(per_cycle)]
        headers = ["cycle"] + arms + ["entered/proposed per arm"]
        print(f"allocation of {args.candidates} candidates per cycle (Thompson bandit; llm answers never hold an edit)")
        print_table(headers, rows)
        llm_total = sum(v for c in per_cycle.values() for a, v in c.items() if a.startswith("llm"))
        llm_last = sum(v for c in sorted(per_cycle)[-5:] for a, v in per_cycle[c].items() if a.startswith("llm"))
        summary = {"llm_allocated_total": llm_total, "llm_allocated_last_5_cycles": llm_last,
                   "slots_total": sum(sum(c.values()) for c in per_cycle.values()),
                   "llm_failures": sum(1 for r in store.candidates() if r.proposer == "llm" and r.status == "proposal_failed"),
                   "llm_proposals": sum(1 for r in store.candidates() if r.proposer == "llm")}
        print(summary)
        write_result("population_bandit", {"allocation_per_cycle": {str(c): v for c, v in per_cycle.items()},
                                           "table": {"headers": headers, "rows": rows}, "summary": summary,
                                           "wall_seconds": wall, "loadavg": Path("/proc/loadavg").read_text().split()[:3],
                                           "command": " ".join(sys.argv)})
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
