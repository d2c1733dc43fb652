"""The Ray executor on a real local cluster: a head plus a second node (separate raylets on this
machine, loopback only), the second node killed mid-run. Every candidate comes back exactly once."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sandbox import Limits
from sandbox.executor import EvalJob, LocalExecutor

N = 6
SOURCE = "import torch.nn as nn\n\ndef build_model(s, k):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, {h}), nn.ReLU(), nn.Linear({h}, k))\n"


def _jobs(task, sandbox: str) -> list[EvalJob]:
    return [EvalJob(source=SOURCE.format(h=16 + i), task=task, sandbox=sandbox, limits=Limits(timeout_s=120))
            for i in range(N)]


@pytest.fixture
def quick_task(digits_task):
    return digits_task.model_copy(update={"budget": digits_task.budget.model_copy(update={"epochs": 2})})


def test_job_ids_are_idempotent(quick_task):
    a, b = _jobs(quick_task, "process")[:2]
    assert a.job_id == EvalJob(source=a.source, task=quick_task).job_id  # sandbox/limits do not change the result
    assert a.job_id != b.job_id
    assert EvalJob(source=a.source, task=quick_task, seed_base=1).job_id != a.job_id


def test_local_executor_dedupes_and_reports_unavailable_sandbox(quick_task, cache_dir):
    jobs = _jobs(quick_task, "subprocess")[:1]
    broken = EvalJob(source=jobs[0].source, task=quick_task, sandbox="docker", job_id="no-docker")
    out = list(LocalExecutor(cache_dir=cache_dir).map([jobs[0], jobs[0], broken]))
    assert [job_id for job_id, _ in out][:1] == [jobs[0].job_id] and len(out) == 2
    assert out[0][1].ok
    # docker may or may not answer here: either it evaluates or it is a typed failure, never an exception
    assert out[1][1].ok or out[1][1].reason.value == "sandbox_unavailable"


class LocalRayCluster:
    """`ray start --head` plus `ray start --address` on this machine (two raylets), torn down by process tree."""

    def __init__(self, root: Path) -> None:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root = root  # short: Ray's unix socket paths must stay under 108 bytes
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000",
                  "--disable-usage-stats"]
        ray_cli = str(Path(sys.executable).with_name("ray"))
        self._run([ray_cli, "start", "--head", f"--port={self.port}", "--include-dashboard=false",
                   f"--temp-dir={root}", '--resources={"head": 1}', *common])
        self._run([ray_cli, "start", f"--address={self.address}", '--resources={"second": 1}', *common])

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr[-2000:]}")

    def raylet_pid(self, node_id: str, ray) -> int:
        node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    cmd = Path(entry.path, "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if "raylet" in cmd and f"--raylet_socket_name={node['RayletSocketName']}" in cmd:
                    return int(entry.name)
        raise LookupError(node_id)

    def kill_tree(self, pid: int) -> None:
        for p in [pid, *_descendants(pid)]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def shutdown(self) -> None:
        mine = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if str(self.root).encode() in Path(entry.path, "cmdline").read_bytes():
                        mine.append(int(entry.name))
                except OSError:
                    continue
        for pid in mine:
            self.kill_tree(pid)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_ray_cluster_survives_a_killed_node(ray_module, quick_task, cache_dir):
    from sandbox.ray_executor import RayExecutor

    ray = ray_module
    root = Path(tempfile.mkdtemp(prefix="eray-", dir="/tmp"))
    cluster = LocalRayCluster(root)
    executor = None
    try:
        trace = root / "trace"
        trace.mkdir()
        executor = RayExecutor(address=cluster.address, cache_dir=cache_dir, trace_dir=trace, max_retries=3)
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2, nodes
        doomed = next(n["NodeID"] for n in nodes if "second" in n["Resources"])
        raylet = cluster.raylet_pid(doomed, ray)
        jobs = _jobs(quick_task, "process")
        killed: list[str] = []

        def kill_second_node_once_busy() -> None:
            deadline = time.time() + 180
            while time.time() < deadline:
                started = [p.name for p in trace.iterdir() if doomed in p.name]
                if started:
                    time.sleep(1.0)  # let it get well into the evaluation
                    cluster.kill_tree(raylet)  # the node dies: raylet, its agents and workers
                    killed.extend(started)
                    return
                time.sleep(0.2)

        killer = threading.Thread(target=kill_second_node_once_busy, daemon=True)
        killer.start()
        results: dict[str, list] = {}
        for job_id, evaluation in executor.map(jobs + jobs[:2]):  # duplicates submitted on purpose
            results.setdefault(job_id, []).append(evaluation)
        killer.join(5)

        assert killed, "the second node never ran a job"
        assert sorted(results) == sorted(j.job_id for j in jobs)  # all N present
        assert all(len(v) == 1 for v in results.values())         # exactly once
        assert all(v[0].ok and v[0].statistics.accuracy > 0.5 for v in results.values()), \
            [(k, v[0].reason, v[0].detail) for k, v in results.items() if not v[0].ok]
        victim = killed[0].split(".")[0]
        attempts = [p.name for p in trace.iterdir() if p.name.startswith(victim + ".")]
        assert len(attempts) >= 2, f"the killed node's job was not retried: {attempts}"
        assert executor.nodes[victim] != doomed  # its result came from the surviving node
        placed = {node[:8]: sum(1 for p in trace.iterdir() if node in p.name) for node in (n["NodeID"] for n in nodes)}
        print(f"\nray: {len(jobs)} jobs (+2 duplicate submissions), attempts per node {placed}, "
              f"killed node {doomed[:8]} while running {victim}, results {len(results)}, "
              f"each once: {all(len(v) == 1 for v in results.values())}")
    finally:
        if executor is not None:
            executor.close()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
