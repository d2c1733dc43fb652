"""Any OpenAI-compatible chat-completions endpoint (llama.cpp server, vLLM serve, a hosted API).

Plain ``http.client`` so every wait is under our control:

- answers are streamed (server-sent events) by default, so a slow model is a stream of tokens,
  never a silent socket; a server that answers with plain JSON is read as such;
- connect timeout, and a read timeout for the longest silence between bytes;
- re-sends only when the server certainly is not working on the request (connection refused
  or reset, HTTP 408/429/5xx), with exponential backoff; a request the server accepted and then
  went quiet on is never re-sent (that would queue a second copy behind the first);
- a hard per-call deadline enforced by a watchdog thread that shuts the socket down, so a
  server that accepts and never answers, or stalls or trickles mid-body, cannot hang a cycle:
  the call raises GeneratorTimeout at the deadline. With ``adaptive_deadline`` the deadline of
  each call is at least 3x what the measured prompt and decode speed of this endpoint need for
  the call's prompt and token budget (the first calls use ``deadline_s``).

The key is read from the environment variable config.api_key_env (unset = no auth header).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
from typing import Any

from agent.generators.base import (Generation, Generator, GeneratorConfig, GeneratorError, GeneratorTimeout,
                                   Messages, SamplingConfig, register_generator)
from evaluator.failures import ConfigError

MAX_RESPONSE_BYTES = 8 << 20
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
CHARS_PER_TOKEN = 3.0          # a conservative prompt-size estimate before the server reports one
DEADLINE_SAFETY = 3.0          # x the expected time: load on a shared machine varies that much


class _Retryable(Exception):
    pass


class _Silent(Exception):
    """The server accepted the request and went quiet: not to be re-sent."""


@register_generator("openai")
class OpenAIGenerator(Generator):
    """POST {base_url}/chat/completions, one request per answer (seed + i for the i-th)."""

    def __init__(self, *, config: GeneratorConfig) -> None:
        super().__init__(config=config)
        url = urllib.parse.urlsplit(config.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"base_url {config.base_url!r} is not an http(s) URL")
        self._url = url
        self._path = url.path.rstrip("/") + "/chat/completions"
        self.prompt_tps: float | None = None     # measured prompt tokens/s of this endpoint
        self.decode_tps: float | None = None     # measured generated tokens/s

    def generate(self, messages: Messages, *, n: int = 1, sampling: SamplingConfig | None = None) -> list[Generation]:
        s = sampling or self.config.sampling
        return [self._one(messages, s.model_copy(update={"seed": s.seed + i})) for i in range(n)]

    def _body(self, messages: Messages, s: SamplingConfig) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model or "default", "messages": messages,
                                "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_new_tokens,
                                "seed": s.seed, "n": 1, "stream": self.config.stream}
        if self.config.stream:
            body["stream_options"] = {"include_usage": True}
        if s.stop:
            body["stop"] = s.stop[:4]          # the OpenAI API allows at most 4
        if s.top_k:
            body["top_k"] = s.top_k            # llama.cpp and vLLM accept it; others ignore it
        if s.repetition_penalty:
            body["repeat_penalty"] = s.repetition_penalty
        if s.grammar:
            if not self.accepts_grammar:
                raise ConfigError("a grammar was given but this server is not marked as taking one "
                                  "(set generator.grammar_field for llama.cpp servers)")
            body["grammar"] = s.grammar
        return body

    @property
    def accepts_grammar(self) -> bool:
        return self.config.grammar_field

    def deadline_for(self, messages: Messages, s: SamplingConfig) -> float:
        """This call's deadline in seconds: deadline_s, raised to DEADLINE_SAFETY x the time the
        measured speeds need for this prompt and token budget."""
        cfg = self.config
        if not cfg.adaptive_deadline or not self.decode_tps:
            return cfg.deadline_s
        prompt_tokens = sum(len(m.get("content") or "") for m in messages) / CHARS_PER_TOKEN
        expected = s.max_new_tokens / self.decode_tps + prompt_tokens / (self.prompt_tps or self.decode_tps)
        return max(cfg.deadline_s, DEADLINE_SAFETY * expected)

    def _one(self, messages: Messages, s: SamplingConfig) -> Generation:
        cfg = self.config
        start = time.monotonic()
        allowed = self.deadline_for(messages, s)
        deadline = start + allowed
        payload = json.dumps(self._body(messages, s)).encode()
        last, out_of_time = "no attempt", False
        for attempt in range(cfg.retries + 1):
            try:
                gen = self._post(payload, deadline, start)
                self._measure(gen)
                return gen
            except _Silent as exc:
                raise GeneratorTimeout(f"no answer from {cfg.base_url} within the {allowed:.1f} s deadline "
                                       f"({exc}); not re-sent: the server may still be working on it") from None
            except _Retryable as exc:
                last = str(exc)
            if attempt == cfg.retries:
                break
            wait = cfg.backoff_s * (2 ** attempt)
            if time.monotonic() + wait >= deadline:      # the next try could not finish in time
                out_of_time = True
                break
            time.sleep(wait)
        if out_of_time or time.monotonic() >= deadline:
            raise GeneratorTimeout(f"no answer from {cfg.base_url} within the {allowed:.1f} s deadline ({last})")
        raise GeneratorError(f"{cfg.base_url}: gave up after {cfg.retries + 1} attempts: {last}")

    def _measure(self, gen: Generation) -> None:
        """Running estimates of the endpoint's prompt and decode speed (for the adaptive deadline)."""
        timing = getattr(gen, "timings", None) or {}
        decode = timing.get("predicted_per_second")
        prompt = timing.get("prompt_per_second")
        if not decode and gen.tokens >= 8 and gen.seconds > 0:
            decode = gen.tokens / gen.seconds            # wall clock, prompt included: an underestimate
        if decode:
            self.decode_tps = decode if self.decode_tps is None else 0.5 * (self.decode_tps + decode)
        if prompt and (timing.get("prompt_n") or 0) >= 32:   # a mostly cached prompt says little
            self.prompt_tps = prompt if self.prompt_tps is None else 0.5 * (self.prompt_tps + prompt)

    def _post(self, payload: bytes, deadline: float, start: float) -> Generation:
        cfg, url = self.config, self._url
        remaining = deadline - time.monotonic()
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=max(0.01, min(cfg.connect_timeout_s, remaining)))
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(max(0.0, remaining), kill)
        watchdog.daemon = True
        watchdog.start()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        key = os.environ.get(cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        sent = False
        try:
            try:
                conn.connect()
            except OSError as exc:
                if expired.is_set():
                    raise _Silent("deadline reached while connecting") from exc
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            conn.sock.settimeout(max(0.01, min(cfg.read_timeout_s, deadline - time.monotonic())))
            conn.request("POST", self._path, body=payload, headers=headers)
            sent = True
            resp = conn.getresponse()
            if resp.status != 200:
                raw = resp.read(MAX_RESPONSE_BYTES + 1)
                if resp.status in RETRY_STATUS:
                    raise _Retryable(f"HTTP {resp.status}: {raw[:200]!r}")
                raise GeneratorError(f"HTTP {resp.status} from {cfg.base_url}: {raw[:500].decode(errors='replace')}")
            if "text/event-stream" in (resp.getheader("Content-Type") or ""):
                gen = self._read_stream(resp, start, expired)
                if expired.is_set():
                    raise _Silent("deadline reached while the answer streamed")
                return gen
            raw = resp.read(MAX_RESPONSE_BYTES + 1)
            if expired.is_set() or resp.length:        # cut by the watchdog, or shorter than announced
                raise _Silent("deadline reached while waiting for the server" if expired.is_set()
                              else "the answer stopped mid-body")
            if len(raw) > MAX_RESPONSE_BYTES:
                raise GeneratorError(f"response above {MAX_RESPONSE_BYTES} bytes")
            return self._parse(_json_object(raw), time.monotonic() - start)
        except (TimeoutError, socket.timeout) as exc:
            raise _Silent("deadline reached" if expired.is_set() else
                          f"silent for {cfg.read_timeout_s:.0f} s (read timeout)") from exc
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise _Silent("deadline reached while waiting for the server") from exc
            if sent and isinstance(exc, http.client.IncompleteRead):
                raise _Silent(f"the answer stopped mid-body: {exc}") from exc
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc   # refused/reset: nothing runs for us
        finally:
            watchdog.cancel()
            conn.close()

    def _read_stream(self, resp: http.client.HTTPResponse, start: float, expired: threading.Event) -> Generation:
        """Server-sent events: `data: {chunk}` lines up to `data: [DONE]`; content is concatenated."""
        text, reason, usage, timings, total = [], None, {}, {}, 0
        while True:
            line = resp.readline(1 << 20)
            if not line:
                break
            total += len(line)
            if total > MAX_RESPONSE_BYTES:
                raise GeneratorError(f"response above {MAX_RESPONSE_BYTES} bytes")
            line = line.strip()
            if not line.startswith(b"data:"):
                continue                                   # comments, event names, keep-alives
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = _json_object(data)
            if chunk.get("error"):
                raise GeneratorError(f"{self.config.base_url}: {str(chunk['error'])[:500]}")
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    text.append(delta["content"])
                reason = choice.get("finish_reason") or reason
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
        if reason is None:
            raise _Silent("deadline reached while the answer streamed" if expired.is_set()
                          else "the stream ended without a finish reason")
        return self._parse({"choices": [{"message": {"content": "".join(text)}, "finish_reason": reason}],
                            "usage": usage, "timings": timings}, time.monotonic() - start)

    @staticmethod
    def _parse(data: dict[str, Any], seconds: float) -> Generation:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise GeneratorError(f"response has no choices[0].message: {str(data)[:200]}") from exc
        usage = data.get("usage") or {}
        tokens = usage.get("completion_tokens")
        if not isinstance(tokens, int):
            tokens = max(1, len(text) // 4) if text else 0   # no usage reported: rough estimate
        reason = choice.get("finish_reason") or "stop"
        return Generation(text=text, tokens=tokens, seconds=seconds,
                          finish_reason="length" if reason == "length" else "stop",
                          prompt_tokens=usage.get("prompt_tokens"), timings=data.get("timings") or None)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise GeneratorError(f"response is not JSON: {raw[:200]!r}") from exc
    if not isinstance(data, dict):
        raise GeneratorError("response is not a JSON object")
    return data
