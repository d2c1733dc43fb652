"""No file the sandbox can see holds a task's validation or test labels: searched by content, on
every task and both hardened backends, with a positive control proving the search finds them.

The hostile program (tests/hostile/search_labels.py) walks the whole visible filesystem and
looks for windows of the held-out labels in many encodings and for fingerprints of the raw
dataset files (tests/label_needles.py). Before the allow-listed runtime (sandbox.runtime_view)
it found sklearn's digits.csv.gz and /usr/share/datasets/fashion-mnist/*labels* on both backends.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluator.failures import FailureReason as R
from sandbox import Limits, make_sandbox
from tests.label_needles import needles_for, program, write_small_table

TASKS = ["digits", "fashion-mnist", "mnist1d", "adult", "movielens", "tabular"]
LIMITS = Limits(timeout_s=900, memory_mb=3072, max_output_bytes=64 << 10)


def summary(detail: str) -> dict:
    assert "LABEL-SEARCH" in detail, detail[-800:]
    return json.loads(detail.split("LABEL-SEARCH", 1)[1])


@pytest.fixture(scope="module")
def tabular_csv(tmp_path_factory) -> Path:
    return write_small_table(tmp_path_factory.mktemp("tabular") / "clicks.csv")


@pytest.fixture(scope="module")
def tasks(cache_dir, tabular_csv):
    """name -> (task, data, needles), materialised on first use."""
    from evaluator.task_data import materialize
    from evaluator.tasks import get_task
    made = {}

    def get(name: str):
        if name not in made:
            task = get_task(name, data_path=str(tabular_csv) if name == "tabular" else None)
            task = task.model_copy(update={"budget": task.budget.model_copy(update={"epochs": 1})})
            data = materialize(task, cache_dir)
            made[name] = task, data, needles_for(task, data)
        return made[name]
    return get


def _evaluator(task, sandbox, cache_dir):
    from evaluator.evaluate import Evaluator
    return Evaluator(task=task, sandbox=sandbox, limits=LIMITS, cache_dir=cache_dir)


def _hardened(kind: str, request):
    if kind == "docker":
        return request.getfixturevalue("docker_sandbox")
    sandbox = make_sandbox("process")
    if not sandbox.isolation().get("filesystem"):
        pytest.skip(f"no namespaces on this kernel: {sandbox.isolation()['problems']}")
    return sandbox


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.parametrize("kind", ["process", "docker"])
@pytest.mark.parametrize("name", TASKS)
def test_no_visible_file_holds_the_labels(kind, name, tasks, cache_dir, request):
    task, data, needles = tasks(name)
    result = _evaluator(task, _hardened(kind, request), cache_dir).evaluate(program(needles, ["/"]))
    found = summary(result.detail)
    print(f"\nLABEL-SEARCH | {name} | {kind} | hits {found['hit_count']} | {found['files']} files, "
          f"{found['bytes'] / 2**20:.0f} MiB, {found['members']} archive members, {found['tables']} tables read")
    assert result.reason == R.build_error and "labels not reachable" in result.detail, found["hits"]
    assert found["files"] > 1000 and found["bytes"] > 100 << 20  # it really read the runtime it can see


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_search_finds_the_labels_without_isolation(name, tasks, cache_dir):
    """Positive control: the same program, unisolated, finds labels.npz and every raw dataset file
    (searching their directories by content), and nothing in the sandbox-visible inputs."""
    task, data, needles = tasks(name)
    roots = sorted({str(data.inputs_dir.parent)} | {str(p.parent) for p in needles.files})
    result = _evaluator(task, make_sandbox("subprocess"), cache_dir).evaluate(program(needles, roots))
    found = summary(result.detail)
    print(f"\nLABEL-SEARCH control | {name} | hits {found['hit_count']}: {sorted(found['hits'])}")
    assert "LABELS FOUND" in result.detail
    hit_files = {where.split("!")[0] for where in found["hits"]}   # the program reports each path's last 100 chars
    for path in needles.files:
        assert any(str(path).endswith(hit) for hit in hit_files), f"the search missed {path}: {found['hits']}"
    assert not any(w.startswith(str(data.inputs_dir)) for w in found["hits"]), "a needle matched visible inputs"


# -- a dataset package installed into the venv stays out ----------------------------------------

FAKE_PACKAGE = "ensnas_fake_dataset"


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, tasks):
    """A new venv that uses this one's packages (a .pth line), plus a dataset package installed into
    it: a module and the digits task's validation labels as CSV and .npy files."""
    root = tmp_path_factory.mktemp("venv")
    root.chmod(0o755)
    venv = root / "venv"
    subprocess.run([sys.base_prefix + "/bin/python3" if os.path.exists(sys.base_prefix + "/bin/python3")
                    else sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    import sysconfig
    (site / "ensnas_main.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _, data, _ = tasks("digits")
    package = site / FAKE_PACKAGE
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("from pathlib import Path\nLABELS = Path(__file__).parent / 'data'\n")
    (package / "data" / "labels.csv").write_text("label\n" + "\n".join(map(str, data.y_val)) + "\n")
    np.save(package / "data" / "y_val.npy", data.y_val)
    for p in [root, *root.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    python = str(venv / "bin" / "python")
    yield python, package
    from sandbox.runtime_view import _tree_for, default_runtime_cache
    shutil.rmtree(_tree_for(python, str(default_runtime_cache())), ignore_errors=True)  # its view in the cache


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.parametrize("kind", ["process", "docker"])
def test_newly_installed_dataset_package_stays_out(kind, fresh_venv, tasks, cache_dir, request):
    python, package = fresh_venv
    task, data, needles = tasks("digits")
    from sandbox.runtime_view import runtime_view
    view = runtime_view(python)
    assert not any((view.root / str(package).lstrip("/")).rglob("*")), "the dataset package is in the view"
    assert (view.root / str(package.parent).lstrip("/")).is_dir()  # its site-packages is (with torch in reach)
    if kind == "docker":
        sandbox = make_sandbox("docker", python=python)
        request.getfixturevalue("docker_sandbox")  # skips (or fails in CI) without a daemon
    else:
        sandbox = make_sandbox("process", python=python)
    evaluator = _evaluator(task, sandbox, cache_dir)
    imported = evaluator.evaluate(f"import {FAKE_PACKAGE}\n" + task.seed_source())
    assert imported.reason == R.import_error and FAKE_PACKAGE in imported.detail, imported.detail
    found = summary(evaluator.evaluate(program(needles, ["/"])).detail)
    print(f"\nLABEL-SEARCH fresh venv | {kind} | hits {found['hit_count']} | {found['files']} files")
    assert found["hit_count"] == 0 and found["files"] > 1000, found["hits"]
    # control: without isolation the same interpreter imports it and the search finds its labels
    plain = _evaluator(task, make_sandbox("subprocess"), cache_dir)
    subprocess_view = plain.evaluate(program(needles, [str(package)]))
    hits = summary(subprocess_view.detail)["hits"]
    assert any("labels.csv" in w for w in hits) and any("y_val.npy" in w for w in hits), hits


def test_allow_list_keeps_package_code_and_drops_data(tmp_path):
    """The rule on a synthetic runtime: an imported package's code (not its data), nothing of a
    package that was never imported, opened files and the venv's configuration."""
    from sandbox.runtime_view import allow_list
    prefix = tmp_path / "venv"
    site = prefix / "lib" / "python3.11" / "site-packages"
    files = {"used/__init__.py": "", "used/sub/mod.py": "", "used/sub/__pycache__/mod.cpython-311.pyc": "",
             "used/_ext.cpython-311-x86_64-linux-gnu.so": "", "used/data/digits.csv": "0,1\n",
             "used/tests/labels.npy": "", "used/config.json": "{}", "dataset/__init__.py": "",
             "dataset/labels.csv": "1\n", "used-1.0.dist-info/entry_points.txt": "", "single.py": "",
             "unused_single.py": "", "setup.pth": "import used\n"}
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    stdlib = tmp_path / "stdlib"
    (stdlib / "site-packages" / "other").mkdir(parents=True)
    (stdlib / "os.py").write_text("")
    (stdlib / "site-packages" / "other" / "__init__.py").write_text("")
    report = {"prefix": str(prefix), "base_prefix": str(tmp_path / "base"), "executable": str(prefix / "bin/python"),
              "stdlib": [str(stdlib)], "site_dirs": [str(site)], "sys_path": [str(stdlib), str(site)],
              "modules": [str(site / "used/sub/mod.py"), str(site / "single.py")], "package_paths": [],
              "opened": [str(site / "used/config.json"), str(site / "used-1.0.dist-info/entry_points.txt"),
                         str(site / "setup.pth")],
              "mapped": []}
    allowed = {os.path.relpath(p, site) for p in allow_list(report) if str(p).startswith(str(site))}
    assert allowed == {"used/__init__.py", "used/sub/mod.py", "used/sub/__pycache__/mod.cpython-311.pyc",
                       "used/_ext.cpython-311-x86_64-linux-gnu.so", "used/config.json", "single.py",
                       "used-1.0.dist-info/entry_points.txt", "setup.pth"}
    everything = {str(p) for p in allow_list(report)}
    assert str(stdlib / "os.py") in everything and str(prefix / "pyvenv.cfg") in everything
    assert not any("site-packages/other" in p for p in everything)  # the base Python's own site-packages
