"""Start llama.cpp's OpenAI-compatible server on 127.0.0.1 for a GGUF file (and LoRA adapters).

The server is llama.cpp's own C++ server from the prebuilt ``xllamacpp`` wheel (no compiler at
install time), run in a child process (agent/generators/llama_server.py) whose output goes to a
log file and which dies with the process that started it. Used by the `llama_cpp` backend (the
default of `ensnas run`), and by the tests and benchmarks of the `openai` backend.
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

from agent.generators.base import GeneratorError, GeneratorUnavailable

SERVER_SCRIPT = Path(__file__).with_name("llama_server.py")


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
                       loras: list[str | Path] = (), chat_template: str | None = None,
                       log_path: Path | None = None, startup_timeout_s: float = 180.0) -> LocalServer:
    """Serve `model` (default: the catalogue's default model) and wait until /v1/models answers.

    threads = 1 by default: on a shared CPU, llama.cpp with more threads than free cores
    busy-waits and slows down by orders of magnitude.
    """
    if importlib.util.find_spec("xllamacpp") is None:
        raise GeneratorUnavailable("the llama.cpp server needs the `xllamacpp` package (pip install xllamacpp)")
    if model is None:
        from agent.generators.catalogue import DEFAULT_MODEL, model_file
        model = model_file(DEFAULT_MODEL)
    port = free_port()
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"ensnas-llama-server-{port}.log"
    cmd = [sys.executable, str(SERVER_SCRIPT), "--model", str(model), "--port", str(port),
           "--threads", str(threads), "--ctx", str(n_ctx)]
    for lora in loras:
        cmd += ["--lora", str(lora)]
    if chat_template is not None:
        template_file = log_path.with_suffix(".chat_template.jinja")
        template_file.write_text(chat_template)
        cmd += ["--chat-template-file", str(template_file)]
    log = open(log_path, "wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               preexec_fn=_die_with_parent)
    log.close()
    server = LocalServer(process=process, base_url=f"http://127.0.0.1:{port}/v1", log_path=log_path)
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise GeneratorError(f"the llama.cpp server exited with {process.returncode}: {tail}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)   # direct: never through a proxy
        try:
            conn.request("GET", "/v1/models")
            resp = conn.getresponse()
            if resp.status == 200 and json.loads(resp.read()).get("data") is not None:
                return server
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.3)
    server.stop()
    raise GeneratorError(f"the llama.cpp server did not answer within {startup_timeout_s:.0f} s (log: {log_path})")
