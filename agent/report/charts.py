"""The report's few figures (matplotlib, Agg), returned as inline SVG markup.

A handful of figures per run, never one per candidate, so a 100-candidate run renders in well
under a second. Points link to their candidate's section (`#c<id>`). Labels are ours or numbers;
matplotlib escapes SVG text itself; `_text` makes a name from the store plain text for mathtext
(a `$` in a proposer name would otherwise be parsed as math, or fail to parse).
"""
from __future__ import annotations

import io
import math
import re
import warnings
from contextlib import contextmanager

import numpy as np

from agent.report.data import (RunView, best_so_far, current_archive, evaluation_order, incumbent_trace, number,
                               pareto_front, proposer_table)

RC = {"svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
      "svg.hashsalt": "ensnas-report", "axes.spines.top": False, "axes.spines.right": False}
STATUS_COLOURS = {"accepted": "#2ca02c", "rejected": "#7f7f7f", "seed": "#1f77b4", "evaluated": "#bcbd22",
                  "failed": "#d62728", "filtered": "#ff7f0e"}


def _text(value, limit: int = 40) -> str:
    """A store value as a plain-text label (mathtext off by escaping its `$`)."""
    return str(value)[:limit].replace("$", r"\$")


@contextmanager
def _figure(width: float, height: float, ncols: int = 1, *, left: float = 0.75, right: float = 0.15,
            top: float = 0.35, bottom: float = 0.55, wspace: float = 0.25):
    """A figure with fixed margins (inches). Not bbox_inches="tight": that draws every figure twice."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
        fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                            bottom=bottom / height, wspace=wspace)
        try:
            yield fig, list(axes.flat)
        finally:
            plt.close(fig)


def _svg(fig) -> str:
    buf = io.StringIO()
    with warnings.catch_warnings():  # a name in a script DejaVu lacks: the browser's fonts draw it (fonttype none)
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prologue and DOCTYPE: the SVG is inlined in HTML
    # matplotlib repeats each label in an XML comment (escaped); the page needs neither comments nor metadata
    return re.sub(r"<metadata>.*?</metadata>|<!--.*?-->", "", text, flags=re.S)


def _plain_log_ticks(axis, *, engineering: bool = False) -> None:
    """Plain labels on a log axis (10k, 100k with `engineering`; else 0.5, 1, 20) instead of mathtext
    powers of ten, whose parsing was a third of a render; no minor ticks (each is an artist to draw)."""
    from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullLocator
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # a narrow range still gets labels
    axis.set_major_formatter(EngFormatter(sep="") if engineering else FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def proposer_colours(names) -> dict[str, str]:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728"]
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(names)))}


def _clip_top(values: list[float], keep: list[float]) -> float:
    """A y limit that shows the interesting range: outliers (a broken candidate at Brier 0.9) are
    drawn at the top edge instead of squashing everything else."""
    finite = [v for v in values if v is not None]
    anchor = [v for v in keep if v is not None]
    top = max(float(np.quantile(finite, 0.9)), max(anchor, default=0.0)) if finite else 1.0
    low = min(finite + anchor, default=0.0)
    return top + 0.08 * max(top - low, 1e-6)


def progress(view: RunView) -> str | None:
    """Best-so-far predicted M-ensemble error per evaluation and per cycle, accepted points
    marked; after deploy, the measured test Brier of the seed and final ensembles."""
    order = evaluation_order(view)
    if not order:
        return None
    values = [c.predicted for c in order]
    best, inc = best_so_far(values), incumbent_trace(view)
    top = _clip_top(values, inc + best)
    colours = proposer_colours(c.proposer for c in order)
    x = np.arange(1, len(order) + 1)
    with _figure(11, 4.2, ncols=2, bottom=1.15, wspace=0.18) as (fig, (ax, bx)):
        ceiling = top - 0.02 * (top - min(values))
        for name, colour in colours.items():
            idx = [i for i, c in enumerate(order) if c.proposer == name]
            for clipped, marker in ((False, "o"), (True, "^")):  # ^: above the axis, drawn at its top
                mine = [i for i in idx if (values[i] > ceiling) == clipped]
                if mine:
                    sc = ax.scatter(x[mine], [min(values[i], ceiling) for i in mine], s=22, color=colour, alpha=0.75,
                                    marker=marker, zorder=3, label=None if clipped else _text(name))
                    sc.set_urls([f"#c{order[i].id}" for i in mine])
        acc = [i for i, c in enumerate(order) if c.status == "accepted"]
        if acc:
            sc = ax.scatter(x[acc], [values[i] for i in acc], s=150, marker="*", facecolor="none",
                            edgecolor="black", linewidth=1.1, label="accepted", zorder=4)
            sc.set_urls([f"#c{order[i].id}" for i in acc])
        ax.step(x, best, where="post", color="black", lw=1, ls=":", label="best predicted so far")
        ax.step(x, [v if v is not None else np.nan for v in inc], where="post", color="#2ca02c", lw=1.6,
                label="incumbent (accepted)")
        ax.set_ylim(top=top)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("evaluation (in order of completion)")
        ax.set_ylabel(f"predicted {view.members}-ensemble Brier (val)")
        ax.set_title("per evaluation (▲: above the axis)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=3)
        _per_cycle(view, bx, order)
        return _svg(fig)


def _per_cycle(view: RunView, ax, order) -> None:
    by_id = view.by_id
    cycles, inc_after, best_after = [], [], []
    best = min((c.predicted for c in order if c.cycle == 0), default=None)
    seed = by_id.get(view.seed_id)
    if seed is not None and seed.predicted is not None:
        cycles.append(0), inc_after.append(seed.predicted), best_after.append(seed.predicted)
    for cyc in view.cycles:
        if cyc.get("status") != "done":
            continue
        in_cycle = [c.predicted for c in order if c.cycle == cyc["cycle"]]
        best = min([b for b in [best, *in_cycle] if b is not None], default=None)
        after = by_id.get(cyc.get("incumbent_after"))
        cycles.append(cyc["cycle"])
        inc_after.append(after.predicted if after is not None and after.predicted is not None else np.nan)
        best_after.append(best if best is not None else np.nan)
    ax.plot(cycles, inc_after, "o-", color="#2ca02c", lw=1.6, label="incumbent after the cycle (predicted, val)")
    ax.plot(cycles, best_after, "s:", color="black", ms=4, lw=1, label="best predicted so far (val)")
    final = view.final if isinstance(view.final, dict) else {}
    end = (max(cycles) if cycles else 0) + 1
    for role, colour, marker in (("seed", "#1f77b4", "D"), ("final", "#d62728", "*")):
        brier = number((final.get(role) or {}).get("brier")) if isinstance(final.get(role), dict) else None
        if brier is not None:
            ax.scatter([end], [brier], s=90 if marker == "*" else 40, marker=marker, color=colour, zorder=4,
                       label=f"{role} {final.get('members', view.members)}-ensemble, measured (test)")
    ticks = list(cycles) + ([end] if final else [])
    ax.set_xticks(ticks)
    ax.set_xticklabels([("seed" if t == 0 else str(t)) for t in cycles] + (["deploy"] if final else []))
    ax.set_xlabel("cycle")
    ax.set_title("per cycle")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2)


def pareto(view: RunView) -> str | None:
    """Predicted error × parameters of every evaluated candidate, latency as colour when measured.
    The front: the population's archives when the run has them (ringed), else the candidates no
    other dominates on point estimates (a staircase in 2-D; ringed when latency is a third axis)."""
    pts = [c for c in view.candidates if c.predicted is not None and number(c.param_count)]
    if not pts:
        return None
    timed = [c for c in pts if c.latency is not None]
    archive = {cid for ids in current_archive(view).values() for cid in ids}
    if archive:
        front, label = [c for c in pts if c.id in archive], "in an island's archive now"
    else:
        keyed = timed or pts
        coords = [(c.predicted, float(c.param_count)) + ((c.latency,) if timed else ()) for c in keyed]
        front = [keyed[i] for i in pareto_front(coords)]
        label = "non-dominated (error, params, latency)" if timed else "non-dominated front"
    front.sort(key=lambda c: (c.param_count, c.predicted))
    with _figure(6.8, 4.2, right=0.1) as (fig, (ax,)):
        if timed:
            sc = ax.scatter([c.param_count for c in timed], [c.predicted for c in timed], c=[c.latency for c in timed],
                            cmap="viridis", norm="log", s=26, zorder=3)
            _plain_log_ticks(fig.colorbar(sc, ax=ax, label="latency, batch 1 (ms)").ax.yaxis)
            sc.set_urls([f"#c{c.id}" for c in timed])
            untimed = [c for c in pts if c.latency is None]
            if untimed:
                sc = ax.scatter([c.param_count for c in untimed], [c.predicted for c in untimed], s=20,
                                facecolor="none", edgecolor="#7f7f7f", label="no latency measured", zorder=3)
                sc.set_urls([f"#c{c.id}" for c in untimed])
        else:
            for status, colour in STATUS_COLOURS.items():
                mine = [c for c in pts if c.status == status]
                if mine:
                    sc = ax.scatter([c.param_count for c in mine], [c.predicted for c in mine], s=26, color=colour,
                                    label=status, zorder=3, alpha=0.8)
                    sc.set_urls([f"#c{c.id}" for c in mine])
        if archive or timed:
            ax.scatter([c.param_count for c in front], [c.predicted for c in front], s=90, facecolor="none",
                       edgecolor="black", linewidth=1.2, label=label, zorder=4)
        else:
            ax.step([c.param_count for c in front], [c.predicted for c in front], where="post", color="black", lw=1,
                    label=label, zorder=2)
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis, engineering=True)
        ax.set_ylim(top=_clip_top([c.predicted for c in pts], [c.predicted for c in front]))
        ax.set_xlabel("parameters (one member)")
        ax.set_ylabel(f"predicted {view.members}-ensemble Brier (val)")
        ax.legend(fontsize=7, loc="upper right")
        return _svg(fig)


def proposers(view: RunView) -> str | None:
    """Outcomes of every proposal, per proposer, over the whole run."""
    totals: dict[str, dict[str, int]] = {}
    for r in proposer_table(view):
        t = totals.setdefault(r["proposer"], {"accepted": 0, "rejected": 0, "failed": 0, "filtered": 0})
        t["accepted"] += r["accepted"]
        t["rejected"] += r["evaluated"] - r["accepted"]
        t["failed"] += sum(r["failed"].values())
        t["filtered"] += r["filtered"]
    if not totals:
        return None
    names = sorted(totals)
    with _figure(6.5, 1.3 + 0.4 * len(names), left=1.3, top=0.1, bottom=1.0) as (fig, (ax,)):
        left = np.zeros(len(names))
        for kind in ("accepted", "rejected", "failed", "filtered"):
            vals = np.array([totals[n][kind] for n in names], dtype=float)
            ax.barh([_text(n, 18) for n in names], vals, left=left, color=STATUS_COLOURS[kind], label=kind)
            left += vals
        ax.set_xlabel("proposals")
        ax.invert_yaxis()
        ax.legend(fontsize=7, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.55 / (0.4 * len(names) + 0.2)))
        ax.grid(axis="y", alpha=0)
        return _svg(fig)


def reliability(view: RunView) -> str | None:
    """The proxy-reliability diagnostic per cycle (docs/theory.md T6.6): predicted ρ_S and the SNR."""
    pts = [(c["cycle"], number((c.get("diagnostic") or {}).get("rho_s")), number((c.get("diagnostic") or {}).get("snr")))
           for c in view.cycles if isinstance(c.get("diagnostic"), dict)]
    pts = [p for p in pts if p[1] is not None]
    if not pts:
        return None
    with _figure(6.5, 3.0, right=0.85, top=0.15) as (fig, (ax,)):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#1f77b4", label="predicted Spearman ρ_S")
        ax.axhline(0.8, color="#d62728", lw=0.8, ls="--", label="warning below 0.8")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("cycle")
        ax.set_ylabel("ρ_S")
        ax.set_xticks([p[0] for p in pts])
        snr = [(p[0], p[2]) for p in pts if p[2] is not None and p[2] > 0 and math.isfinite(p[2])]
        if snr:
            bx = ax.twinx()
            bx.plot([s[0] for s in snr], [s[1] for s in snr], "s--", color="#ff7f0e", ms=4, label="SNR")
            bx.set_yscale("log")
            _plain_log_ticks(bx.yaxis)
            bx.set_ylabel("SNR = σ²_arch / σ²_noise")
            bx.grid(False)
            bx.legend(fontsize=7, loc="lower right")
        ax.legend(fontsize=7, loc="lower left")
        return _svg(fig)


TIME_LABELS = {"proposal": "generation (proposers)", "sandbox": "sandbox overhead", "training": "training",
               "ce_update": "CE update", "store": "store"}


def time_split(view: RunView) -> str | None:
    items = [(k, v) for k, v in view.timings.items() if v > 0]
    if not items:
        return None
    items.sort(key=lambda kv: list(TIME_LABELS).index(kv[0]) if kv[0] in TIME_LABELS else 99)
    total = sum(v for _, v in items)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#17becf"]
    with _figure(6.5, 1.9, left=0.3, right=0.3, top=0.1, bottom=1.3) as (fig, (ax,)):
        left = 0.0
        for i, (k, v) in enumerate(items):
            ax.barh([0], [v], left=left, color=palette[i % len(palette)],
                    label=f"{TIME_LABELS.get(k) or _text(k)} {v:.0f} s ({v / total:.0%})")
            left += v
        ax.set_yticks([])
        ax.set_xlabel("seconds (summed over workers)")
        ax.grid(axis="y", alpha=0)
        ax.legend(fontsize=7, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -1.0))
        return _svg(fig)
