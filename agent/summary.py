"""What a run says about itself: one line per proposer per cycle, the proxy-reliability note,
and the end summary (what was found, what it cost, where it is, how to load it)."""
from __future__ import annotations

import shlex
import sys
from collections import Counter
from pathlib import Path

from agent.safe_text import safe_line

EVALUATED = ("accepted", "rejected")
MIN_CANDIDATES_FOR_RANKING = 3   # the spread of two scores says nothing about a ranking


def proposer_line(cycle: int, proposer: str, rows: list) -> str:
    """proposed / valid / filtered / failed by reason / evaluated / accepted, for one proposer."""
    failed = Counter(r.reason or "?" for r in rows if r.status in ("proposal_failed", "failed"))
    filtered = Counter(r.reason or "?" for r in rows if r.status == "filtered")
    valid = sum(r.status != "proposal_failed" for r in rows)
    evaluated = sum(r.status in EVALUATED for r in rows)
    accepted = sum(r.status == "accepted" for r in rows)
    return (f"cycle {cycle} · {proposer}: {len(rows)} proposed, {valid} valid, {sum(filtered.values())} filtered"
            f"{_by_reason(filtered)}, {sum(failed.values())} failed{_by_reason(failed)}, {evaluated} evaluated, "
            f"{accepted} accepted")


def _by_reason(counts: Counter) -> str:
    return " (" + ", ".join(f"{safe_line(k)} {v}" for k, v in counts.most_common()) + ")" if counts else ""


def cycle_lines(cycle: int, rows: list) -> list[str]:
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r.proposer, []).append(r)
    return [proposer_line(cycle, name, mine) for name, mine in by.items()]


def proxy_note(cycle: int, diagnostic: dict, rows: list, warn_below: float) -> str | None:
    """docs/theory.md T6.6 said plainly, or nothing when it would say nothing: with fewer than three
    scored candidates the spread estimate is noise, so no verdict is printed."""
    rho, snr = diagnostic.get("rho_s"), diagnostic.get("snr")
    if rho is None or diagnostic.get("candidates", 0) < MIN_CANDIDATES_FOR_RANKING or rho >= warn_below:
        return None
    accepted = sum(r.status == "accepted" for r in rows)
    tail = (" Accepted candidates still passed the acceptance bound, which includes this seed noise."
            if accepted else "")
    if not diagnostic.get("var_arch"):
        return (f"cycle {cycle}: the {diagnostic['candidates']} candidates' proxy scores differ no more than two "
                f"training seeds of one program do (SNR 0), so their ranking by score is noise; a longer proxy "
                f"budget (task epochs) separates them.{tail}")
    return (f"cycle {cycle}: proxy ranking is weak (predicted Spearman {rho:.2f}, SNR {snr:.2f}): candidates "
            f"differ little more than two seeds of one program do.{tail}")


def _distinct(sources: list[str]) -> int:
    from agent.novelty import tokens   # the novelty filter's normal form: comments and layout dropped
    return len({tuple(tokens(s)) for s in sources})


def end_summary(store, report: dict, run_dir: Path, *, wall_seconds: float | None = None,
                html: Path | None = None) -> str:
    from agent.deploy import export_path
    rows = store.candidates()
    lines = []
    seed_id, final_id = report.get("seed_id"), report.get("final_id")
    accepted = [r for r in rows if r.status == "accepted"]
    # the population search accepts onto Pareto fronts; only a gate accept is a proven error gain
    pareto = any((r.decision or {}).get("mode") == "pareto" for r in accepted)
    proven = [r for r in accepted if (r.decision or {}).get("gate_accept")]
    f, s = report.get("final") or {}, report.get("seed") or {}
    if seed_id is not None and seed_id == final_id:
        lines.append(f"no candidate beat the seed: exported the seed program #{seed_id}")
    elif final_id is not None:
        steps = (f"{len(proven)} candidate(s) passed the gate in the run" if pareto
                 else f"{len(accepted)} accepted step(s) from the seed #{seed_id}")
        lines.append(f"best: #{final_id} ({safe_line(store.candidate(final_id).proposer)}), {steps}")
    gain = report.get("validation_gain")
    if gain and seed_id != final_id:
        lines.append(f"  predicted {report['members']}-ensemble gain over the seed (validation): "
                     f"{gain['predicted_improvement']:+.4f}, {1 - gain['alpha']:.0%} bounds "
                     f"[{gain['lower_bound']:+.4f}, {gain['upper_bound']:+.4f}]")
    if "brier" in f and "brier" in s:
        lines.append(f"  test split, {report['members']}-member ensembles: Brier {f['brier']:.4f} vs seed "
                     f"{s['brier']:.4f} (gain {s['brier'] - f['brier']:+.4f}), accuracy {f['accuracy']:.4f} vs "
                     f"{s['accuracy']:.4f}")
    elif f.get("failed"):
        lines.append(f"  the final deploy failed: {safe_line(f['failed'])}: {safe_line(f.get('detail'), limit=300)}")
    searched = [r for r in rows if r.proposer != "seed"]
    decided = (f"{len(accepted)} entered a Pareto front, {len(proven)} passed the gate" if pareto
               else f"{len(accepted)} accepted")
    lines.append(f"candidates: {len(searched)} proposed, {sum(r.statistics is not None for r in searched)} "
                 f"evaluated, {decided}")
    llm = [r for r in rows if r.proposer == "llm"]
    if llm:
        valid = [r.source for r in llm if r.statistics is not None and r.source]
        tokens = sum(int((r.meta or {}).get("tokens") or 0) for r in llm)
        seconds = sum(float((r.meta or {}).get("seconds") or 0.0) for r in llm)
        distinct = _distinct(valid)
        lines.append(f"LLM: {len(llm)} proposals, {len(valid)} valid ({distinct} distinct "
                     f"program{'s' if distinct != 1 else ''}), "
                     f"{tokens:,} tokens in {seconds:.0f} s of generation")
    timings = store.get_state("timings") or {}
    if timings or wall_seconds:
        total = f"{wall_seconds:.0f} s wall" if wall_seconds else ""
        split = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(timings.items(), key=lambda kv: -kv[1]))
        lines.append("time: " + "; ".join(x for x in (total, split) if x))
    if report.get("export_dir"):
        export = export_path(run_dir, report).resolve()
        py = shlex.quote(sys.executable)
        lines.append(f"export: {export}")
        lines.append(f"  load it: {py} -c \"import sys; sys.path.insert(0, {str(export)!r}); import load; "
                     f"print(load.load_ensemble())\"   (load.predict(raw_inputs) applies the task's preprocessing)")
        lines.append("  load.py imports the candidate's program.py: run it only on code you trust")
    report_json = Path(run_dir) / "report.json"
    if html:   # the page first and alone on its line: it is what a person opens (and what tools grep for)
        lines.append(f"report: {html}  (open it in a browser; ensnas report {run_dir} rewrites it)")
    if report_json.exists():
        lines.append(f"data: {report_json}")
    return "\n".join(lines)
