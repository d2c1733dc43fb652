"""One card per candidate (statistics, decision, failure, diff, source, LLM output) and the
filterable listing above them: the report's "Candidates" section."""
from __future__ import annotations

import json

from agent.report.data import Candidate, RunView, failure_label, mapping
from agent.report.markup import as_json, attr, badge, details, diff_html, esc, kv_table, link, num, pre, table

DECISION_FIELDS = [("delta", "Δ = E_a − E_a′", "+.5f"), ("threshold", "threshold ((M−1)/M)(D_a − D_a′)", "+.5f"),
                   ("predicted_improvement", "predicted gain", "+.5f"), ("lower_bound", "lower bound", "+.5f"),
                   ("upper_bound", "upper bound", "+.5f"), ("alpha", "α", ".3g"), ("members", "M", "int")]
STAT_FIELDS = [("member_error", "E_a (mean member Brier)", ".5f"), ("diversity", "D̂", ".5f"),
               ("correlation", "ρ", ".4f"), ("variance", "σ²", ".5f"), ("ambiguity", "ambiguity Ā", ".5f"),
               ("ensemble_error", "measured K-ensemble Brier", ".5f"), ("noise_variance", "σ²_noise (seeds)", ".3e"),
               ("accuracy", "accuracy (mean member)", ".4f"), ("cross_entropy", "cross-entropy", ".4f")]


def candidates(view: RunView):
    if not view.candidates:
        return None
    statuses = sorted({str(c.status) for c in view.candidates})
    props = sorted({str(c.proposer) for c in view.candidates})
    options = lambda values: "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)  # noqa: E731
    filters = ('<div class="filters">filter: <input type="search" id="cand-text" placeholder="text in id, '
               'proposer, reason"> <select id="cand-status"><option value="">any status</option>'
               f'{options(statuses)}</select> <select id="cand-proposer"><option value="">any proposer</option>'
               f'{options(props)}</select> <span id="cand-count"></span></div>')
    rows, attrs = [], []
    for c in view.candidates:
        rows.append([link(c.id), num(c.cycle, "int"), esc(c.proposer, 40), link(c.parent_id) if c.parent_id else "–",
                     badge(c.status), num(c.predicted), num(c.param_count, "int"),
                     esc(failure_label(c) if c.status in ("failed", "filtered", "proposal_failed")
                         else (c.decision or {}).get("reason", "") if isinstance(c.decision, dict) else "", 160)])
        attrs.append(attr(class_="cand-row", data_status=c.status, data_proposer=c.proposer))
    listing = table(["id", "cycle", "proposer", "parent", "status", f"E_ens(M={view.members})", "params", "why"],
                    rows, cls="grid cands", row_attrs=attrs)
    cards = "".join(_card(view, c) for c in view.candidates)
    return "Candidates", filters + listing + cards


def _card(view: RunView, c: Candidate) -> str:
    where = "".join(f" · {label} {esc(value, 60)}" for label, value in
                    (("island", getattr(c.row, "island", None)), ("arm", getattr(c.row, "arm", None))) if value is not None)
    head = (f'<h3>#{int(c.id)} <small>{esc(c.proposer, 40)} · cycle {num(c.cycle, "int")} · parent '
            f'{link(c.parent_id) if c.parent_id else "–"}{where}</small> {badge(c.status)}</h3>')
    parts = [head]
    if c.reason and c.status in ("failed", "filtered", "proposal_failed"):
        parts.append(f"<p><b>{esc(failure_label(c), 200)}</b></p>")
    if c.detail:
        parts.append(details("failure detail" if c.status != "filtered" else "pre-filter detail", pre(c.detail, "untrusted"),
                             open_=c.status in ("failed", "proposal_failed")))
    stats = c.statistics if isinstance(c.statistics, dict) else None
    if stats:
        rows = [(esc(label), num(stats.get(key), fmt)) for key, label, fmt in STAT_FIELDS if key in stats]
        rows.append((f"predicted E_ens(M={view.members})", num(c.predicted, ".5f")))
        rows.append(("parameters", num(c.param_count, "int")))
        if c.instances is not None:
            rows.append(("instances trained", str(c.instances)))
        lat = mapping(getattr(c.row, "latency", None))
        if lat:
            rows.append(("latency b1 / b256 (ms)", f"{num(lat.get('batch_1_ms'), '.3g')} / "
                                                   f"{num(lat.get('batch_256_ms'), '.3g')}"))
        elif c.latency is not None:
            rows.append(("latency (ms)", num(c.latency, ".3g")))
        rows.append(("evaluation wall s", num(c.eval_seconds, ".1f")))
    decision = c.decision if isinstance(c.decision, dict) else None
    if stats or decision:
        parts.append(f'<div class="cols">{kv_table(rows) if stats else ""}{_decision(decision) if decision else ""}</div>')
    parts.append(details("diff against its parent", diff_html(c.diff),
                         open_=c.status in ("accepted", "failed") or c.id == view.incumbent))
    if c.source:
        parts.append(details("source", pre(c.source, "untrusted code")))
    parts.append(_meta(c.meta if isinstance(c.meta, dict) else {"meta": c.meta}))
    return f'<section class="cand" id="c{int(c.id)}">{"".join(parts)}</section>'


def _decision(d: dict) -> str:
    known = {k for k, _, _ in DECISION_FIELDS} | {"reason", "baseline", "accept", "point_accept", "confident"}
    rows = [("vs baseline", link(d.get("baseline")))]
    rows += [(esc(label), num(d.get(key), fmt)) for key, label, fmt in DECISION_FIELDS if key in d]
    inst = d.get("instances")
    if isinstance(inst, dict):  # the sequential gate: what this decision cost
        cand, inc = inst.get("candidate_trained"), inst.get("incumbent_trained")
        rows.append(("instances trained for it", f"candidate {len(cand) if isinstance(cand, list) else '–'}, "
                                                 f"incumbent {len(inc) if isinstance(inc, list) else '–'} "
                                                 f"<span class='muted'>(candidate holds "
                                                 f"{num(inst.get('candidate'), 'int')})</span>"))
        known.add("instances")
    looks = d.get("looks")
    if isinstance(looks, list) and looks and all(isinstance(x, dict) for x in looks):
        known.add("looks")
    rows += [(esc(k), _value(v)) for k, v in d.items() if k not in known]  # whatever a newer gate adds
    verdict = "accepted" if d.get("accept") else "rejected"
    looks_table = _looks(looks) if "looks" in known else ""
    return (f'<div class="decision"><p>{badge(verdict)} {esc(d.get("reason", ""), 600)}</p>{kv_table(rows)}'
            f'{looks_table}</div>')


LOOK_FIELDS = [("instances", "paired instances", "int"), ("gain", "gain", "+.5f"), ("se", "se", ".2e"),
               ("df", "df", ".1f"), ("statistic", "t", "+.2f"), ("critical", "critical t", ".2f"),
               ("futility", "predictive power", ".2f")]


def _looks(looks: list[dict]) -> str:
    """The sequential test's looks: at each, the paired gain, its t statistic against the boundary."""
    cells = [[num(look.get(k), fmt) for k, _, fmt in LOOK_FIELDS] + [esc(look.get("outcome", ""), 40)]
             for look in looks[:50]]
    return details(f"{len(looks)} look{'s' if len(looks) != 1 else ''} of the sequential test",
                   table([label for _, label, _ in LOOK_FIELDS] + ["outcome"], cells))


def _value(v) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return num(v, ".5g")
    if isinstance(v, (dict, list)):
        return f"<code>{esc(json.dumps(v, ensure_ascii=False, default=str), 300)}</code>"
    return esc(v, 300)


LLM_KEYS = ("raw_outputs", "attempts", "prompt")


def _meta(meta: dict) -> str:
    out = []
    raw = meta.get("raw_outputs")
    if isinstance(raw, list) and raw:
        body = "".join(f"<p class='muted'>attempt {i + 1}</p>{pre(t, 'untrusted llm')}" for i, t in enumerate(raw))
        out.append(details(f"LLM output ({len(raw)} answer{'s' if len(raw) != 1 else ''})", body))
    attempts = meta.get("attempts")
    if isinstance(attempts, list) and attempts and all(isinstance(a, dict) for a in attempts):
        keys = [k for k in ("attempt", "failure", "build_reason", "detail", "tokens", "seconds", "finish_reason")
                if any(k in a for a in attempts)]
        cells = [[esc(a.get(k, ""), 300) if not isinstance(a.get(k), float) else num(a.get(k), ".2f") for k in keys]
                 for a in attempts]
        out.append(details("LLM attempts", table([esc(k) for k in keys], cells)))
    prompt = meta.get("prompt")
    if prompt:
        text = "\n\n".join(f"[{m.get('role', '?')}]\n{m.get('content', '')}" if isinstance(m, dict) else str(m)
                           for m in (prompt if isinstance(prompt, list) else [prompt]))
        out.append(details("prompt", pre(text[:8000] + ("\n…" if len(text) > 8000 else ""), "untrusted")))
    rest = {k: v for k, v in meta.items() if k not in LLM_KEYS}
    if rest:
        out.append(details("metadata", as_json(rest, 4000)))
    return "".join(out)
