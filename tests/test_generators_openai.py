"""The `openai` backend against a REAL local OpenAI-compatible server (llama.cpp's server from
xllamacpp serving the bundled SmolLM2-135M GGUF on 127.0.0.1), plus loopback socket servers this
test starts that misbehave on purpose: accept and never answer, stall mid-body, trickle bytes,
fail with 503, answer slowly, stream. Every stall ends at the per-call deadline, and a request
the server accepted is never sent twice."""
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


def answers_after(delay: float):
    def behaviour(conn, n, stop):
        _read_request(conn)
        if stop.wait(delay):
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(OK_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + OK_BODY)
        conn.close()
    behaviour.__name__ = f"answers_after_{delay}"
    return behaviour


@pytest.mark.parametrize("behaviour", [never_answers, answers_after(1.5)], ids=lambda b: b.__name__)
def test_a_request_the_server_accepted_is_never_sent_twice(behaviour):
    """The defect: a 60 s read timeout on an unstreamed answer re-sent the request while the server
    was still computing the first one. Silence after the request went out is a timeout, not a retry."""
    server = LoopbackServer(behaviour)
    try:
        gen = gen_for(server.url, deadline_s=5.0, read_timeout_s=0.3, retries=10, stream=False)
        start = time.monotonic()
        with pytest.raises(GeneratorTimeout, match="not re-sent"):
            gen.generate(MESSAGES)
        assert time.monotonic() - start < 1.5
        time.sleep(0.3)
        assert server.connections == 1
    finally:
        server.close()


def sse(chunks: list[dict]) -> list[bytes]:
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


STREAM = [{"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}] + [
    {"choices": [{"delta": {"content": piece}, "finish_reason": None}]} for piece in ["HID", "DEN", " = ", "64"]] + [
    {"choices": [{"delta": {}, "finish_reason": "length"}], "usage": {"prompt_tokens": 9, "completion_tokens": 4},
     "timings": {"prompt_n": 40, "prompt_per_second": 50.0, "predicted_per_second": 8.0}}]


def streams_slowly(conn, n, stop):
    """A slow model: the whole answer takes 2 s, longer than the read timeout, but never goes silent."""
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    for event in sse(STREAM):
        if stop.wait(0.35):
            return
        conn.sendall(event)
    conn.close()


def test_a_streamed_slow_answer_outlasts_the_read_timeout_and_is_measured():
    server = LoopbackServer(streams_slowly)
    try:
        gen = gen_for(server.url, deadline_s=20, read_timeout_s=1.0, retries=3)
        out = gen.generate(MESSAGES)[0]
        assert out.text == "HIDDEN = 64" and out.tokens == 4 and out.prompt_tokens == 9 and out.truncated
        assert out.seconds > 1.0 and server.connections == 1
        assert gen.decode_tps == 8.0 and gen.prompt_tps == 50.0
    finally:
        server.close()


def test_the_deadline_scales_with_the_measured_speed():
    gen = gen_for("http://127.0.0.1:9/v1", deadline_s=30)
    s = SamplingConfig(max_new_tokens=300)
    assert gen.deadline_for(MESSAGES, s) == 30            # nothing measured yet
    gen.decode_tps, gen.prompt_tps = 2.0, 20.0            # a slow model: 300 tokens need 150 s
    assert gen.deadline_for(MESSAGES, s) >= 3 * 150
    gen.decode_tps = 1000.0                               # a fast one keeps the configured floor
    assert gen.deadline_for(MESSAGES, s) == 30
    fixed = gen_for("http://127.0.0.1:9/v1", deadline_s=30, adaptive_deadline=False)
    fixed.decode_tps = 2.0
    assert fixed.deadline_for(MESSAGES, s) == 30


@pytest.mark.parametrize("stream", [True, False])
def test_retries_with_backoff_on_503(stream):
    server = LoopbackServer(fails_twice_then_answers)      # a JSON answer to a streamed request is read too
    try:
        out = gen_for(server.url, retries=2, deadline_s=10, stream=stream).generate(MESSAGES)[0]
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
    from agent.generators.catalogue import model_file
    server = start_llama_server(model=model_file("smollm2-135m"), threads=1)
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
