"""The report's sections, in page order. Each takes the RunView and returns (title, HTML) or None
when the run has nothing for it (an older store, a run still at its seed), so a new kind of data
is one more function in SECTIONS. Every run value is rendered through markup.esc / markup.num.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

from agent.deploy import export_path
from agent.gate import gate_cost
from agent.report import charts
from agent.report.cards import candidates
from agent.report.data import (Candidate, RunView, ancestry, current_archive, failure_label, mapping, number,
                               proposer_table)
from agent.report.markup import as_json, badge, details, esc, figure, kv_table, link, num, table, when


# -- summary -------------------------------------------------------------------------------------
def summary(view: RunView):
    cfg = view.config
    done = [c for c in view.cycles if c.get("status") == "done"]
    rows = view.candidates
    evaluated = [c for c in rows if c.predicted is not None]
    instances = sum(c.instances or 0 for c in rows)
    eval_seconds = sum(number(c.eval_seconds) or 0.0 for c in rows)
    llm_tokens = sum(number(c.meta.get("tokens")) or 0 for c in rows if isinstance(c.meta, dict))
    starts = [number(c.created) for c in rows if number(c.created) is not None]
    ends = [number(c.get("finished")) for c in view.cycles if number(c.get("finished")) is not None]
    gen = cfg.get("generator") if isinstance(cfg.get("generator"), dict) else {}
    proposers = ", ".join(f"{p.get('name')} ×{p.get('candidates')}" for p in cfg.get("proposers", [])
                          if isinstance(p, dict))
    adapters = ", ".join(f"v{a['version']} (cycle {a['cycle']}, {a['examples']} examples, "
                         f"{number(a['seconds']) or 0:.0f} s)" for a in view.adapters)
    info = [
        ("run directory", esc(view.run_dir)),
        ("task", esc(cfg.get("task", "?"))),
        ("proposers", esc(proposers or "–")),
        ("generator", esc(" · ".join(f"{k} {gen[k]}" for k in ("backend", "model", "base_url") if gen.get(k)) or "–")
         + ("" if any(isinstance(p, dict) and p.get("name") == "llm" for p in cfg.get("proposers", []))
            else " <span class='muted'>(unused: no llm proposer)</span>")
         + "".join(f"<br><span class='muted'>{esc(g, 300)}</span>" for g in _generators(rows))),
        ("adapters (CE updates)", esc(adapters) if adapters else "none"),
        ("versions", esc(", ".join(f"{k} {v}" for k, v in view.versions.items() if v)) or "–"),
        ("sandbox", esc(view.sandbox or "–")),
        ("members M", num(view.members, "int")),
        ("seed noise", f"pooled σ² {num(view.noise_variance, '.3e', missing='off')}"
         + (f"; prior for paired gains {num(view.noise_prior.get('var_pair'), '.3e')} "
            f"({num(view.noise_prior.get('df'), 'g')} df)" if view.noise_prior else "")),
        ("cycles", f"{len(done)} done of {num(cfg.get('cycles'), 'int')}"),
        ("candidates", esc(", ".join(f"{v} {k}" for k, v in sorted(Counter(str(c.status) for c in rows).items())))),
        ("evaluations", f"{len(evaluated)} scored, {instances} proxy instances trained, "
                        f"{eval_seconds:,.0f} s in sandboxes"),
        ("LLM tokens", f"{llm_tokens:,.0f}" if llm_tokens else "–"),
        ("started / last cycle", f"{when(min(starts) if starts else None)} / {when(max(ends) if ends else None)}"),
        ("incumbent", link(view.incumbent)),
        ("acceptance gate", _gate(view)),
    ]
    body = kv_table(info) + _final_scores(view)
    body += details("configuration", as_json(cfg))
    return "Run summary", body


def _gate(view: RunView) -> str:
    """The gate's method and, for the sequential test, its cost (agent.gate.gate_cost, as in `ensnas status`)."""
    acc = mapping(view.config.get("acceptance"))
    method = esc(acc.get("method", "fixed"))
    try:
        cost = gate_cost([c.row for c in view.candidates if isinstance(c.decision, dict)])
    except (KeyError, TypeError, ValueError, IndexError):  # decisions of another shape: the method only
        return method
    if not cost.get("decisions"):
        return method
    stops = ", ".join(f"{k}: {v}" for k, v in cost["stopped_at"].items())
    return (f"{method}: {cost['decisions']} decisions, {cost['total']:.2f} instances per decision (candidate "
            f"{cost['candidate']:.2f}, incumbent {cost['incumbent']:.2f}); decided at paired instances "
            f"{esc('{' + stops + '}')}")


def _generators(rows: list[Candidate]) -> list[str]:
    """The generators the LLM proposals name (model, backend, adapter version), first seen first."""
    seen: dict[str, None] = {}
    for c in rows:
        g = c.meta.get("generator") if isinstance(c.meta, dict) else None
        if isinstance(g, dict):
            adapter = f"adapter v{g.get('adapter_version')}" if g.get("adapter") else "no adapter"
            g = " · ".join(str(x) for x in (g.get("backend"), g.get("model"), adapter, g.get("served_by")) if x)
        if g:
            seen.setdefault(str(g), None)
    return list(seen)[:10]


def _final_scores(view: RunView) -> str:
    rep = view.final if isinstance(view.final, dict) else None
    if not rep:
        return '<p class="muted">Not deployed yet: the final ensembles are trained and scored on the test split at the end of the run.</p>'
    roles = [r for r in ("final", "seed") if isinstance(rep.get(r), dict)]
    metrics = [m for m in ("brier", "accuracy", "cross_entropy", "single_model_brier")
               if any(m in rep[r] for r in roles)]
    head = ["", *[esc(m) for m in metrics], "note"]
    out_rows = []
    for role in roles:
        r = rep[role]
        cid = rep.get(f"{role}_id")
        note = esc(f"failed: {r.get('failed')}: {r.get('detail', '')}") if "failed" in r else ""
        out_rows.append([f"{role} {link(cid)}", *[num(r.get(m)) for m in metrics], note])
    gain = rep.get("test_brier_gain")
    caption = (f"<p>Deployed {num(rep.get('members'), 'int')}-member ensembles on the test split "
               f"(fresh seeds, never seen by the search). Test Brier gain over the seed: "
               f"<b>{num(gain, '+.4f')}</b>. Exported to <code>{esc(export_path(Path(view.run_dir), rep))}</code>.</p>")
    return caption + table(head, out_rows)


# -- progress ------------------------------------------------------------------------------------
def progress(view: RunView):
    svg = charts.progress(view)
    if svg is None:
        return None
    return "Search progress", figure(svg, (
        "Left: every scored candidate's predicted M-ensemble error (T1, validation split) in the order its "
        "evaluation finished, coloured by proposer; stars are accepted; click a point for its candidate. "
        "Right: per cycle, and after deploy the measured test Brier of the seed and final ensembles."))


# -- proposers -----------------------------------------------------------------------------------
def proposers(view: RunView):
    rows = proposer_table(view)
    if not rows:
        return None
    body = figure(charts.proposers(view), "Outcomes of every proposal over the run.")
    cells = []
    for r in rows:
        failed = ", ".join(f"{esc(k)} {v}" for k, v in sorted(r["failed"].items(), key=lambda kv: -kv[1]))
        cells.append([num(r["cycle"], "int"), esc(r["proposer"]), str(r["proposed"]), str(r["filtered"]),
                      f"{sum(r['failed'].values())}" + (f" <span class='muted'>({failed})</span>" if failed else ""),
                      str(r["evaluated"]), str(r["accepted"]) + (f" <span class='muted'>+{r['pending']} pending</span>"
                                                                 if r["pending"] else "")])
    grid = table(["cycle", "proposer", "proposed", "filtered", "failed (by reason)", "evaluated", "accepted"], cells)
    body += grid if len(cells) <= 30 else details(f"per cycle and proposer ({len(cells)} rows)", grid)
    body += _allocations(view)
    for name, state in sorted(view.proposer_state.items()):
        if state:
            body += details(f"state of proposer {esc(name)}", as_json(state, 4000))
    return "Proposers", body


def _allocations(view: RunView) -> str:
    """The bandit's split of each cycle's budget over arms (proposer or proposer:operator)."""
    if not view.allocations:
        return ""
    arms = list(dict.fromkeys(str(a["arm"]) for a in view.allocations))
    cycles = sorted({a["cycle"] for a in view.allocations if isinstance(a["cycle"], int)})
    grid = {(a["cycle"], str(a["arm"])): a for a in view.allocations}
    cells = []
    for cyc in cycles:
        row = [num(cyc, "int")]
        for arm in arms:
            a = grid.get((cyc, arm))
            row.append(f"{num(a['allocated'], 'int')} <span class='muted'>({num(a.get('pulls'), '.0f')} pulls, "
                       f"reward {num(a.get('reward'), '.2f')})</span>" if a else "–")
        cells.append(row)
    return ("<h3>Bandit allocation</h3><p class='muted'>Candidates given to each arm per cycle, with the arm's pulls "
            "and summed reward before that cycle.</p>" + table(["cycle", *[esc(a, 60) for a in arms]], cells))


# -- Pareto --------------------------------------------------------------------------------------
def pareto(view: RunView):
    svg = charts.pareto(view)
    if svg is None:
        return None
    has_latency = any(c.latency is not None for c in view.candidates)
    archive = current_archive(view)
    if archive:
        what = ("error × parameters, latency as colour; ringed: the members of the islands' Pareto archives now "
                "(error dominance asks the acceptance bound, so the rings need not form a staircase)")
    elif has_latency:
        what = "error × parameters × latency (colour); ringed: non-dominated in all three on point estimates"
    else:
        what = "error × parameters of every scored candidate (no latency measured in this run)"
    body = figure(svg, f"Predicted M-ensemble error vs size: {what}. Click a point for its candidate.")
    if archive:
        body += _archive_tables(view, archive)
    return "Pareto front", body


def _archive_tables(view: RunView, archive: dict[int, list[int]]) -> str:
    by_id, out = view.by_id, []
    entered = {(r["island"], r["candidate_id"]): r for r in view.archive if r.get("left_cycle") is None}
    for island in sorted(archive):
        rows = []
        for cid in sorted(archive[island], key=lambda i: (by_id[i].predicted if i in by_id and by_id[i].predicted
                                                          is not None else float("inf"))):
            c, r = by_id.get(cid), entered[(island, cid)]
            lat = mapping(getattr(c.row, "latency", None)) if c else {}
            rows.append([link(cid), esc(c.proposer, 40) if c else "–", num(c.predicted if c else None),
                         num(c.param_count if c else None, "int"), num(lat.get("batch_1_ms"), ".3g"),
                         num(lat.get("batch_256_ms"), ".3g"), esc(r.get("origin")), num(r.get("entered_cycle"), "int")])
        out.append(f"<h3>island {num(island, 'int')}: {len(rows)} members</h3>" +
                   table(["id", "proposer", f"E_ens(M={view.members})", "params", "latency b1 ms", "latency b256 ms",
                          "origin", "entered cycle"], rows))
    left = [r for r in view.archive if r.get("left_cycle") is not None]
    if left:
        cells = [[num(r["island"], "int"), link(r["candidate_id"]), num(r.get("entered_cycle"), "int"),
                  num(r.get("left_cycle"), "int"), esc(r.get("left_reason"), 120)] for r in left]
        out.append(details(f"{len(left)} former archive members",
                           table(["island", "id", "entered", "left", "why"], cells)))
    return "".join(out)


# -- lineage -------------------------------------------------------------------------------------
def lineage(view: RunView):
    if not view.candidates:
        return None
    children, keep = ancestry(view)
    by_id = view.by_id
    out = ['<p><label><input type="checkbox" id="tree-all"> show every candidate (default: only the branches '
           'that lead to an accepted program)</label></p><ul class="tree" id="tree">']
    stack: list[tuple[str, int | None]] = [("node", r) for r in reversed(children.get(None, []))]
    while stack:  # iterative: a long chain must not hit Python's recursion limit
        kind, node = stack.pop()
        if kind == "close":
            out.append("</ul></li>")
            continue
        c = by_id[node]
        minor = "" if node in keep else " minor"
        out.append(f'<li class="{esc("n-" + str(c.status))}{minor}">{_node_label(view, c)}')
        kids = children.get(node, [])
        if kids:
            out.append("<ul>")
            stack.append(("close", None))
            stack.extend(("node", k) for k in reversed(kids))
        else:
            out.append("</li>")
    out.append("</ul>")
    return "Lineage", "".join(out)


def _node_label(view: RunView, c: Candidate) -> str:
    star = ' <span title="final incumbent">★</span>' if c.id == view.incumbent else ""
    score = f" E_ens {num(c.predicted)}" if c.predicted is not None else ""
    d = c.decision if isinstance(c.decision, dict) else {}
    gain = (f" gain {num(d.get('predicted_improvement'), '+.4f')} [{num(d.get('lower_bound'), '+.4f')}, "
            f"{num(d.get('upper_bound'), '+.4f')}]") if d else ""
    why = f" <span class='muted'>{esc(failure_label(c), 80)}</span>" if c.status in ("failed", "filtered",
                                                                                     "proposal_failed") else ""
    return (f"{link(c.id)} {esc(c.proposer, 40)} {badge(c.status)} <span class='muted'>cycle {num(c.cycle, 'int')}"
            f"</span>{score}{gain}{why}{star}")


# -- diagnostics ---------------------------------------------------------------------------------
def diagnostics(view: RunView):
    if not view.cycles and not view.timings:
        return None
    body = figure(charts.reliability(view), (
        "docs/theory.md T6.6: σ²_arch is the spread of the cycle's candidate scores, σ²_noise the spread of one "
        "program's instances. Below ρ_S ≈ 0.8 the proxy ranks candidates little better than noise."))
    adapter_at = {a["cycle"]: a for a in view.adapters}
    cells = []
    for c in view.cycles:
        d = c.get("diagnostic") if isinstance(c.get("diagnostic"), dict) else {}
        started, finished = number(c.get("started")), number(c.get("finished"))
        mine = [x for x in view.candidates if x.cycle == c["cycle"]]
        ce = adapter_at.get(c["cycle"])
        cells.append([num(c["cycle"], "int"), esc(c.get("status")), num(d.get("candidates"), "int"),
                      num(d.get("rho_s"), ".3f"), num(d.get("snr"), ".3g"), num(d.get("var_arch"), ".2e"),
                      num(d.get("var_noise"), ".2e"),
                      f"{finished - started:,.1f}" if started is not None and finished is not None else "–",
                      f"{sum(number(x.eval_seconds) or 0 for x in mine):,.1f}",
                      f"{num(ce['seconds'], ',.1f')}" if ce else "–"])
    if cells:
        grid = table(["cycle", "status", "scored", "ρ_S", "SNR", "σ²_arch", "σ²_noise", "wall s",
                      "sandbox s (summed)", "CE update s"], cells)
        body += grid if len(cells) <= 30 else details(f"per cycle ({len(cells)} cycles)", grid)
    body += figure(charts.time_split(view), "Where the time went over the whole run (seconds summed over "
                                             "parallel workers; sandbox = start-up, prediction and I/O without training).")
    return "Proxy reliability and time", body


# -- tables the report does not know yet ---------------------------------------------------------
def other_tables(view: RunView):
    if not view.extra_tables and not view.extra_state:
        return None
    body = "<p class='muted'>Store tables and state without a dedicated section yet (first rows).</p>"
    for name, (columns, rows, total) in view.extra_tables.items():
        cells = [[esc(v, 300) for v in r] for r in rows]
        body += details(f"{esc(name)} ({total} rows)", table([esc(c) for c in columns], cells))
    for key, value in view.extra_state.items():
        body += details(f"state {esc(key)}", as_json(value, 4000))
    return "Other store data", body


SECTIONS: list[tuple[str, Callable[[RunView], tuple[str, str] | None]]] = [
    ("summary", summary), ("progress", progress), ("proposers", proposers), ("pareto", pareto),
    ("lineage", lineage), ("diagnostics", diagnostics), ("candidates", candidates), ("tables", other_tables),
]
