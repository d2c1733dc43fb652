"""Start a local OpenAI-compatible server (llama-cpp-python's) on 127.0.0.1 for a GGUF file.

Used by the tests and benchmarks of the `openai` backend, and by users who want the fastest CPU
path for the bundled model: ``llama_cpp.server`` decodes SmolLM2-135M several times faster than
transformers on a CPU. Needs the extra ``llama-cpp-python[server]``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import http.client
from dataclasses import dataclass
from pathlib import Path

from agent.generators.base import GeneratorError, GeneratorUnavailable, bundled_gguf


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies (even by kill -9)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalServer:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_llama_server(*, model: str | Path | None = None, threads: int = 1, n_ctx: int = 4096,
                       log_path: Path | None = None, startup_timeout_s: float = 120.0) -> LocalServer:
    """Serve `model` (default: the bundled GGUF) and wait until /v1/models answers.

    threads = 1 by default: on a shared CPU, llama.cpp with more threads than free cores
    busy-waits and slows down by orders of magnitude.
    """
    for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"):
        if importlib.util.find_spec(mod) is None:
            raise GeneratorUnavailable("a local server needs `pip install 'llama-cpp-python[server]'` "
                                       f"({mod} is missing)")
    model = Path(model) if model else bundled_gguf()
    port = free_port()
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"ensnas-llama-server-{port}.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads),
           "--n_ctx", str(n_ctx)]
    log = open(log_path, "wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               preexec_fn=_die_with_parent)
    log.close()
    server = LocalServer(process=process, base_url=f"http://127.0.0.1:{port}/v1", log_path=log_path)
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise GeneratorError(f"llama_cpp.server exited with {process.returncode}: {tail}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)   # direct: never through a proxy
        try:
            conn.request("GET", "/v1/models")
            if json.loads(conn.getresponse().read()).get("data") is not None:
                return server
        except (OSError, ValueError, http.client.HTTPException):
            time.sleep(0.5)
        finally:
            conn.close()
    server.stop()
    raise GeneratorError(f"llama_cpp.server did not answer within {startup_timeout_s:.0f} s (log: {log_path})")
