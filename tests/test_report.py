"""`ensnas report`: the page's structure, escaping of everything a candidate or model wrote, sections
that come and go with the data, and a report that never breaks a run. Fast: stores written
through the store API from untrained predictions (the browser test renders a real run)."""
from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.report import render, refresh_report, write_report
from agent.report import charts
from agent.report import data as report_data
from agent.report.data import ancestry, pareto_front
from agent.store import RunStore
from tests.report_store import PAYLOAD, add_hostile_rows, synthetic_store

MAIN_SECTIONS = ["summary", "progress", "proposers", "pareto", "lineage", "diagnostics", "candidates"]


class Elements(HTMLParser):
    """Every element the browser's parser would create with its attributes (`all`; `elements`:
    those outside inline SVG, whose layout depends on label lengths), and all text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.all: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.svg_depth = 0
        self.svgs = 0
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.svg_depth += 1
            self.svgs += 1
        self.handle_startendtag(tag, attrs)

    def handle_startendtag(self, tag, attrs):
        self.all.append((tag, dict(attrs)))
        if self.svg_depth == 0:
            self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svg_depth -= 1

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.all.append(("#comment", {"data": data}))

    def tags(self, name: str) -> list[dict]:
        return [a for t, a in self.elements if t == name]

    def shape(self) -> list[tuple]:
        return [(t, tuple(sorted(a))) for t, a in self.elements]


def _render(store: RunStore) -> str:
    return render(report_data.load(store))


@pytest.fixture()
def store(tmp_path) -> RunStore:
    return synthetic_store(tmp_path / "run")


def test_every_main_section_and_every_candidate_is_on_the_page(store):
    page = _render(store)
    doc = Elements(page)
    ids = {a.get("id") for _, a in doc.elements}
    assert set(MAIN_SECTIONS) <= ids
    rows = store.candidates()
    assert {f"c{r.id}" for r in rows} <= ids
    hrefs = [a.get("href") for a in doc.tags("a")]
    # the lineage and the listing link every candidate to its section
    assert all(hrefs.count(f"#c{r.id}") >= 2 for r in rows)
    assert doc.svgs >= 4  # progress, proposers, pareto, reliability, time split
    assert any(r.status == "accepted" for r in rows), "the synthetic run should accept something"
    inc = store.get_state("incumbent")
    assert re.search(rf'href="#c{inc}">#{inc}</a>[^<]*<span class="st st-accepted"', page)


def test_self_contained_and_locked_down(store):
    page = _render(store)
    doc = Elements(page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page), "nothing may load from a network"
    csp = [a["content"] for a in doc.tags("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and page.index("Content-Security-Policy") < page.index("<title>")
    nonce = re.search(r"'nonce-([^']+)'", csp[0]).group(1)
    assert "default-src 'none'" in csp[0] and "unsafe-inline" not in csp[0].split("script-src")[1].split(";")[0]
    assert [s.get("nonce") for s in doc.tags("script")] == [nonce]
    assert nonce not in _render(store), "a fresh nonce per page"


def test_candidate_and_model_text_is_never_markup(store):
    """The class of defect: any untrusted string becoming markup. The page with hostile text in
    every free-text field (source, diff, failure reason and detail, LLM output, prompt, attempts,
    proposer name, decision, statistics, config, timings, extra tables) must have exactly the element
    structure of the same page with that text replaced by a plain word."""
    add_hostile_rows(store, "A")  # sorts where the payload does (before every real proposer name)
    benign = Elements(_render(store))
    hostile_dir = Path(store.dir).parent / "hostile"
    hostile = synthetic_store(hostile_dir)
    add_hostile_rows(hostile, PAYLOAD)
    page = _render(hostile)
    doc = Elements(page)
    assert doc.shape() == benign.shape()
    assert len(doc.tags("script")) == 1
    for tag, attrs in doc.all:  # the charts too: a proposer name is a label in them
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not any(str(v).strip().lower().startswith("javascript:") for v in attrs.values()), (tag, attrs)
    assert not {t for t, _ in doc.all} & {"pwned-marker", "iframe", "img", "base", "foreignobject", "#comment"}
    text = "".join(doc.text)
    assert "<pwned-marker></pwned-marker>" in text and "--><!-- <script>" in text  # shown, as text
    assert not any("data-pwned" in attrs for _, attrs in doc.all)
    assert [t for t, _ in doc.all if t == "script"] == ["script"]


@pytest.mark.parametrize("name", ["$x$", "$\\frac{", "a$b$c$", "\\", "{{x}}", "<b>", "é中\u202e"])
def test_any_proposer_name_renders(tmp_path, name):
    """Names reach matplotlib as labels: mathtext must never parse (or fail on) them."""
    store = synthetic_store(tmp_path / "run", cycles=1)
    with store.transaction() as db:
        db.execute("UPDATE candidates SET proposer = ? WHERE proposer = 'random'", (name,))
    view = report_data.load(store)
    for chart in (charts.progress, charts.proposers, charts.pareto):
        assert chart(view).startswith("<svg")


def test_sections_follow_the_data(tmp_path):
    empty = RunStore(tmp_path / "empty", create=True)
    page = _render(empty)
    ids = {a.get("id") for _, a in Elements(page).elements}
    assert "summary" in ids and not ids & {"progress", "pareto", "lineage", "candidates", "tables"}

    store = synthetic_store(tmp_path / "run")
    page = _render(store)
    assert "Not deployed yet" in page and 'id="tables"' not in page
    assert "no latency measured in this run" in page and "island 0" not in page and "Bandit allocation" not in page

    store = synthetic_store(tmp_path / "population", population=True)
    rows = [r for r in store.candidates() if r.statistics]
    with store.transaction() as db:
        db.execute("CREATE TABLE future_thing(x INTEGER, y TEXT)")  # a table no section knows yet
        db.execute("INSERT INTO future_thing VALUES(1, 'hello')")
        store.set_state("bandit_debug", {"allocation": {"llm": 0.7, "evolution": 0.3}}, db)
        store.set_state("final_report", {"members": 5, "seed_id": rows[0].id, "final_id": rows[-1].id,
                                         "final": {"brier": 0.1, "accuracy": 0.9}, "seed": {"brier": 0.2, "accuracy": 0.8},
                                         "test_brier_gain": 0.1, "export_dir": "export"}, db)
    decided = next(r for r in rows if r.decision)
    with store.transaction() as db:
        store.set_decision(db, decided.id, accepted=decided.status == "accepted",
                           decision=dict(decided.decision, method="sequential", stage=[2, 3],
                                         looks=[{"instances": k, "gain": 0.01, "se": 0.004, "df": k - 1.0,
                                                 "statistic": 2.5, "critical": 3.1, "futility": 0.4,
                                                 "outcome": "more" if k < 4 else "reject"} for k in (3, 4)],
                                         instances={"candidate": 5, "candidate_trained": [2, 3, 4],
                                                    "incumbent_trained": [4]}))
    page = _render(store)
    assert 'id="tables"' in page and "future_thing (1 rows)" in page and "state bandit_debug" in page
    assert "islands' Pareto archives" in page and "<h3>island 0:" in page and "<h3>island 1:" in page
    assert "former archive members" in page and "dominated by #" in page
    assert "Bandit allocation" in page and "evolution:mutate" in page
    assert "latency b1 / b256 (ms)" in page and "latency, batch 1 (ms)" in page
    assert "instances trained for it</th><td>candidate 3, incumbent 1" in page and "(candidate holds 5)" in page
    assert "<th>method</th><td>sequential</td>" in page and "<code>[2, 3]</code>" in page
    assert "2 looks of the sequential test" in page and "<td>reject</td>" in page
    assert "1 decisions, 6.00 instances per decision (candidate 5.00, incumbent 1.00); decided at paired " \
           "instances {4: 1}" in page
    assert "Test Brier gain over the seed: <b>+0.1000</b>" in page and str(store.dir / "export") in page


def test_pareto_front_is_the_population_modules_dominance():
    """Against agent.population.pareto (pairwise, exact costs) in 2 and 3 objectives, and a sort-and-
    sweep in 2, on points with many ties."""
    from agent.population.pareto import compare_cost, dominates
    rng = np.random.default_rng(0)
    for dims in (2, 3):
        for _ in range(40):
            pts = [tuple(p) for p in rng.integers(0, 6, size=(int(rng.integers(1, 30)), dims)).astype(float)]
            brute = [i for i, p in enumerate(pts)
                     if not any(dominates({k: compare_cost(b, a) for k, (a, b) in enumerate(zip(p, q))})
                                for j, q in enumerate(pts) if j != i)]
            assert pareto_front(pts) == brute
            if dims == 2:
                best, sweep = np.inf, set()
                for i in sorted(range(len(pts)), key=lambda i: pts[i]):  # by x, then y
                    if pts[i][1] < best or any(pts[j] == pts[i] for j in sweep):
                        sweep.add(i)
                        best = min(best, pts[i][1])
                assert set(brute) == sweep


def test_the_tree_shows_every_row_once_whatever_the_parent_ids(store):
    rows = store.candidates()
    with store.transaction() as db:  # forward, self and dangling parents: a corrupt or foreign store
        db.execute("UPDATE candidates SET parent_id = ? WHERE id = ?", (rows[-1].id, rows[2].id))
        db.execute("UPDATE candidates SET parent_id = id WHERE id = ?", (rows[3].id,))
        db.execute("UPDATE candidates SET parent_id = 9999 WHERE id = ?", (rows[4].id,))
    view = report_data.load(store)
    children, _ = ancestry(view)
    listed = [k for kids in children.values() for k in kids]
    assert sorted(listed) == sorted(r.id for r in rows)
    page = render(view)
    tree = page[page.index('id="tree"'):page.index("</ul></section>")]
    assert sorted(int(x) for x in re.findall(r'<li[^>]*><a href="#c(\d+)"', tree)) == sorted(r.id for r in rows)


def test_a_long_chain_renders_without_recursion(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    with store.transaction() as db:
        parent = None
        for i in range(3000):
            parent = store.insert_candidate(db, cycle=1, proposer="evolution", parent_id=parent, source="x", diff="",
                                            status="accepted" if i == 2999 else "rejected")
    page = _render(store)
    assert page.count('<li class="n-') == 3000


def test_a_report_failure_never_breaks_the_caller(store, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="ensnas"):
        assert refresh_report(store, blocker / "report.html") is None  # OSError
        monkeypatch.setattr("agent.report.page.render", lambda view: 1 / 0)
        assert refresh_report(store) is None  # any bug in rendering
    assert "ZeroDivisionError" in caplog.text and "report not written" in caplog.text
    assert not (store.dir / "report.html").exists()


def test_cli_writes_atomically_and_fails_with_a_typed_error(store, tmp_path, capsys):
    out = tmp_path / "page" / "r.html"
    assert main(["report", str(store.dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]  # no temporary left behind
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not an ensnas run directory" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["report", str(store.dir), "--out", str(blocker / "r.html")]) == 2
    assert "cannot write the report" in capsys.readouterr().err


def test_default_location_is_the_run_directory(store):
    assert write_report(store) == store.dir / "report.html"


def test_an_empty_or_corrupt_database_is_one_line_exit_2_and_nothing_is_written(tmp_path, capsys):
    """As for the other read commands (tests/test_run_dir.py): a typed error, the run untouched."""
    import os
    from tests.test_run_dir import _store_only_run
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.sqlite").write_bytes(b"")
    assert main(["report", str(empty)]) == 2
    assert "run.sqlite is empty" in capsys.readouterr().err
    assert [p.name for p in empty.iterdir()] == ["run.sqlite"]

    corrupt = tmp_path / "corrupt"
    _store_only_run(corrupt, candidates=200, source_bytes=2000)
    db = corrupt / "run.sqlite"
    data = bytearray(db.read_bytes())
    for start in range(len(data) // 3 // 4096 * 4096, 2 * len(data) // 3, 4096):  # the middle third
        data[start:start + 4096] = os.urandom(4096)
    db.write_bytes(bytes(data))
    before = sorted(p.name for p in corrupt.iterdir())
    assert main(["report", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "restore run.sqlite" in err
    assert sorted(p.name for p in corrupt.iterdir()) == before  # no report.html, no -wal/-shm


def test_fields_of_unexpected_shape_render_as_text_not_errors(store):
    """An older or newer writer may store other shapes: a field that is not what this report
    expects shows as text or is left out; the page still renders."""
    rows = store.candidates()
    with store.transaction() as db:
        db.execute("UPDATE candidates SET statistics = ?, decision = ?, meta = ?, diff = NULL, source = NULL,"
                   " param_count = NULL WHERE id = ?", ('{"member_error": "x", "diversity": null}', "[1, 2]", '"text"',
                                                       rows[1].id))
        db.execute("UPDATE candidates SET statistics = ?, decision = ? WHERE id = ?",
                   ('{"member_error": 0.2, "diversity": 0.01, "instances": "two"}',
                    '{"delta": "big", "lower_bound": null, "accept": true}', rows[2].id))
        db.execute("UPDATE cycles SET diagnostic = ? WHERE cycle = 1", ('"not a dict"',))
        db.execute("UPDATE cycles SET diagnostic = ? WHERE cycle = 2", ('{"rho_s": "high", "snr": -1}',))
        store.set_state("timings", {"proposal": "slow", "training": 3.0}, db)
        store.set_state("final_report", {"final": "x", "seed": {"failed": "timeout", "detail": "<b>"}}, db)
        store.set_state("incumbent", "seven", db)
    page = _render(store)
    ids = {a.get("id") for _, a in Elements(page).elements}
    assert set(MAIN_SECTIONS) <= ids
    assert "failed: timeout: &lt;b&gt;" in page and "<td>big</td>" in page
