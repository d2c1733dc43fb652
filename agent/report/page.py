"""Assemble the sections into one self-contained HTML file: inline CSS, inline SVG, a few lines
of inline JS (filtering and collapsing) allowed by a per-page nonce. A strict
Content-Security-Policy comes first in <head>, so even text that escaped escaping could neither
run a script nor load anything: no network, no server, it opens from disk."""
from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from agent.report import data
from agent.report.markup import esc
from agent.report.sections import SECTIONS
from agent.store import RunStore
from evaluator.failures import EnsnasError

log = logging.getLogger("ensnas")
REPORT_NAME = "report.html"


class ReportError(EnsnasError):
    """The report could not be written where asked."""

CSS = """
:root{--fg:#1d1d1f;--muted:#6e6e73;--line:#d9d9de;--bg:#fff;--alt:#f6f6f8}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
 margin:0 auto;max-width:1200px;padding:0 1.2rem 4rem}
header{position:sticky;top:0;background:var(--bg);border-bottom:1px solid var(--line);padding:.5rem 0;z-index:2}
header h1{font-size:1.15rem;margin:.2rem 0}
nav a{margin-right:.9rem;color:#0b62c4;text-decoration:none;font-size:.9rem}
h2{font-size:1.1rem;border-bottom:2px solid var(--fg);padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1rem;margin:.2rem 0 .5rem}
h3 small{color:var(--muted);font-weight:normal}
a{color:#0b62c4}
.muted{color:var(--muted)}
table{border-collapse:collapse;margin:.5rem 0;font-size:.88rem}
th,td{border-bottom:1px solid var(--line);padding:.22rem .6rem;text-align:left;vertical-align:top}
table.kv th{font-weight:500;color:var(--muted);white-space:nowrap}
table.grid thead th{background:var(--alt);position:sticky;top:3.6rem}
figure{margin:.8rem 0}figure svg{max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:.85rem;max-width:60rem}
pre{background:var(--alt);border:1px solid var(--line);padding:.5rem .7rem;overflow:auto;max-height:32rem;
 font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre}
pre.diff span{display:block}
.da{background:#e6ffec;color:#116329}.dd{background:#ffebe9;color:#82071e}.dk{color:#0550ae}.dh{font-weight:bold}
.st{display:inline-block;border-radius:3px;padding:0 .35rem;font-size:.8rem;color:#fff;background:#7f7f7f}
.st-accepted{background:#2ca02c}.st-seed{background:#1f77b4}.st-failed,.st-proposal_failed{background:#d62728}
.st-filtered{background:#ff7f0e}.st-evaluated,.st-pending{background:#bcbd22}
section{scroll-margin-top:5rem}
section.cand{border:1px solid var(--line);border-radius:6px;padding:.6rem .9rem;margin:1rem 0}
section.cand:target{outline:3px solid #0b62c4}
details{margin:.3rem 0}summary{cursor:pointer;color:#0b62c4}
.decision{background:var(--alt);border-radius:4px;padding:.3rem .7rem;flex:1 1 24rem}
.cols{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
ul.tree{list-style:none;padding-left:0;font-size:.88rem}
ul.tree ul{list-style:none;padding-left:1.1rem;border-left:1px dotted var(--line);margin-left:.4rem}
ul.tree li{margin:.12rem 0}
ul.tree:not(.all) li.minor{display:none}
.filters{margin:.5rem 0}.filters input,.filters select{font:inherit;padding:.1rem .3rem}
tr.hidden{display:none}
"""

# Ours, constant: filtering, the tree toggle. It reads the DOM and writes classes and text only.
JS = """
(function(){
  var q=function(id){return document.getElementById(id);};
  var tree=q('tree'), all=q('tree-all');
  if(tree&&all){all.addEventListener('change',function(){tree.classList.toggle('all',all.checked);});}
  var text=q('cand-text'), st=q('cand-status'), pr=q('cand-proposer'), count=q('cand-count');
  if(!text){return;}
  var rows=document.querySelectorAll('tr.cand-row');
  function apply(){
    var t=text.value.toLowerCase(), s=st.value, p=pr.value, shown=0;
    rows.forEach(function(r){
      var ok=(!s||r.dataset.status===s)&&(!p||r.dataset.proposer===p)&&(!t||r.textContent.toLowerCase().indexOf(t)>=0);
      r.classList.toggle('hidden',!ok); if(ok){shown++;}
    });
    count.textContent=shown+' of '+rows.length+' shown';
  }
  [text,st,pr].forEach(function(el){el.addEventListener('input',apply);});
  apply();
})();
"""


def render(view: data.RunView, *, generated: float | None = None) -> str:
    nonce = secrets.token_urlsafe(18)
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'")
    sections, nav = [], []
    for key, build in SECTIONS:
        result = build(view)
        if result is None:
            continue
        title, body = result
        nav.append(f'<a href="#{key}">{esc(title)}</a>')
        sections.append(f'<section id="{key}"><h2>{esc(title)}</h2>{body}</section>')
    task = view.config.get("task", "?")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(generated or time.time()))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head>"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ensnas report · {esc(task, 100)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>ensnas report · {esc(task, 100)} <small class="muted">{esc(view.run_dir, 300)} · '
        f'generated {stamp}</small></h1><nav>{"".join(nav)}</nav></header>'
        + "".join(sections)
        + f'<script nonce="{nonce}">{JS}</script></body></html>\n')


def open_store(run_dir: Path) -> RunStore:
    """The store read-only, as the other inspect commands open it: nothing in the run changes, and
    it works while the run is writing."""
    return RunStore(Path(run_dir), read_only=True)


def write_report(store: RunStore, out: Path | None = None) -> Path:
    """Render the run and write it atomically (a browser reloading mid-write sees the old or the new page)."""
    out = Path(out) if out is not None else store.dir / REPORT_NAME
    page = render(data.load(store))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True) if tmp.parent.is_dir() else None
        raise ReportError(f"cannot write the report to {out}: {exc}") from exc
    return out


def refresh_report(store: RunStore, out: Path | None = None) -> Path | None:
    """For the search loop: write the report, and if anything goes wrong log it and go on — a
    report must never break a run."""
    try:
        return write_report(store, out)
    except Exception as exc:  # noqa: BLE001 - any failure here is the report's, not the run's
        log.warning("report not written: %s: %s", type(exc).__name__, exc)
        log.debug("report failure", exc_info=True)
        return None
