"""The default generator backend: a private llama.cpp server (xllamacpp) for a bundled GGUF."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from agent.generators.base import GeneratorConfig, SamplingConfig, make_generator

pytestmark = pytest.mark.slow


def test_generates_through_a_private_server_and_stops_it():
    gen = make_generator(GeneratorConfig(backend="llama_cpp", model="smollm2-135m"))
    answer = gen.generate([{"role": "user", "content": "Say hello."}],
                          sampling=SamplingConfig(max_new_tokens=16, temperature=0.0))[0]
    assert answer.tokens > 0 and answer.text.strip()
    server = gen._server
    assert server is not None and server.base_url.startswith("http://127.0.0.1:")
    gen.close()
    assert server.process.poll() is not None
    assert gen.describe()["served_by"] == "llama.cpp server"


def test_server_dies_with_its_parent_even_on_kill_minus_nine(tmp_path):
    code = ("from agent.generators.llama_cpp_backend import LlamaCppGenerator\n"
            "from agent.generators.base import GeneratorConfig\n"
            "g = LlamaCppGenerator(config=GeneratorConfig(backend='llama_cpp', model='smollm2-135m'))\n"
            "g._client_ready(); print(g._server.process.pid, flush=True)\n"
            "import time; time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    os.kill(server_pid, 0)  # alive
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it became our zombie (it is a grandchild, so normally init reaps it)
            os.waitpid(server_pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if open(f"/proc/{server_pid}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.2)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the llama.cpp server outlived the killed process that started it")
