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


@pytest.mark.integration
def test_an_adapter_keeps_the_llama_cpp_server_and_its_grammar(tmp_path):
    """After the CE update, generation stays on the llama.cpp server (with the adapter as a GGUF
    LoRA) and keeps taking a grammar; it no longer falls back to unconstrained transformers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agent.generators.catalogue import model_file
    base = model_file("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(base.parent, gguf_file=base.name, dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(
        tmp_path / "v1")
    gen = make_generator(GeneratorConfig(backend="llama_cpp", model="smollm2-135m"))
    try:
        gen.load_adapter(tmp_path / "v1", version=1)
        assert gen.accepts_grammar and gen.describe()["served_by"] == "llama.cpp server + GGUF LoRA"
        out = gen.generate([{"role": "user", "content": "Pick a letter."}],
                           sampling=SamplingConfig(max_new_tokens=4, temperature=0.0, grammar='root ::= [ab]'))[0]
        assert out.text in ("a", "b")
        cmdline = open(f"/proc/{gen._server.process.pid}/cmdline").read().split("\0")
        assert "--lora" in cmdline and (tmp_path / "v1" / "adapter_model.gguf").is_file()
    finally:
        gen.close()


def test_server_exits_at_once_on_sigterm_even_while_answering():
    """The defect: a server whose parent died kept running for minutes (its destructor waited for the
    request in flight). SIGTERM now ends it within seconds, busy or not."""
    import json
    import threading

    from agent.generators.catalogue import model_file
    from agent.generators.local_server import start_llama_server
    server = start_llama_server(model=model_file("smollm2-135m"))
    body = json.dumps({"messages": [{"role": "user", "content": "Count to one thousand."}], "max_tokens": 4000})

    def busy() -> None:
        import http.client
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
        except OSError:
            pass

    threading.Thread(target=busy, daemon=True).start()
    time.sleep(2.0)                                   # the request is being answered
    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)
    assert time.monotonic() - start < 10
