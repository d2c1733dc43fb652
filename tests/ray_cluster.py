"""A real Ray cluster on this machine for tests and benchmarks: `ray start --head` plus one
`ray start --address` per worker (separate raylets, loopback only, small object stores), torn
down by process tree. Never `ray stop`: that would stop every other cluster on the machine."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

OBJECT_STORE_BYTES = 80_000_000  # the smallest Ray accepts is 75 MB
# Ray rewrites 127.0.0.1 and localhost to the machine's outward address (ray._common.network_utils.
# is_localhost); any other 127/8 address is taken as given and stays on the loopback interface.
LOOPBACK = "127.0.0.2"


class LocalRayCluster:
    """`workers` worker raylets of `worker_cpus` CPUs each (resource `worker<i>`), and a head with
    `head_cpus` (0: the head only coordinates, every task runs on a worker)."""

    def __init__(self, *, workers: int = 2, head_cpus: int = 0, worker_cpus: int = 1, env: dict | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="eray-", dir="/tmp"))  # short: unix socket paths < 108 bytes
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"{LOOPBACK}:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self._ray = str(Path(sys.executable).with_name("ray"))
        common = [f"--node-ip-address={LOOPBACK}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                  "--disable-usage-stats"]
        try:
            self._start(["--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.root}",
                         f"--num-cpus={head_cpus}", '--resources={"head": 1}', *common])
            for i in range(workers):
                self._start([f"--address={self.address}", f"--num-cpus={worker_cpus}",
                             f"--resources={json.dumps({f'worker{i}': 1})}", *common])
        except BaseException:
            self.shutdown()
            raise

    def _start(self, args: list[str]) -> None:
        done = subprocess.run([self._ray, "start", *args], env=self.env, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args[:2])} failed: {done.stderr[-2000:]}")

    # -- nodes and their processes (read from /proc: no Ray connection needed) -----------------
    def raylet(self, name: str) -> tuple[int, str]:
        """(pid, node id) of the raylet of `name` ("head", "worker0", ...)."""
        for pid, cmd in _cmdlines():
            argv = cmd.split(" ")
            if str(self.root) in cmd and argv[0].endswith("raylet"):
                args = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
                items = args.get("static_resource_list", "").split(",")
                if name in dict(zip(items[::2], items[1::2])):  # name,amount,name,amount,...
                    return pid, args["node_id"]
        raise LookupError(f"no raylet for {name}")

    def node_id(self, name: str) -> str:
        return self.raylet(name)[1]

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's raylet and everything under it (its agents, Ray workers, sandboxes)."""
        kill_tree(self.raylet(name)[0])

    def freeze_node(self, name: str) -> set[int]:
        """SIGSTOP a node's raylet and everything under it, until nothing new appears: the node is
        then exactly as it was (nothing finishes, nothing starts) until `signal_all` kills or resumes it."""
        root, stopped = self.raylet(name)[0], set()
        while True:
            new = {root, *descendants(root)} - stopped
            if not new:
                return stopped
            signal_all(new, signal.SIGSTOP)
            stopped |= new

    def nodes(self, ray) -> list[dict]:
        return [n for n in ray.nodes() if n["Alive"]]

    def wait_for_nodes(self, ray, count: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while len(self.nodes(ray)) < count:
            if time.time() > deadline:
                raise TimeoutError(f"{len(self.nodes(ray))} of {count} Ray nodes came up")
            time.sleep(0.5)

    def processes(self) -> list[int]:
        """Every process of this cluster (their command lines name its temp dir)."""
        return [pid for pid, cmd in _cmdlines() if str(self.root) in cmd]

    def shutdown(self) -> None:
        for pid in self.processes():
            kill_tree(pid)
        deadline = time.time() + 30
        while self.processes() and time.time() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _cmdlines() -> list[tuple[int, str]]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                out.append((int(entry.name), Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")))
            except OSError:
                continue
    return out


def descendants(pid: int) -> list[int]:
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


def kill_tree(pid: int) -> None:
    signal_all([pid, *descendants(pid)], signal.SIGKILL)


def signal_all(pids, sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


class KillDuringAttempt(threading.Thread):
    """Watches a Ray executor's attempt log (`<job>.<node>.<pid>`, empty until its sandbox returned);
    once node `name` has been running a job for `settle` seconds, freezes the node, and if that
    attempt is still unfinished, SIGKILLs the node. `killed`: the attempts it cut off, each made by
    a process it killed."""

    def __init__(self, cluster: LocalRayCluster, name: str, attempts: Path, *, settle: float = 0.5,
                 skip=lambda job: False, timeout: float = 600) -> None:
        super().__init__(daemon=True)
        self.cluster, self.name, self.attempts, self.settle, self.skip = cluster, name, attempts, settle, skip
        self.node = cluster.node_id(name)
        self.deadline = time.time() + timeout
        self.killed: list[str] = []

    def _running(self) -> list[Path]:
        return [p for p in self.attempts.iterdir() if p.name.split(".")[1:2] == [self.node]
                and not self.skip(p.name.split(".")[0]) and p.stat().st_size == 0]

    def run(self) -> None:
        while time.time() < self.deadline:
            if self._running():
                time.sleep(self.settle)
                frozen = self.cluster.freeze_node(self.name)
                cut = [p.name for p in self._running() if int(p.name.rsplit(".", 1)[1]) in frozen]
                if cut:
                    signal_all(frozen, signal.SIGKILL)
                    self.killed = cut
                    return
                signal_all(frozen, signal.SIGCONT)  # it finished just now: let the node go on, try again
            time.sleep(0.05)

    def retried(self) -> dict[str, list[str]]:
        """Each cut-off job -> every attempt at it, in the log."""
        out = {}
        for name in self.killed:
            job = name.split(".")[0]
            out[job] = sorted(p.name for p in self.attempts.iterdir() if p.name.split(".")[0] == job)
        return out
