"""The `openai` backend against a REAL local OpenAI-compatible server (llama-cpp-python's
`llama_cpp.server` serving the bundled SmolLM2-135M GGUF on 127.0.0.1), plus loopback socket
servers this test starts that misbehave on purpose: accept and never answer, stall mid-body,
trickle bytes, fail with 503. Every stall ends at the per-call deadline."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from agent.generators import GeneratorError, GeneratorTimeout, SamplingConfig, make_generator
from agent.generators.local_server import free_port, start_llama_server

MESSAGES = [{"role": "user", "content": "Write one line of Python that sets HIDDEN to 64."}]
OK_BODY = json.dumps({"choices": [{"message": {"role": "assistant", "content": "HIDDEN = 64"}, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 9, "completion_tokens": 4}}).encode()


class LoopbackServer:
    """A raw TCP server on 127.0.0.1 whose per-connection behaviour the test chooses."""

    def __init__(self, behaviour) -> None:
        self.behaviour, self.connections = behaviour, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self.held.append(conn)
            threading.Thread(target=self.behaviour, args=(conn, self.connections, self.stop), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        for c in self.held:
            c.close()
        self.sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _read_request(conn: socket.socket) -> None:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += conn.recv(65536)


def never_answers(conn, n, stop):
    stop.wait(30)


def stalls_mid_body(conn, n, stop):
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"choices\": [")
    stop.wait(30)


def trickles(conn, n, stop):
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    while not stop.is_set():     # one byte every 0.2 s: never silent long enough for the read timeout
        try:
            conn.sendall(b" ")
        except OSError:
            return
        time.sleep(0.2)


def fails_twice_then_answers(conn, n, stop):
    _read_request(conn)
    if n <= 2:
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
    else:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(OK_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + OK_BODY)
    conn.close()


def bad_request(conn, n, stop):
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\nConnection: close\r\n\r\nno such")
    conn.close()


def gen_for(url: str, **cfg):
    return make_generator({"backend": "openai", "base_url": url, "backoff_s": 0.05, **cfg})


@pytest.mark.parametrize("behaviour", [never_answers, stalls_mid_body, trickles], ids=lambda b: b.__name__)
def test_stalled_server_hits_the_deadline(behaviour):
    server = LoopbackServer(behaviour)
    try:
        gen = gen_for(server.url, deadline_s=1.5, read_timeout_s=30, retries=3)
        start = time.monotonic()
        with pytest.raises(GeneratorTimeout, match="deadline"):
            gen.generate(MESSAGES)
        elapsed = time.monotonic() - start
        assert 1.4 <= elapsed < 3.0, elapsed
    finally:
        server.close()


def test_read_timeout_then_retry_until_deadline():
    server = LoopbackServer(never_answers)
    try:
        gen = gen_for(server.url, deadline_s=2.0, read_timeout_s=0.3, retries=10)
        with pytest.raises(GeneratorTimeout):
            gen.generate(MESSAGES)
        assert server.connections >= 3          # each silent attempt was cut by the read timeout and retried
    finally:
        server.close()


def test_retries_with_backoff_on_503():
    server = LoopbackServer(fails_twice_then_answers)
    try:
        out = gen_for(server.url, retries=2, deadline_s=10).generate(MESSAGES)[0]
        assert out.text == "HIDDEN = 64" and out.tokens == 4 and out.prompt_tokens == 9
        assert server.connections == 3
    finally:
        server.close()


def test_client_errors_are_not_retried():
    server = LoopbackServer(bad_request)
    try:
        with pytest.raises(GeneratorError, match="HTTP 400"):
            gen_for(server.url, retries=3).generate(MESSAGES)
        assert server.connections == 1
    finally:
        server.close()


def test_refused_connection_gives_up_with_a_typed_error():
    port = free_port()       # nothing listens here
    start = time.monotonic()
    with pytest.raises(GeneratorError, match="gave up after 3 attempts"):
        gen_for(f"http://127.0.0.1:{port}/v1", retries=2, deadline_s=10).generate(MESSAGES)
    assert time.monotonic() - start < 5


@pytest.fixture(scope="module")
def llama_server():
    server = start_llama_server(threads=1)
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_real_llama_cpp_server(llama_server, monkeypatch):
    monkeypatch.setenv("ENSNAS_TEST_KEY", "sk-local")     # sent as a bearer token; the server ignores it
    gen = gen_for(llama_server.base_url, api_key_env="ENSNAS_TEST_KEY", deadline_s=120)
    s = SamplingConfig(temperature=0.8, max_new_tokens=24, seed=11)
    a, b = gen.generate(MESSAGES, sampling=s)[0], gen.generate(MESSAGES, sampling=s)[0]
    assert a.text.strip() and 1 <= a.tokens <= 24 and a.prompt_tokens > 5
    assert a.text == b.text                                   # the seed reaches the server
    short = gen.generate(MESSAGES, sampling=s.model_copy(update={"max_new_tokens": 4}))[0]
    assert short.tokens == 4 and short.finish_reason == "length"
    two = gen.generate(MESSAGES, n=2, sampling=s)
    assert len(two) == 2 and two[0].text == a.text


@pytest.mark.slow
@pytest.mark.integration
def test_real_server_stop_sequences(llama_server):
    gen = gen_for(llama_server.base_url, deadline_s=120)
    s = SamplingConfig(temperature=0.8, max_new_tokens=40, seed=5)
    free = gen.generate(MESSAGES, sampling=s)[0].text
    stop = next(w for w in free.split()[1:] if len(w) > 2)
    cut = gen.generate(MESSAGES, sampling=s.model_copy(update={"stop": [stop]}))[0].text
    assert stop not in cut and len(cut) < len(free)
