"""The hostile corpus (tests/hostile/) against every hardened backend, for real.

For each program and backend: the run is contained, gets the expected typed outcome, the host
(planted secrets and directories, the task's data and labels) is unchanged, no process or
container is left behind, and a normal candidate still evaluates correctly afterwards.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from evaluator.failures import FailureReason as R
from sandbox import Limits

HOSTILE = Path(__file__).parent / "hostile"
LIMITS = Limits(timeout_s=40, memory_mb=1024, pids=64, max_output_bytes=64 << 10, max_log_bytes=4 << 20,
                max_file_mb=16, max_out_mb=64)
NORMAL = "import torch.nn as nn\n\ndef build_model(s, k):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, k))\n"

# program -> expected reason (None: evaluates, harmlessly), and whether a normal candidate must follow at once
CASES: dict[str, tuple[R | None, bool]] = {
    "fork_bomb": (R.timeout, True), "memory_bomb": (R.out_of_memory, True), "infinite_loop": (R.timeout, False),
    "sleep_forever": (R.timeout, False), "open_socket": (None, False), "read_host_files": (None, False),
    "read_labels": (R.build_error, False), "write_outside": (None, False), "detached_child": (None, False),
    "print_gigabytes": (R.output_too_large, False), "huge_file": (R.output_too_large, False),
    "os_exit": (R.crashed, False), "segfault": (R.crashed, False), "kill_everything": (R.crashed, False),
    "monkeypatch_forge": (None, False), "write_predictions": (R.invalid_output, False),
    "symlink_predictions": (R.invalid_output, False), "nan_output": (R.nan_output, False),
    "wrong_shape": (R.shape_mismatch, False), "huge_model": (R.too_many_params, False),
    "enormous_model": (R.out_of_memory, False), "search_labels": (R.build_error, False),
    "import_dataset": (R.import_error, False), "fill_disk": (R.output_too_large, True),
}


def test_corpus_is_complete():
    assert sorted(p.stem for p in HOSTILE.glob("*.py")) == sorted(CASES)


class Listener:
    """A loopback TCP listener that records every connection (the 'outside' a program must not reach)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port, self.connections, self._stop = self.sock.getsockname()[1], 0, False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


class HostDiskWatch:
    """Samples the bytes under the evaluator's work root (where job dirs live on the host) and keeps the peak."""

    def __init__(self, root: Path, every_s: float = 0.05) -> None:
        self.root, self.every_s, self.peak = Path(root), every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _size(self) -> int:
        total = 0
        for dirpath, _, filenames in os.walk(self.root):
            for f in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self._size())


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _uid_processes(uid: int = 65534) -> set[int]:
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


def _bomb_survivors(before: set[int], work_root: Path) -> list[int]:
    """New uid-65534 processes running the worker (what the fork bomb's children look like) in a sandbox
    of this evaluator: one whose mounts include its work root (other runs on a shared machine have
    workers too)."""
    found = []
    for pid in _uid_processes() - before:
        try:
            if (b"evaluator.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
                    and str(work_root) in Path(f"/proc/{pid}/mountinfo").read_text()):
                found.append(pid)
        except OSError:
            pass
    return found


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if token.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """World-readable/writable host paths that only the sandbox boundary protects."""
    root = Path(f"/tmp/ensnas-hostile-{uuid.uuid4().hex[:8]}")
    (root / "store").mkdir(parents=True)
    (root / "target").mkdir()
    for p in (root, root / "store"):
        p.chmod(0o755)
    (root / "target").chmod(0o777)
    secret = root / "store" / "secret.txt"
    secret.write_text("the store's secret")
    secret.chmod(0o644)
    (root / "target" / "sentinel.txt").write_text("keep me")
    (root / "target" / "sentinel.txt").chmod(0o666)
    listener = Listener()
    yield {"root": root, "secret": secret, "target": root / "target", "listener": listener}
    listener.close()
    import shutil
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=["process", "docker"])
def backend(request, digits_task, cache_dir, tmp_path_factory):
    from evaluator.evaluate import Evaluator
    from sandbox import make_sandbox
    if request.param == "docker":
        sandbox = request.getfixturevalue("docker_sandbox")
    else:
        sandbox = make_sandbox("process")
        if not sandbox.isolation().get("filesystem"):
            pytest.skip(f"no namespaces on this kernel: {sandbox.isolation()['problems']}")
    task = digits_task.model_copy(update={"budget": digits_task.budget.model_copy(update={"epochs": 1})})
    work_root = tmp_path_factory.mktemp(f"hostile-{request.param}")
    work_root.chmod(0o755)
    return request.param, Evaluator(task=task, sandbox=sandbox, limits=LIMITS, cache_dir=cache_dir, work_root=work_root)


def _source(name: str, planted: dict, evaluator, token: str) -> str:
    if name == "search_labels":  # the whole visible filesystem, by content (tests/label_needles.py)
        from tests.label_needles import needles_for, program
        return program(needles_for(evaluator.task, evaluator.data), ["/"])
    labels = evaluator.data.inputs_dir.parent / "labels.npz"
    subs = {"__PORT__": str(planted["listener"].port), "__TOKEN__": token, "__LABELS_PATH__": str(labels),
            "__SECRET_PATHS__": ":".join([str(planted["secret"]), str(labels)]),
            "__TARGET_DIR__": str(planted["target"]), "__MARKER__": str(planted["root"] / f"marker-{token}")}
    text = (HOSTILE / f"{name}.py").read_text()
    for key, value in subs.items():
        text = text.replace(key, value)
    return text


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_program_is_contained(backend, planted, name):
    kind, evaluator = backend
    expected, then_normal = CASES[name]
    token = f"ensnas-token-{uuid.uuid4().hex}"
    data_root = evaluator.data.inputs_dir.parent
    before_data, before_planted = _digest(data_root), _digest(planted["root"])
    before_procs = _uid_processes()
    connections = planted["listener"].connections

    runner = evaluator
    if expected == R.timeout:  # only a wall clock stops these: keep it short
        runner = copy.copy(evaluator)
        runner.limits = dataclasses.replace(LIMITS, timeout_s=6)
    elif name == "search_labels":  # reads every visible file: give it time
        runner = copy.copy(evaluator)
        runner.limits = dataclasses.replace(LIMITS, timeout_s=600, memory_mb=3072)
    source = _source(name, planted, evaluator, token)
    disk = HostDiskWatch(evaluator.work_root)
    try:
        result = runner.evaluate(source)
    finally:
        disk.stop()

    print(f"\nHOSTILE | {name} | {kind} | {result.reason.value if result.reason else 'ok'} | "
          f"{result.wall_seconds:.1f} s | {result.detail[:90]}")
    assert result.reason == expected, f"{kind}/{name}: {result.reason} {result.detail} {result.stderr_tail[-600:]}"
    if name in ("read_labels", "search_labels"):
        assert "labels not reachable" in result.detail
    if name == "fill_disk":  # stopped while filling (not at the timeout), and the host never held more than out/'s cap
        assert "quota:" in result.detail, result.detail
    assert disk.peak <= (LIMITS.max_out_mb + 1) << 20, f"the host work dir held {disk.peak >> 20} MiB"
    if name == "monkeypatch_forge":  # forged confidence scores like the constant guess it is
        assert result.statistics.accuracy < 0.2
    if name in ("open_socket", "read_host_files", "write_outside"):
        assert "connected" not in result.stderr_tail and "LEAKED" not in result.stderr_tail
        assert "HOSTILE-WRITE wrote" not in result.stderr_tail and "HOSTILE-WRITE deleted" not in result.stderr_tail
    # the host is unchanged
    assert _digest(data_root) == before_data
    assert _digest(planted["root"]) == before_planted, "a planted host file changed or appeared"
    assert planted["listener"].connections == connections, "the program reached a host listener"
    # nothing is left running
    deadline = time.time() + 10
    while time.time() < deadline and _processes_with(token):
        time.sleep(0.5)
    assert not _processes_with(token), "a detached child outlived the sandbox"
    if name == "fork_bomb":  # none of its (token-less) children may survive either
        deadline = time.time() + 10
        while time.time() < deadline and _bomb_survivors(before_procs, evaluator.work_root):
            time.sleep(0.5)
        assert not _bomb_survivors(before_procs, evaluator.work_root), "fork bomb processes outlived the sandbox"
    if kind == "docker":
        from sandbox.docker_backend import LABEL, leftover_containers
        client = evaluator.sandbox.client()
        mine = [c for c in leftover_containers(client)
                if c.labels.get(LABEL + ".work", "").startswith(str(evaluator.work_root))]
        assert not mine, "a sandbox container was left behind"
    if then_normal:
        normal = evaluator.evaluate(NORMAL)
        assert normal.ok and normal.statistics.accuracy > 0.5, normal.detail


@pytest.mark.slow
@pytest.mark.docker
def test_normal_candidate_after_the_corpus(backend):
    kind, evaluator = backend
    result = evaluator.evaluate(NORMAL)
    assert result.ok, result.detail
    assert result.statistics.accuracy > 0.5 and result.val_probs.shape[0] == 2
