"""Plots of the feature-bagging U-curve: measured M-ensemble error against the fitted T3 curves,
with p* marked. A PNG (matplotlib) and a self-contained interactive HTML (inline SVG + a few
lines of JS: hover read-outs, click a legend entry to hide a series; no CDN, works offline).

Input is the JSON that benchmarks/feature_bagging.py writes (see `panels` for what is read).
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COLOURS = {"measured": "#222222", "paper": "#d62728", "affine": "#1f77b4", "diversity": "#2ca02c",
           "at_p_star": "#9467bd"}
DENSE = np.linspace(0.1, 1.0, 91)


@dataclass
class Panel:
    """One (task, M) panel: the measured curve and each fitted model's curve and p*."""
    title: str
    seeds: int
    grid: list[float]
    mean: list[float]
    sd: list[float]
    fits: dict[str, dict] = field(default_factory=dict)        # model -> {"p_star", "curve" (on DENSE)}
    measured_at_p_star: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # model -> (p*, mean, sd)


def _curve(info: dict, members: int) -> list[float]:
    """The fitted E_ens on DENSE from the summary's parameters: E(p) - ((M-1)/M) D(p)."""
    k = (members - 1) / members
    q = 1 - DENSE
    return list(info["e0"] + info["c"] * q ** 2 - k * (info["d1"] + info["g"] * q))


def panels(data: dict) -> list[Panel]:
    out = []
    for r in data["results"]:
        for m, entry in r["verify"].items():
            vals = [r["sweep"][str(p)][m]["val_brier"] for p in r["grid"]]
            panel = Panel(title=f"{r['task']}, M = {m}", seeds=int(r["seeds"]), grid=list(r["grid"]),
                          mean=[float(np.mean(v)) for v in vals], sd=[float(np.std(v)) for v in vals])
            for model, info in entry["models"].items():
                panel.fits[model] = {"p_star": info["p_star"], "curve": _curve(info, int(m)),
                                     "e_ens_star": info["e_ens_star"]}
                meas = info.get("measured_at_p_star")
                if meas:
                    panel.measured_at_p_star[model] = (info["p_star"], float(np.mean(meas["val_brier"])),
                                                       float(np.std(meas["val_brier"])))
            out.append(panel)
    return out


def write_png(ps: list[Panel], path: Path, columns: int = 3) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(ps) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, ps):
        ax.errorbar(panel.grid, panel.mean, yerr=panel.sd, fmt="o-", color=COLOURS["measured"],
                    capsize=3, label=f"measured (mean ± sd, {panel.seeds} seeds)")
        for model, fit in panel.fits.items():
            ax.plot(DENSE, fit["curve"], "--", color=COLOURS[model], label=f"fit: {model}")
            ax.axvline(fit["p_star"], color=COLOURS[model], alpha=0.5, lw=1)
        for model, (p, mean, sd) in panel.measured_at_p_star.items():
            ax.errorbar([p], [mean], yerr=[sd], fmt="*", ms=13, color=COLOURS[model], mec="black",
                        label=f"measured at {model} p*")
        lo, hi = min(panel.mean) - 2 * max(panel.sd), max(panel.mean) + 2 * max(panel.sd)
        ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
        ax.set_title(panel.title)
        ax.set_xlabel("feature fraction p")
        ax.set_ylabel("ensemble Brier (validation)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(ps):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _svg_panel(panel: Panel, idx: int, w: int = 420, h: int = 300) -> str:
    pad_l, pad_r, pad_t, pad_b = 58, 12, 26, 40
    ys = panel.mean + [panel.mean[i] + s for i, s in enumerate(panel.sd)] + [m - s for m, s in zip(panel.mean, panel.sd)]
    lo, hi = min(ys), max(ys)
    lo, hi = lo - 0.15 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9)

    def sx(p: float) -> float:
        return pad_l + (p - 0.1) / 0.9 * (w - pad_l - pad_r)

    def sy(v: float) -> float:
        return pad_t + (hi - min(max(v, lo), hi)) / (hi - lo) * (h - pad_t - pad_b)

    parts = [f'<svg width="{w}" height="{h}" class="panel" id="panel{idx}">',
             f'<text x="{w / 2}" y="16" text-anchor="middle" font-weight="bold">{html.escape(panel.title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w - pad_l - pad_r}" height="{h - pad_t - pad_b}" fill="none" stroke="#999"/>']
    for t in np.linspace(lo, hi, 5):
        parts.append(f'<text x="{pad_l - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="10">{t:.4f}</text>')
    for t in (0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(f'<text x="{sx(t):.1f}" y="{h - pad_b + 14}" text-anchor="middle" font-size="10">{t:.1f}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle" font-size="11">feature fraction p</text>')
    for model, fit in panel.fits.items():
        pts = " ".join(f"{sx(p):.1f},{sy(v):.1f}" for p, v in zip(DENSE, fit["curve"]))
        c = COLOURS[model]
        parts.append(f'<g class="s-{model}"><polyline points="{pts}" fill="none" stroke="{c}" stroke-dasharray="5,3" stroke-width="1.5"/>'
                     f'<line x1="{sx(fit["p_star"]):.1f}" x2="{sx(fit["p_star"]):.1f}" y1="{pad_t}" y2="{h - pad_b}" stroke="{c}" opacity="0.5"/>'
                     f'<circle cx="{sx(fit["p_star"]):.1f}" cy="{sy(fit["e_ens_star"]):.1f}" r="4" fill="{c}" '
                     f'data-tip="{model} fit: p* = {fit["p_star"]:.3f}, predicted E_ens* = {fit["e_ens_star"]:.5f}"/></g>')
    meas = " ".join(f"{sx(p):.1f},{sy(v):.1f}" for p, v in zip(panel.grid, panel.mean))
    parts.append(f'<g class="s-measured"><polyline points="{meas}" fill="none" stroke="{COLOURS["measured"]}" stroke-width="1.5"/>')
    for p, m, s in zip(panel.grid, panel.mean, panel.sd):
        parts.append(f'<line x1="{sx(p):.1f}" x2="{sx(p):.1f}" y1="{sy(m - s):.1f}" y2="{sy(m + s):.1f}" stroke="{COLOURS["measured"]}"/>'
                     f'<circle cx="{sx(p):.1f}" cy="{sy(m):.1f}" r="4" fill="{COLOURS["measured"]}" '
                     f'data-tip="measured: p = {p:.2f}, E_ens = {m:.5f} ± {s:.5f}"/>')
    parts.append("</g>")
    for model, (p, m, s) in panel.measured_at_p_star.items():
        parts.append(f'<g class="s-at_p_star s-{model}"><rect x="{sx(p) - 5:.1f}" y="{sy(m) - 5:.1f}" width="10" height="10" '
                     f'fill="{COLOURS[model]}" stroke="black" data-tip="measured at {model} p* = {p:.3f}: '
                     f'E_ens = {m:.5f} ± {s:.5f} ({panel.seeds} seeds)"/></g>')
    parts.append("</svg>")
    return "".join(parts)


_SCRIPT = """
const tip = document.getElementById('tip');
document.querySelectorAll('[data-tip]').forEach(el => {
  el.addEventListener('mousemove', e => { tip.textContent = el.dataset.tip; tip.style.display = 'block';
    tip.style.left = (e.pageX + 12) + 'px'; tip.style.top = (e.pageY + 12) + 'px'; });
  el.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
});
document.querySelectorAll('.legend span').forEach(item => {
  item.addEventListener('click', () => { item.classList.toggle('off');
    document.querySelectorAll('.s-' + item.dataset.series).forEach(g =>
      g.style.display = item.classList.contains('off') ? 'none' : ''); });
});
"""


def write_html(ps: list[Panel], path: Path, meta: dict | None = None) -> Path:
    series = ["measured", "paper", "affine", "diversity", "at_p_star"]
    legend = "".join(f'<span data-series="{s}" style="color:{COLOURS[s]}">■ {s.replace("_", " ")}</span>' for s in series)
    body = "".join(_svg_panel(p, i) for i, p in enumerate(ps))
    info = html.escape(json.dumps(meta or {}))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Feature bagging U-curve</title>
<style>body{{font-family:sans-serif;margin:16px}} .panel{{margin:6px;background:#fff}}
.legend span{{cursor:pointer;margin-right:14px;user-select:none}} .legend span.off{{opacity:.3}}
#tip{{position:absolute;display:none;background:#ffe;border:1px solid #999;padding:3px 6px;font-size:12px;pointer-events:none}}</style>
</head><body><h2>Measured M-ensemble error vs the fitted closed form (docs/theory.md T3)</h2>
<p class="legend">Click to hide/show: {legend}</p><div>{body}</div><div id="tip"></div>
<p style="font-size:11px;color:#555">Vertical lines: p* of each fitted model. Scale: {info}</p>
<script>{_SCRIPT}</script></body></html>"""
    path.write_text(page)
    return path


def plot_results(data: dict, out_dir: Path, *, stem: str = "feature_bagging") -> list[Path]:
    """Write STEM.png and STEM.html under out_dir from a benchmark results dict."""
    ps = panels(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_png(ps, out_dir / f"{stem}.png"), write_html(ps, out_dir / f"{stem}.html", {"scale": data.get("scale")})]
