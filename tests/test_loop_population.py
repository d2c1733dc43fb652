"""The population search through the real loop: archives, bandit allocations, budgets, the
overlapped pipeline (same decisions as without the overlap), legacy runs and a grown run's report."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.cli import main
from agent.config import RunConfig
from agent.loop import SearchLoop
from agent.population.engine import member_of
from agent.store import RunStore
from tests.test_loop import FAST_TASK

pytestmark = pytest.mark.slow


@pytest.fixture()
def fast_task(tmp_path) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(FAST_TASK)
    return str(path)


@pytest.fixture(autouse=True)
def _cache(cache_dir, monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))


def config(task: str, **over) -> RunConfig:
    base = dict(task=task, cycles=2, noise_instances=4, deploy={"members": 3, "export": False},
                proposers=[{"name": "random", "candidates": 2}, {"name": "evolution", "candidates": 1},
                           {"name": "crossover", "candidates": 1}],
                sandbox={"backend": "subprocess", "workers": 2},
                population={"enabled": True, "islands": 2, "migrate_every": 2, "objectives": ["error", "params"]})
    return RunConfig.load(None, **{**base, **over})


def signature(run_dir) -> tuple:
    store = RunStore(run_dir)
    rows = [(r.cycle, r.proposer, r.arm, r.island, r.parent_id, r.source, r.status) for r in store.candidates()]
    return rows, store.archive_history(), store.allocations()


def test_population_search_end_to_end(tmp_path, fast_task, capsys):
    run_dir = tmp_path / "run"
    cfg = config(fast_task, population={"enabled": True, "islands": 2, "migrate_every": 2})  # latency on
    SearchLoop(run_dir=run_dir, config=cfg, progress=False).run()
    store = RunStore(run_dir)
    rows = store.candidates()
    evaluated = [r for r in rows if r.status in ("accepted", "rejected")]
    assert evaluated and all(r.island in (0, 1) and r.arm and r.latency["batch_1_ms"] > 0 for r in evaluated)
    assert all(r.decision["mode"] == "pareto" and "error_relations" in r.decision for r in evaluated)
    for r in evaluated:   # accepted means it entered its island's archive at its cycle
        entered = [a for a in store.archive_history() if a["candidate_id"] == r.id and a["origin"] == "entered"]
        assert bool(entered) == (r.status == "accepted")
    incumbent = store.get_state("incumbent")
    # the incumbent: the error-best of the seed and the candidates that passed the gate on entry
    # (on a front now or not: a proven program stays deployable after a cheaper tie drops it)
    seed_id = store.get_state("seed_id")
    proven = {seed_id} | {r.id for r in evaluated if r.status == "accepted" and r.decision["gate_accept"]}
    members = [member_of(store.candidate(i), 5) for i in proven]
    assert incumbent == min(members, key=lambda m: (m.error, m.id)).id
    for c in (1, 2):
        assert sum(a["allocated"] for a in store.allocations() if a["cycle"] == c) == 4
    # crossover sits out while the seed is the only program
    assert [a["allocated"] for a in store.allocations() if a["cycle"] == 1 and a["arm"] == "crossover"] in ([], [0])
    for argv in (["status", str(run_dir)], ["lineage", str(run_dir), "--all"]):
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "population: island 0:" in out and "allocation random" in out and "spent: wall" in out
    assert "entered island" in out and "◆ in an island archive now" in out   # lineage: the tree of descent


def test_overlapped_pipeline_decides_exactly_as_the_lagged_one(tmp_path, fast_task):
    for mode in ("lagged", "overlapped"):
        SearchLoop(run_dir=tmp_path / mode, config=config(fast_task, cycles=3, pipeline=mode), progress=False).run()
    assert signature(tmp_path / "lagged") == signature(tmp_path / "overlapped")
    assert len(signature(tmp_path / "lagged")[0]) == 1 + 3 * 4


def test_evaluation_budget_stops_exactly_and_resumes_with_a_larger_one(tmp_path, fast_task, capsys):
    run_dir = tmp_path / "run"
    SearchLoop(run_dir=run_dir, config=config(fast_task, cycles=10, budget={"max_evaluations": 5}),
               progress=False).run()
    store = RunStore(run_dir)
    assert sum(r.evaluations for r in store.candidates() if r.cycle > 0) == 5
    stopped = store.get_state("stopped")
    assert stopped and "evaluation budget spent" in stopped["reason"]
    assert main(["status", str(run_dir)]) == 0
    assert "evaluations 5 / 5" in capsys.readouterr().out
    assert main(["resume", str(run_dir), "--max-evaluations", "7", "--quiet"]) == 0
    store = RunStore(run_dir)
    assert sum(r.evaluations for r in store.candidates() if r.cycle > 0) == 7
    assert all(r.evaluations <= 1 for r in store.candidates())


def test_wall_budget_stops_at_a_cycle_boundary_and_resumes(tmp_path, fast_task):
    run_dir = tmp_path / "run"
    SearchLoop(run_dir=run_dir, config=config(fast_task, cycles=3, budget={"max_wall_s": 0.5}), progress=False).run()
    store = RunStore(run_dir)
    done = [c["cycle"] for c in store.cycles() if c["status"] == "done"]
    assert len(done) < 3 and all(c["status"] == "done" for c in store.cycles())  # stopped between cycles
    assert "wall-time budget spent" in store.get_state("stopped")["reason"]
    assert store.get_state("spent_wall_s") > 0.5
    assert main(["resume", str(run_dir), "--max-wall", "1h", "--quiet"]) == 0
    store = RunStore(run_dir)
    assert [c["status"] for c in store.cycles()] == ["done"] * 3 and store.get_state("stopped") is None


class _EditServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint on 127.0.0.1 answering every request with one valid edit
    and a usage record of 100 prompt + 20 completion tokens."""
    answer = "<<<<<<< SEARCH\nHIDDEN = 128\n=======\nHIDDEN = 96\n>>>>>>> REPLACE\n"

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": self.answer},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 100, "completion_tokens": 20}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("pipeline", ["off", "overlapped"])
def test_token_budget_counts_prompt_and_completion_and_stops_before_the_next_proposals(tmp_path, fast_task, pipeline):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EditServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = config(fast_task, cycles=5, pipeline=pipeline, budget={"max_tokens": 300},
                     proposers=[{"name": "llm", "candidates": 2, "options": {"config": {"check_build": False}}}],
                     generator={"backend": "openai", "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                                "model": "edit"},
                     population={"enabled": False}, ce_update={"enabled": False})
        SearchLoop(run_dir=tmp_path / "run", config=cfg, progress=False).run()
    finally:
        server.shutdown()
    store = RunStore(tmp_path / "run")
    llm_rows = [r for r in store.candidates() if r.proposer == "llm"]
    # the server repeats one edit, so a proposal re-draws the duplicate: each of its k calls costs
    # 100 prompt + 20 completion tokens, and the proposal's record carries all k
    calls = [r.meta["prompt_tokens"] // 100 for r in llm_rows]
    assert all(k >= 1 and r.meta["tokens"] == 20 * k and r.meta["prompt_tokens"] == 100 * k
               for r, k in zip(llm_rows, calls))
    assert calls[0] == 1 and max(calls) > 1            # the first edit is new; a repeat was re-drawn
    per_cycle: dict[int, int] = {}
    for r, k in zip(llm_rows, calls):
        per_cycle[r.cycle] = per_cycle.get(r.cycle, 0) + 120 * k
    done = [c["cycle"] for c in store.cycles() if c["status"] == "done"]
    spent = [sum(per_cycle[c] for c in done[:i]) for i in range(len(done) + 1)]
    # every cycle started below the budget, and the run stopped at the first boundary at or above it
    assert done == sorted(per_cycle) and all(x < 300 for x in spent[:-1]) and spent[-1] >= 300
    assert len(llm_rows) == 2 * len(done)
    assert f"token budget spent ({spent[-1]} of 300" in store.get_state("stopped")["reason"]


def test_a_run_saved_before_the_population_keeps_the_hill_climber_on_resume(tmp_path, fast_task):
    run_dir = tmp_path / "run"
    cfg = config(fast_task, cycles=1, population={"enabled": False}, pipeline="off")
    SearchLoop(run_dir=run_dir, config=cfg, progress=False).run()
    store = RunStore(run_dir)
    saved = store.get_meta("config")
    for key in ("population", "pipeline", "budget"):
        saved.pop(key)
    saved["cycles"] = 2
    store.set_meta("config", saved)
    store.close()
    loop = SearchLoop(run_dir=run_dir, resume=True, progress=False)
    assert loop.population is None and loop.lag == 1
    loop.run()
    rows = RunStore(run_dir).candidates(cycle=2)
    assert rows and all(r.island is None and (r.decision is None or "mode" not in r.decision) for r in rows)


def test_a_grown_run_deploys_its_final_program_again(tmp_path, fast_task):
    """A run extended with resume --cycles used to keep the report of its first end (stale final)."""
    run_dir = tmp_path / "run"
    cfg = config(fast_task, cycles=1, deploy={"members": 2, "export": True})
    first = SearchLoop(run_dir=run_dir, config=cfg, progress=False).run()
    assert first["after_cycle"] == 1
    assert main(["resume", str(run_dir), "--cycles", "2", "--quiet"]) == 0
    report = RunStore(run_dir).get_state("final_report")
    assert report["after_cycle"] == 2 and report["final_id"] == RunStore(run_dir).get_state("incumbent")
