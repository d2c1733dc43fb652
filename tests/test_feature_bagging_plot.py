"""U-curve plots: a real PNG and a self-contained interactive HTML from benchmark-shaped results."""
from __future__ import annotations

import re

import numpy as np

from agent.u_curve_plot import DENSE, panels, plot_results
from theory.feature_bagging_fit import fit_feature_bagging

GRID = [1.0, 0.8, 0.6, 0.4, 0.2]


def _results() -> dict:
    p = np.array(GRID)
    rho = 0.7 * p
    fit = fit_feature_bagging(p, 0.2 + 0.08 * (1 - p) ** 2, rho, np.full_like(p, 0.05),
                              diversity=(1 - rho) * 0.05, model="paper")
    rng = np.random.default_rng(0)
    out = {"task": "toy", "grid": GRID, "seeds": 3, "sweep": {}, "verify": {}}
    for q in GRID:
        out["sweep"][str(q)] = {str(m): {"val_brier": list(fit.ensemble_error(q, m) + rng.normal(0, 1e-3, 3))}
                                for m in (5, 10)}
    for m in (5, 10):
        info = fit.summary(m)
        info["measured_at_p_star"] = {"val_brier": [info["e_ens_star"] + 1e-3] * 3}
        out["verify"][str(m)] = {"models": {"paper": info}}
    return {"scale": "toy", "results": [out]}


def test_panels_carry_the_fitted_curve_and_p_star():
    data = _results()
    ps = panels(data)
    assert [p.title for p in ps] == ["toy, M = 5", "toy, M = 10"]
    for panel, m in zip(ps, (5, 10)):
        fit = panel.fits["paper"]
        assert fit["p_star"] == data["results"][0]["verify"][str(m)]["models"]["paper"]["p_star"]
        # the drawn curve's minimum sits at p* (to the dense grid's resolution)
        assert abs(DENSE[int(np.argmin(fit["curve"]))] - fit["p_star"]) <= 0.011
        assert panel.measured_at_p_star["paper"][0] == fit["p_star"]


def test_png_and_offline_html(tmp_path):
    png, page = plot_results(_results(), tmp_path, stem="toy")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = page.read_text()
    assert text.count("<svg") == 2 and text.count("class=\"s-paper\"") == 2
    assert "p* = " in text and "<script>" in text
    assert not re.search(r"(src|href)=\"?https?:", text)  # nothing fetched from a CDN
