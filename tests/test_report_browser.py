"""The report of a real run, opened in headless Chromium: it renders (a screenshot that is not
blank), its sections are in the DOM the browser built, its own script runs under the page's CSP,
and text a candidate or a model wrote never executes. CI installs Debian's `chromium`; a missing
browser fails there instead of skipping."""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.report import write_report
from agent.store import RunStore
from tests.conftest import _unavailable
from tests.report_store import PAYLOAD, add_hostile_rows
from tests.test_loop import FAST_TASK
from tests.test_report import MAIN_SECTIONS

pytestmark = pytest.mark.integration

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,2000"]


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _unavailable("chromium (apt-get install chromium)", "no chromium on PATH")
    return path


def browse(chromium: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless Chromium run on a fresh profile; `args`: --dump-dom or --screenshot=PNG."""
    with tempfile.TemporaryDirectory(prefix="ensnas-chromium-") as profile:
        out = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=180, cwd=profile)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


class Dom(HTMLParser):
    """The elements of a serialized DOM: (tag, attributes) in document order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.elements if a.get("id")}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, cache_dir) -> tuple[Path, str]:
    """`ensnas run`: two cycles of random + evolution on digits with a 2-epoch proxy, subprocess
    sandbox, deployed as 3-member ensembles. Returns the run dir and what the command printed."""
    base = tmp_path_factory.mktemp("report-run")
    task = base / "task.yaml"
    task.write_text(FAST_TASK)
    run_dir = base / "run"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv("ENSNAS_CACHE", str(cache_dir))
        code = main(["run", "--task", str(task), "--cycles", "2", "--proposer", "random", "--proposer", "evolution",
                     "--candidates", "2", "--sandbox", "subprocess", "--members", "3", "--quiet",
                     "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir, stdout.getvalue()


def test_the_run_writes_its_report_and_chromium_renders_it(real_run, chromium, tmp_path):
    run_dir, printed = real_run
    page = run_dir / "report.html"
    assert printed.count(f"report: {page}") == 2  # `ensnas run` says where its report is, at the start and the end
    store = RunStore(run_dir)
    rows = store.candidates()
    assert store.get_state("final_report") and "Test Brier gain over the seed" in page.read_text()

    shot = tmp_path / "report.png"
    browse(chromium, page, f"--screenshot={shot}")
    import matplotlib.image
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 0.05  # not a blank page
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, charts, status badges

    dom = Dom(browse(chromium, page, "--dump-dom").stdout)
    ids = dom.ids()
    assert set(MAIN_SECTIONS) <= ids
    assert {f"c{r.id}" for r in rows} <= ids  # every candidate has its section
    assert sum(t == "svg" for t, _ in dom.elements) >= 4
    text = "".join(dom.text)
    assert re.search(rf"{len(rows)} of {len(rows)} shown", text), "the page's own script ran under its CSP"


def test_text_from_a_candidate_or_a_model_never_executes(real_run, chromium, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(real_run[0], run_dir)
    store = RunStore(run_dir)
    hostile = add_hostile_rows(store, PAYLOAD)
    page = write_report(store)

    # The harness can see an executed script: a control page whose script sets the same marker.
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><html><body><script>document.documentElement.setAttribute('data-pwned','control')"
                       "</script><img src=x onerror=\"document.documentElement.setAttribute('data-img','1')\"></body></html>")
    seen = browse(chromium, control, "--dump-dom").stdout
    assert 'data-pwned="control"' in seen and 'data-img="1"' in seen

    out = browse(chromium, page, "--dump-dom").stdout
    dom = Dom(out)
    assert not any("data-pwned" in a for _, a in dom.elements), "a hostile string executed"
    tags = [t for t, _ in dom.elements]
    assert not set(tags) & {"pwned-marker", "iframe", "img", "base"}
    assert tags.count("script") == 1
    for tag, attrs in dom.elements:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not any(v and v.strip().lower().startswith("javascript:") for v in attrs.values()), (tag, attrs)
    ids = dom.ids()
    assert {f"c{i}" for i in hostile} <= ids and "pwned-link" not in ids
    text = "".join(dom.text)
    assert text.count("<pwned-marker></pwned-marker>") >= len(hostile)  # shown as text, every time
    shot = tmp_path / "hostile.png"
    browse(chromium, page, f"--screenshot={shot}")
    import matplotlib.image
    assert matplotlib.image.imread(shot)[..., :3].std() > 0.05  # <style>body{display:none}</style> did nothing
