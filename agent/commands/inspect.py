"""Read-only views of a run: `status`, `show`, `diff`, `lineage`."""
from __future__ import annotations

import functools
import json
import sys
from collections import Counter
from pathlib import Path

from typing import TYPE_CHECKING

from agent.safe_text import safe_line, safe_text

if TYPE_CHECKING:  # heavy imports wait for a command to run (`ensnas --help` stays fast)
    from agent.store import RunStore


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="progress, counts, incumbent and per-cycle diagnostics of a run")
    p.add_argument("run_dir")
    p.set_defaults(handler=status)

    p = sub.add_parser("show", help="list a run's candidates, or one candidate in full")
    p.add_argument("run_dir")
    p.add_argument("candidate", nargs="?", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=show)

    p = sub.add_parser("diff", help="coloured unified diff of a candidate vs its parent (or vs OTHER)")
    p.add_argument("run_dir")
    p.add_argument("candidate", type=int)
    p.add_argument("other", nargs="?", type=int)
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(handler=diff)

    p = sub.add_parser("lineage", help="the accepted chain as a tree with the gain at each step")
    p.add_argument("run_dir")
    p.add_argument("--all", action="store_true", help="also show rejected and failed children")
    p.set_defaults(handler=lineage)


def _reading(handler):
    """Open the run read-only (nothing in it is created or changed; works while a run writes)."""
    @functools.wraps(handler)
    def run(args) -> int:
        from agent.store import RunStore
        with RunStore(Path(args.run_dir), read_only=True) as store:
            return handler(store, args)
    return run


def counts_line(store: RunStore) -> str:
    counts = Counter(r.status for r in store.candidates())
    config = store.get_meta("config") or {}
    done = sum(c["status"] == "done" for c in store.cycles())
    inc, seed = store.get_state("incumbent"), store.get_state("seed_id")
    parts = ", ".join(f"{v} {safe_line(k)}" for k, v in sorted(counts.items())) or "none yet"
    where = ("the seed program is not evaluated yet" if inc is None else
             f"incumbent #{inc} (the seed)" if inc == seed else f"incumbent #{inc} (seed #{seed})")
    return f"{done} of {config.get('cycles', '?')} cycles done; candidates: {parts}; {where}"


@_reading
def status(store: RunStore, args) -> int:
    from agent.run_state import PHASES, describe
    config = store.get_meta("config") or {}
    print(safe_line(f"run {args.run_dir}: task {config.get('task')}, {config.get('cycles')} cycles, "
                    f"proposers {', '.join(p['name'] for p in config.get('proposers', []))}"))
    state = describe(store, Path(args.run_dir))
    print(safe_line(state))
    sandbox = store.get_state("sandbox") or ({"backend": store.get_state("sandbox_backend"), "reason": ""}
                                             if store.get_state("sandbox_backend") else None)
    if sandbox:
        print(safe_line(f"sandbox: {sandbox['backend']}" + (f" ({sandbox['reason']})" if sandbox.get("reason") else "")))
    print(counts_line(store))
    reasons = Counter(r.reason for r in store.candidates(status=("failed", "filtered", "proposal_failed")))
    if reasons:
        print("failures: " + ", ".join(f"{safe_line(k)} {v}" for k, v in reasons.most_common()))
    rows = store.candidates()
    running = state.startswith("state: running")
    now = store.get_state("run") or {}
    for c in store.cycles():
        mine = [r for r in rows if r.cycle == c["cycle"]]
        valid = sum(r.statistics is not None for r in mine)
        accepted = sum(r.status == "accepted" for r in mine)
        d = c["diagnostic"] or {}
        rel = f"ρ_S {d['rho_s']:.2f} (SNR {d['snr']:.2f})" if d.get("rho_s") is not None and "snr" in d else "ρ_S n/a"
        label = c["status"]
        if label != "done":
            phase = now.get("phase") if now.get("cycle") == c["cycle"] else label
            label = PHASES.get(phase, phase) if running else f"interrupted while {PHASES.get(phase, phase)}"
        after = f"#{c['incumbent_after']}" if c["incumbent_after"] is not None else "…"
        print(f"  cycle {c['cycle']}: {label}; incumbent #{c['incumbent_before']} → {after}, valid {valid}/{len(mine)},"
              f" accepted {accepted}; proxy reliability {rel}")
    from agent.gate import gate_cost
    cost = gate_cost(rows)
    if cost["decisions"]:
        stops = ", ".join(f"{k}: {v}" for k, v in cost["stopped_at"].items())
        print(f"gate: {cost['decisions']} sequential decisions, instances per decision {cost['total']:.2f} "
              f"(candidate {cost['candidate']:.2f} incl. its first 2, incumbent {cost['incumbent']:.2f}); "
              f"decided at paired instances {{{stops}}}")
    for a in store.adapters():
        print(f"  adapter v{a['version']} after cycle {a['cycle']}: {a['examples']} examples, {a['seconds']:.0f} s")
    report = store.get_state("final_report")
    if report and "brier" in report.get("final", {}):
        same = " (no candidate beat the seed: the seed was exported)" if report.get("final_id") == report.get(
            "seed_id") else f" (seed {report['seed'].get('brier', float('nan')):.4f})"
        print(f"final #{report.get('final_id')}: {report['members']}-ensemble test Brier {report['final']['brier']:.4f}"
              f"{same}, accuracy {report['final']['accuracy']:.4f}")
    timings = store.get_state("timings") or {}
    if timings:
        total = sum(timings.values()) or 1.0
        print("time: " + ", ".join(f"{k} {v:.0f} s ({v / total:.0%})" for k, v in sorted(timings.items())))
    for line in population_lines(store, config, rows):
        print(line)
    return 0


def population_lines(store: RunStore, config: dict, rows) -> list[str]:
    """The bandit's allocation and the archives per cycle, and the budget: what is spent, what is left."""
    from agent.population.budgets import BudgetConfig, Spent, describe
    lines = []
    allocations: dict[int, list[dict]] = {}
    for a in store.allocations():
        allocations.setdefault(a["cycle"], []).append(a)
    for c in store.cycles():
        pop = (c["diagnostic"] or {}).get("population")
        alloc = allocations.get(c["cycle"])
        if not pop and not alloc:
            continue
        text = f"  cycle {c['cycle']}: "
        if alloc:
            text += "allocation " + ", ".join(f"{safe_line(a['arm'])} {a['allocated']}" for a in alloc)
        if pop:
            hv = ", ".join(f"{h:.3f}" for h in pop.get("hypervolume", []))
            text += (f"; entered {pop['entered']}, archives {pop['archive_sizes']}, hypervolume [{hv}]"
                     + "".join(f", #{m['candidate']} island {m['from']}→{m['to']}" for m in pop.get("migrations", [])))
        lines.append(text)
    if lines:
        members = store.archive()
        islands = sorted({m["island"] for m in members})
        lines.insert(0, "population: " + "; ".join(
            f"island {i}: " + " ".join(f"#{m['candidate_id']}" for m in members if m["island"] == i) for i in islands))
    spent = Spent(wall_s=float(store.get_state("spent_wall_s", 0.0) or 0.0),
                  evaluations=sum(r.evaluations for r in rows if r.cycle > 0),
                  tokens=sum(int(r.meta.get("tokens") or 0) + int(r.meta.get("prompt_tokens") or 0) for r in rows))
    lines.append(describe(BudgetConfig.model_validate(config.get("budget") or {}), spent))
    stopped = store.get_state("stopped")
    if stopped:
        lines.append(f"stopped before cycle {stopped['before_cycle']}: {stopped['reason']} "
                     "(ensnas resume RUN --max-... with a larger budget continues it)")
    return lines


def _pred(stats: dict | None, members: int) -> str:
    if not stats:
        return ""
    from evaluator.statistics import predicted_from_dict
    return f"{predicted_from_dict(stats, members):.4f}"


@_reading
def show(store: RunStore, args) -> int:
    members = (store.get_meta("config") or {}).get("acceptance", {}).get("members", 5)
    if args.candidate is None:
        incumbent = store.get_state("incumbent")
        room = _reason_room(58)
        print(f"  {'id':>4} {'cycle':>5} {'proposer':<10} {'parent':>6} {'status':<16} {'E_ens(M)':>8}  reason")
        for r in store.candidates():
            mark = "★" if r.id == incumbent else " "
            print(f"{mark} {r.id:>4} {r.cycle:>5} {safe_line(r.proposer):<10} {str(r.parent_id or ''):>6} "
                  f"{r.status:<16} {_pred(r.statistics, members):>8}  {_cut(safe_line(r.reason or ''), room)}")
        if incumbent is not None:
            print(f"★ the incumbent (#{incumbent}); `ensnas show {args.run_dir} ID` for a candidate in full")
        return 0
    r = store.candidate(args.candidate)
    if args.json:
        print(json.dumps(r.__dict__, indent=2, default=str))
        return 0
    print(f"candidate #{r.id}: cycle {r.cycle}, proposer {safe_line(r.proposer)}, parent #{r.parent_id}, "
          f"status {r.status}")
    if r.reason:
        print(f"reason: {safe_text(r.reason)}")
    if r.detail:
        print(f"detail: {safe_text(r.detail)}")
    if r.statistics:
        s = r.statistics
        print(f"E_a {s['member_error']:.4f}  D̂ {s['diversity']:.4f}  ρ {s['correlation']:.3f}  "
              f"σ² {s['variance']:.4f}  predicted E_ens(M={members}) {_pred(s, members)}  params {r.param_count:,}")
    if r.decision:
        print(f"decision vs #{r.decision.get('baseline')}: Δ {r.decision['delta']:+.5f}, threshold "
              f"{r.decision['threshold']:+.5f}, bound [{r.decision['lower_bound']:+.5f}, {r.decision['upper_bound']:+.5f}]")
    print("--- source ---")
    print(safe_text(r.source) if r.source else "(none)")
    return 0


def _reason_room(used: int) -> int | None:
    """Columns left for the reason on a terminal; None (no cut) when the output is not one."""
    if not sys.stdout.isatty():
        return None
    import shutil
    return max(20, shutil.get_terminal_size((120, 24)).columns - used)


def _cut(text: str, room: int | None) -> str:
    """Whole words up to room columns, then …"""
    if room is None or len(text) <= room:
        return text
    head = text[: room - 1]
    return (head.rsplit(" ", 1)[0] if " " in head[room // 2:] else head).rstrip(" ,;:") + "…"


def colour(diff_text: str, enabled: bool) -> str:
    """The diff made safe (it shows candidate source), then coloured with our own ANSI codes."""
    diff_text = safe_text(diff_text)
    if not enabled:
        return diff_text
    out = []
    for line in diff_text.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            out.append(f"\033[1m{line}\033[0m")
        elif line.startswith("+"):
            out.append(f"\033[32m{line}\033[0m")
        elif line.startswith("-"):
            out.append(f"\033[31m{line}\033[0m")
        elif line.startswith("@@"):
            out.append(f"\033[36m{line}\033[0m")
        else:
            out.append(line)
    return "".join(out)


@_reading
def diff(store: RunStore, args) -> int:
    cand = store.candidate(args.candidate)
    other_id = args.other if args.other is not None else cand.parent_id
    if other_id is None:
        from evaluator.failures import ConfigError
        raise ConfigError(f"candidate #{cand.id} has no parent (it is the seed); give OTHER to compare with: "
                          f"ensnas diff {args.run_dir} {cand.id} OTHER")
    other = store.candidate(other_id)
    from agent.delta import unified_diff
    text = unified_diff(other.source or "", cand.source or "", parent_name=f"#{other.id}", child_name=f"#{cand.id}")
    enabled = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(colour(text, enabled) if text else f"#{cand.id} and #{other.id} are identical", end="" if text else "\n")
    return 0


@_reading
def lineage(store: RunStore, args) -> int:
    members = (store.get_meta("config") or {}).get("acceptance", {}).get("members", 5)
    rows = {r.id: r for r in store.candidates()}
    seed_id = store.get_state("seed_id")
    if seed_id is None:
        print("the run has not evaluated its seed yet")
        return 0
    children: dict[int, list[int]] = {}
    for r in rows.values():
        d = r.decision or {}
        # the population search: the tree of descent (each entry under the archive member it was
        # made from); the hill climber: the chain of baselines each acceptance replaced
        base = r.parent_id if d.get("mode") == "pareto" else d.get("baseline")
        if r.status == "accepted" or (args.all and d.get("baseline") is not None):
            children.setdefault(base, []).append(r.id)
        elif args.all and r.parent_id is not None and r.status in ("failed", "filtered", "proposal_failed"):
            children.setdefault(r.parent_id, []).append(r.id)
    incumbent = store.get_state("incumbent")
    in_archive = {a["candidate_id"] for a in store.archive()}

    def label(r) -> str:
        mark = (" ◆" if r.id in in_archive else "") + (" ★" if r.id == incumbent else "")
        if r.status == "seed":
            return f"#{r.id} seed  E_ens(M={members}) {_pred(r.statistics, members)}{mark}"
        reason = safe_line(r.reason or "")
        d = r.decision or {}
        if d.get("mode") == "pareto":
            what = f"entered island {d['island']}" if r.status == "accepted" else "dominated"
            cost = f", {r.param_count:,} params" if r.param_count is not None else ""
            gain = (f"vs #{d['baseline']} gain {d['predicted_improvement']:+.4f} "
                    f"[{d['lower_bound']:+.4f}, {d['upper_bound']:+.4f}]" if "lower_bound" in d else "")
            score = f"E_ens {_pred(r.statistics, members)}" if r.statistics else ""
            return f"#{r.id} {safe_line(r.arm or r.proposer)} {what} cycle {r.cycle}  {score}{cost}  {gain}{mark}"
        gain = f"gain {d['predicted_improvement']:+.4f} [{d['lower_bound']:+.4f}, {d['upper_bound']:+.4f}]" if d else reason
        edited = f" (edited #{r.parent_id})" if d and r.parent_id != d.get("baseline") else ""
        score = f"  E_ens {_pred(r.statistics, members)}" if r.statistics else ""
        return f"#{r.id} {safe_line(r.proposer)} {r.status} cycle {r.cycle}  {gain}{score}{edited}{mark}"

    def walk(node: int, prefix: str, last: bool, root: bool = False) -> None:
        print(("" if root else prefix + ("└─ " if last else "├─ ")) + label(rows[node]))
        kids = sorted(children.get(node, []))
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("" if root else ("   " if last else "│  ")), i == len(kids) - 1)

    walk(seed_id, "", True, root=True)
    if in_archive:
        print("◆ in an island archive now   ★ the incumbent (the archives' error-best)")
    return 0
