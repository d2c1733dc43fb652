"""Any OpenAI-compatible chat-completions endpoint (llama.cpp server, vLLM serve, a hosted API).

Plain ``http.client`` so every wait is under our control:

- connect timeout, and a read timeout for the longest silence between bytes;
- retries with exponential backoff on connection errors, timeouts, HTTP 408/429/5xx;
- a hard per-call deadline (retries included) enforced by a watchdog thread that shuts the
  socket down, so a server that accepts and never answers, or stalls or trickles mid-body,
  cannot hang a cycle: the call raises GeneratorTimeout at the deadline.

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


class _Retryable(Exception):
    pass


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

    def generate(self, messages: Messages, *, n: int = 1, sampling: SamplingConfig | None = None) -> list[Generation]:
        s = sampling or self.config.sampling
        return [self._one(messages, s.model_copy(update={"seed": s.seed + i})) for i in range(n)]

    def _body(self, messages: Messages, s: SamplingConfig) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model or "default", "messages": messages,
                                "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_new_tokens,
                                "seed": s.seed, "n": 1, "stream": False}
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

    def _one(self, messages: Messages, s: SamplingConfig) -> Generation:
        cfg = self.config
        start = time.monotonic()
        deadline = start + cfg.deadline_s
        payload = json.dumps(self._body(messages, s)).encode()
        last, out_of_time = "no attempt", False
        for attempt in range(cfg.retries + 1):
            try:
                data = self._post(payload, deadline)
                return self._parse(data, time.monotonic() - start)
            except _Retryable as exc:
                last = str(exc)
            if attempt == cfg.retries:
                break
            wait = cfg.backoff_s * (2 ** attempt)
            if time.monotonic() + wait >= deadline:      # the next try could not finish in time
                out_of_time = True
                break
            time.sleep(wait)
        if out_of_time or time.monotonic() >= deadline or "deadline" in last:
            raise GeneratorTimeout(f"no answer from {cfg.base_url} within the {cfg.deadline_s:.1f} s deadline ({last})")
        raise GeneratorError(f"{cfg.base_url}: gave up after {cfg.retries + 1} attempts: {last}")

    def _post(self, payload: bytes, deadline: float) -> dict[str, Any]:
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
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            conn.connect()
            conn.sock.settimeout(max(0.01, min(cfg.read_timeout_s, deadline - time.monotonic())))
            conn.request("POST", self._path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(MAX_RESPONSE_BYTES + 1)
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise _Retryable("deadline reached while waiting for the server") from exc
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            watchdog.cancel()
            conn.close()
        if expired.is_set():
            raise _Retryable("deadline reached while waiting for the server")
        if len(raw) > MAX_RESPONSE_BYTES:
            raise GeneratorError(f"response above {MAX_RESPONSE_BYTES} bytes")
        if status in RETRY_STATUS:
            raise _Retryable(f"HTTP {status}: {raw[:200]!r}")
        if status != 200:
            raise GeneratorError(f"HTTP {status} from {cfg.base_url}: {raw[:500].decode(errors='replace')}")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise GeneratorError(f"response is not JSON: {raw[:200]!r}") from exc
        if not isinstance(data, dict):
            raise GeneratorError("response is not a JSON object")
        return data

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
                          prompt_tokens=usage.get("prompt_tokens"))
