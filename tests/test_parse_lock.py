"""Parsing in threads: every AST build and .npy/.npz header read in library code takes one lock.

CI failed once with `SystemError: AST constructor recursion depth mismatch` in a gate training:
CPython 3.11 keeps the AST converter's depth per interpreter (python/cpython#106905), and two
executor threads read .npy headers (ast.literal_eval) at the same moment."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from evaluator.parse_lock import PARSE_LOCK, load_npy, load_npz, parse_python

ROOT = Path(__file__).resolve().parents[1]
# the sandbox worker runs alone in its own process; parse_lock.py is where the calls live
SINGLE_THREADED = {"evaluator/parse_lock.py", "evaluator/worker.py"}


def test_no_library_code_parses_outside_the_lock():
    """The class, not the one call CI hit: any ast.parse / ast.literal_eval / np.load left in
    library code could race with an executor thread."""
    pattern = re.compile(r"\bast\.parse\(|\bliteral_eval\(|\bnp\.load\(|\bnumpy\.load\(")
    offenders = []
    for package in ("agent", "evaluator", "sandbox", "prompts", "theory"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in SINGLE_THREADED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line.split("#", 1)[0]):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "parse under evaluator.parse_lock instead:\n" + "\n".join(offenders)


def test_each_reader_waits_for_the_lock_and_returns_what_numpy_and_ast_would(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.savez(tmp_path / "b.npz", val=np.ones(2), test=np.zeros(3))
    calls = {"parse": lambda: parse_python("x = (1, [2, {3: 4}])"),
             "npy": lambda: load_npy(tmp_path / "a.npy", mmap_mode="r"),
             "npz": lambda: load_npz(tmp_path / "b.npz")}
    results: dict[str, object] = {}
    with PARSE_LOCK:
        threads = [threading.Thread(target=lambda k=k, f=f: results.__setitem__(k, f())) for k, f in calls.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(0.3)
        assert not results and all(t.is_alive() for t in threads)       # all three wait for the holder
    for t in threads:
        t.join(10)
    assert results["parse"].body[0].targets[0].id == "x"
    assert np.array_equal(results["npy"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert set(results["npz"]) == {"val", "test"} and results["npz"]["test"].shape == (3,)


def test_many_threads_parse_and_read_at_once(tmp_path):
    """Under the lock, 8 threads × 200 parses and reads finish with the right answers."""
    np.save(tmp_path / "a.npy", np.arange(4))
    source = "y = " + "(" * 40 + "1" + ")" * 40
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(200):
                assert parse_python(source).body[0].targets[0].id == "y"
                assert load_npy(tmp_path / "a.npy")[3] == 3
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
