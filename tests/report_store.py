"""Stores for the report tests: rows written through RunStore's own API, and the hostile strings a
candidate or a model could write into them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agent.config import RunConfig
from agent.store import RunStore
from evaluator.acceptance import acceptance_test
from evaluator.statistics import compute_statistics

# What a candidate's code, a failure detail or an LLM answer could carry. Each active part, if it
# ever ran or became an element, marks the document: an attribute on <html> or an element.
MARK = "document.documentElement.setAttribute('data-pwned', '{}')"
PAYLOAD = (
    "</script><script>" + MARK.format("script") + "</script>"
    "--><!-- <script>" + MARK.format("comment") + "</script> -->"
    "</pre></code></textarea></title></style></details></summary>"
    '<img src=x onerror="' + MARK.format("img") + '">'
    '<svg onload="' + MARK.format("svg") + '"></svg>'
    '<iframe src="javascript:parent.' + MARK.format("iframe") + '"></iframe>'
    '<a id="pwned-link" href="javascript:' + MARK.format("link") + '">click</a>'
    '<pwned-marker></pwned-marker>'
    "\" onmouseover=\"" + MARK.format("attr") + "\" x=' onfocus='" + MARK.format("attr1") + "' "
    "<style>body{display:none}</style>"
    '<meta http-equiv="refresh" content="0;url=javascript:' + MARK.format("meta") + '">'
    '<base href="javascript:/">'
    "$\\frac{x}{0$ {{7*7}} ${7*7}"
)


def _probs(rng: np.random.Generator, labels: np.ndarray, skill: float, k: int = 2) -> np.ndarray:
    logits = rng.normal(size=(k, len(labels), 3)) + skill * np.eye(3)[labels]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def synthetic_store(run_dir: Path, *, cycles: int = 3, per_cycle: int = 4, seed: int = 0,
                    population: bool = False) -> RunStore:
    """A run written through the store API with real statistics and real acceptance decisions
    computed from random (not trained) predictions: fast, and every table filled as the loop fills it.
    `population`: also latency, islands, archive membership and the bandit's allocations."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=200)
    store = RunStore(run_dir, create=True)
    config = RunConfig.load(None, task="digits", cycles=cycles)
    store.set_meta("config", config.model_dump(mode="json"))
    store.set_meta("versions", {"python": "3.11", "numpy": np.__version__})

    def evaluate(cid: int, skill: float, k: int = 2) -> np.ndarray:
        probs = _probs(rng, labels, skill, k)
        latency = {"batch_1_ms": float(rng.uniform(0.1, 2)), "batch_256_ms": float(rng.uniform(2, 40))}
        store.record_evaluation(cid, ok=True, reason=None, detail="", statistics=compute_statistics(probs, labels).as_dict(),
                                param_count=int(rng.integers(5_000, 200_000)), seconds=float(rng.uniform(1, 5)),
                                val=probs, test=probs, latency=latency if population else None)
        if population:
            with store.transaction() as db:
                island = cid % 2
                db.execute("UPDATE candidates SET island = ?, arm = ? WHERE id = ?", (island, "evolution:mutate", cid))
                store.archive_enter(db, island=island, candidate_id=cid, cycle=cycle_now[0], origin="entered")
                if cid > 3 and cid % 3 == 0:
                    store.archive_leave(db, island=island, candidate_id=cid, cycle=cycle_now[0], reason=f"dominated by #{cid - 1}")
        return probs

    cycle_now = [0]

    with store.transaction() as db:
        seed_id = store.insert_candidate(db, cycle=0, proposer="seed", parent_id=None, source="def build_model(): ...\n",
                                         diff="", status="pending")
    incumbent_probs = evaluate(seed_id, 1.0, k=4)
    with store.transaction() as db:
        db.execute("UPDATE candidates SET status = 'seed' WHERE id = ?", (seed_id,))
        store.set_state("incumbent", seed_id, db)
        store.set_state("seed_id", seed_id, db)
    incumbent = seed_id
    for cycle in range(1, cycles + 1):
        cycle_now[0] = cycle
        if population:
            with store.transaction() as db:
                store.record_allocation(db, cycle=cycle, allocation={"random": 2, "evolution:mutate": per_cycle - 2},
                                        state={"random": {"pulls": 2.0 * cycle, "reward": 0.5}})
        with store.transaction() as db:
            db.execute("INSERT INTO cycles(cycle, status, started, incumbent_before) VALUES(?,?,?,?)",
                       (cycle, "evaluating", 1.7e9 + cycle, incumbent))
            ids = []
            for j in range(per_cycle):
                proposer = ("random", "evolution")[j % 2]
                source = f"def build_model():\n    width = {cycle * 10 + j}\n"
                diff = f"--- #{incumbent}\n+++ candidate\n@@ -1,2 +1,2 @@\n def build_model():\n-    width = 1\n+    width = {cycle * 10 + j}\n"
                status = "filtered" if j == 3 else "pending"
                ids.append((store.insert_candidate(db, cycle=cycle, proposer=proposer, parent_id=incumbent, source=source,
                                                   diff=diff, status=status, reason="duplicate" if j == 3 else None,
                                                   detail="estimated Jaccard 1.0" if j == 3 else None,
                                                   meta={"edits": [f"width → {j}"]}), status))
        for cid, status in ids:
            if status != "pending":
                continue
            if cid % 5 == 0:
                store.record_evaluation(cid, ok=False, reason="forward_error", detail="RuntimeError: shapes", statistics=None,
                                        param_count=None, seconds=1.0, val=None, test=None)
                continue
            probs = evaluate(cid, float(rng.uniform(0.5, 3.0)))
            decision = acceptance_test(incumbent_probs, probs, labels)
            with store.transaction() as db:
                store.set_decision(db, cid, accepted=decision.accept, decision=dict(decision.as_dict(), baseline=incumbent))
                if decision.accept:
                    store.set_state("incumbent", cid, db)
            if decision.accept:
                incumbent, incumbent_probs = cid, probs
        with store.transaction() as db:
            db.execute("UPDATE cycles SET status='done', finished=?, incumbent_after=?, diagnostic=? WHERE cycle=?",
                       (1.7e9 + cycle + 0.5, incumbent, json.dumps({"candidates": 3, "rho_s": 0.9, "snr": 5.0,
                                                                    "var_arch": 1e-3, "var_noise": 2e-4}), cycle))
    store.set_state("timings", {"proposal": 3.0, "sandbox": 10.0, "training": 30.0, "store": 0.1})
    return store


def add_hostile_rows(store: RunStore, payload: str = PAYLOAD) -> list[int]:
    """Rows whose every free-text field carries `payload`: a failed candidate, an LLM proposal that
    failed, a filtered one and an evaluated, decided one (with a copy of a real row's predictions)."""
    cycle = max([c["cycle"] for c in store.cycles()], default=0) or 1
    parent = store.get_state("incumbent")
    scored = next(r for r in store.candidates(order="recent") if r.statistics and r.status != "failed")
    val, test = store.load_predictions(scored.id)
    llm_meta = {"raw_outputs": [payload, "<<<<<<< SEARCH\n" + payload + "\n=======\n>>>>>>> REPLACE"],
                "prompt": [{"role": "user", "content": payload}], "generator": payload,
                "attempts": [{"attempt": 0, "failure": payload, "detail": payload, "tokens": 3, "seconds": 0.5}],
                payload: payload}
    diff = f"--- #{parent}\n+++ candidate\n@@ -1 +1 @@\n-{payload}\n+{payload}\n {payload}\n"
    with store.transaction() as db:
        ids = [store.insert_candidate(db, cycle=cycle, proposer=payload, parent_id=parent, source=payload, diff=diff,
                                      status="failed", reason=payload, detail=payload, meta=llm_meta),
               store.insert_candidate(db, cycle=cycle, proposer="llm", parent_id=parent, source=payload, diff=diff,
                                      status="proposal_failed", reason=payload, detail=payload, meta=llm_meta),
               store.insert_candidate(db, cycle=cycle, proposer="llm", parent_id=parent, source=payload, diff=diff,
                                      status="filtered", reason="duplicate", detail=payload, meta=llm_meta),
               store.insert_candidate(db, cycle=cycle, proposer="llm", parent_id=parent, source=payload, diff=diff,
                                      status="pending", meta=llm_meta)]
    stats = dict(scored.statistics, correlation=payload)
    store.record_evaluation(ids[3], ok=True, reason=None, detail=payload, statistics=stats,
                            param_count=scored.param_count, seconds=1.0, val=val, test=test)
    decision = dict(scored.decision or {}, reason=payload, baseline=parent, stage=payload, method=payload,
                    instances={"candidate": payload, "candidate_trained": [payload], "incumbent_trained": payload},
                    looks=[{"instances": payload, "gain": payload, "outcome": payload}])
    decision.setdefault("delta", 0.0)
    with store.transaction() as db:
        store.set_decision(db, ids[3], accepted=False, decision=decision)
        db.execute("UPDATE candidates SET arm = ?, island = 1 WHERE id = ?", (payload, ids[3]))
        store.archive_enter(db, island=0, candidate_id=ids[3], cycle=cycle, origin=payload)
        store.archive_leave(db, island=0, candidate_id=ids[3], cycle=cycle, reason=payload)
        store.archive_enter(db, island=1, candidate_id=ids[3], cycle=cycle, origin=payload)
        store.record_allocation(db, cycle=cycle, allocation={payload: 1}, state={payload: {"pulls": 1.0, "reward": 0.0}})
        db.execute("CREATE TABLE IF NOT EXISTS islands(island INTEGER, note TEXT)")
        db.execute("INSERT INTO islands VALUES(?, ?)", (1, payload))
        store.set_state("timings", dict(store.get_state("timings") or {}, **{payload: 1.0}), db)
        store.set_state("proposer:" + payload, {"note": payload}, db)
        store.set_state(payload, {payload: payload}, db)
    config = store.get_meta("config") or {}
    store.set_meta("config", dict(config, task=payload))
    return ids
