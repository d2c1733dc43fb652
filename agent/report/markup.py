"""HTML building blocks. Every value that reaches the page goes through `esc` (text and attribute
values alike) or `num`; nothing from a run is ever placed inside <script>, <style>, a comment or
an unquoted attribute. Candidate source, failure details and LLM output are untrusted."""
from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any, Iterable

from agent.report.data import number

MAX_TEXT = 20_000  # characters of one untrusted text shown (details and outputs can be megabytes)


def esc(value: Any, limit: int | None = MAX_TEXT) -> str:
    """Escaped text, safe in element content and in double- or single-quoted attribute values."""
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit:,} more characters not shown)"
    return html.escape(text, quote=True)


def num(value: Any, fmt: str = ".4f", missing: str = "–") -> str:
    """A number formatted, or the escaped value as text when it is not a finite number."""
    x = number(value)
    if x is None:
        return missing if value is None else esc(value, 80)
    if fmt == "int":
        return f"{int(x):,}"
    return format(x, fmt)


def pre(text: Any, cls: str = "") -> str:
    return f'<pre class="{esc(cls)}">{esc(text)}</pre>'


def as_json(value: Any, limit: int = MAX_TEXT) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return pre(text[:limit] + ("\n…" if len(text) > limit else ""), "json")


def kv_table(rows: Iterable[tuple[str, str]], cls: str = "kv") -> str:
    """Rows of (escaped label, already-rendered HTML value)."""
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>' if body else ""


def table(header: list[str], rows: list[list[str]], cls: str = "grid", row_attrs: list[str] | None = None) -> str:
    """A table of already-rendered cells; `row_attrs` are attribute strings built with `attr`."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(f"<tr{(' ' + row_attrs[i]) if row_attrs else ''}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                   for i, r in enumerate(rows))
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def attr(**values: Any) -> str:
    """Attributes (names are ours, values escaped and quoted); data_x → data-x, class_ → class."""
    return " ".join(f'{k.rstrip("_").replace("_", "-")}="{esc(v, 200)}"' for k, v in values.items())


def diff_html(text: str | None, limit: int = MAX_TEXT) -> str:
    """A unified diff, line by line in coloured spans (escaped)."""
    if not text:
        return '<p class="muted">no diff (identical to its parent, or no parent)</p>'
    text = text[:limit]
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            cls = "dh"
        elif line.startswith("+"):
            cls = "da"
        elif line.startswith("-"):
            cls = "dd"
        elif line.startswith("@@"):
            cls = "dk"
        else:
            cls = "dc"
        out.append(f'<span class="{cls}">{esc(line, None)}</span>')
    return '<pre class="diff">' + "".join(out) + "</pre>"  # block spans: one line each


def details(summary: str, body: str, *, open_: bool = False, cls: str = "") -> str:
    return f'<details class="{cls}"{" open" if open_ else ""}><summary>{summary}</summary>{body}</details>'


def when(ts) -> str:
    t = number(ts)
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t is not None else "–"


def link(cid) -> str:
    return f'<a href="#c{int(cid)}">#{int(cid)}</a>' if isinstance(cid, int) else esc(cid if cid is not None else "–")


def badge(status) -> str:
    return f'<span class="st {esc("st-" + str(status))}">{esc(status)}</span>'


def figure(svg: str | None, caption: str) -> str:
    return f'<figure>{svg}<figcaption>{caption}</figcaption></figure>' if svg else ""
