"""What a run is doing, honestly: running (pid, host, phase) / finished / stopped / killed.

The loop records its state and current phase in the store (state key ``run``); whether the
recorded holder is still alive comes from the run-directory lock (agent/run_lock.py), which the
kernel drops when its holder dies. So a run killed with -9 reads as *killed during <phase>*,
never as *running* forever.
"""
from __future__ import annotations

import time
from pathlib import Path

from agent.run_lock import Holder, live_holder

KEY = "run"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "?"


def _ago(t: float | None) -> str:
    if not t:
        return ""
    s = max(0.0, time.time() - t)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def mark_running(store, holder: Holder | None) -> None:
    h = holder.__dict__ if holder else {}
    store.set_state(KEY, {"state": "running", "pid": h.get("pid"), "host": h.get("host"),
                          "started": h.get("started") or time.time(), "command": h.get("command"),
                          "phase": "starting", "cycle": None, "since": time.time()})


def set_phase(store, phase: str, cycle: int | None = None) -> None:
    """What the run does now (seed, proposing, evaluating, deciding, ce_update, deploying)."""
    rec = store.get_state(KEY) or {"state": "running"}
    rec.update(phase=phase, cycle=cycle, since=time.time())
    store.set_state(KEY, rec)


def mark_done(store, state: str, why: str | None = None) -> None:
    """state: "finished" or "stopped" (why: interrupted, or the error)."""
    rec = store.get_state(KEY) or {}
    rec.update(state=state, ended=time.time(), why=why)
    store.set_state(KEY, rec)


def mark_closed(store) -> None:
    """A loop closed without run() (e.g. `ensnas export` deploying): finished if it is deployed."""
    rec = store.get_state(KEY) or {}
    if rec.get("state") == "running":
        mark_done(store, "finished" if store.get_state("final_report") is not None else "stopped",
                  None if store.get_state("final_report") is not None else "closed before the search finished")


PHASES = {"starting": "starting", "seed": "evaluating the seed program", "proposing": "proposing",
          "evaluating": "evaluating candidates in the sandbox", "deciding": "deciding",
          "ce_update": "fine-tuning the generator (CE update)", "deploying": "deploying the final ensemble"}


def _doing(rec: dict) -> str:
    what = PHASES.get(rec.get("phase") or "", rec.get("phase") or "?")
    return f"cycle {rec['cycle']}, {what}" if rec.get("cycle") else what


def describe(store, run_dir: Path) -> str:
    """One line for `ensnas status`."""
    rec = store.get_state(KEY)
    holder = live_holder(run_dir)
    if holder is not None:
        since = f" for {_ago(rec.get('since'))}" if rec and rec.get("since") else ""
        now = f"; now: {_doing(rec)}{since}" if rec else ""
        return f"state: running (pid {holder.pid} on {holder.host}, since {_when(holder.started)}){now}"
    if rec is None:   # a run from before states were recorded
        done = store.get_state("final_report") is not None
        return "state: finished" if done else "state: not running (stopped or killed)"
    if rec.get("state") == "running":
        return (f"state: killed: pid {rec.get('pid')} on {rec.get('host')} stopped without finishing, during "
                f"{_doing(rec)} (last seen {_when(rec.get('since'))}); resume with: ensnas resume {run_dir}")
    if rec.get("state") == "stopped":
        return (f"state: stopped at {_when(rec.get('ended'))} during {_doing(rec)}"
                f" ({rec.get('why') or 'interrupted'}); resume with: ensnas resume {run_dir}")
    return f"state: finished at {_when(rec.get('ended'))}"


def resume_point(store, cycles: int) -> str:
    """Where `ensnas resume` picks up, in words."""
    if store.get_state("incumbent") is None:
        return "resuming at the seed evaluation (nothing else was done)"
    statuses = {c["cycle"]: c["status"] for c in store.cycles()}
    for cycle in range(1, cycles + 1):
        status = statuses.get(cycle)
        if status == "done":
            continue
        if status in (None, "proposing"):
            return f"resuming at cycle {cycle} of {cycles}: proposing" + (
                " again (the interrupted proposals were not stored)" if status == "proposing" else "")
        rows = store.candidates(cycle=cycle)
        pending = sum(r.status == "pending" for r in rows)
        undecided = sum(r.status in ("pending", "evaluated") for r in rows)
        return (f"resuming at cycle {cycle} of {cycles}: {pending} candidate(s) to evaluate, "
                f"{undecided} to decide, {len(rows) - undecided} already done")
    if store.get_state("final_report") is None:
        return f"all {cycles} cycles are done: resuming at the final deploy"
    return f"all {cycles} cycles are done and the run is deployed; raise --cycles to search further"
