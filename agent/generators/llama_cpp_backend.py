"""The fastest CPU path for a GGUF model: a private llama.cpp server on 127.0.0.1 (prebuilt, from
the `xllamacpp` wheel), spoken to through the `openai` backend. The default of `ensnas run`.

- The model is a catalogue name (assembled and checksum-verified first), or any .gguf file.
- A GGUF without a chat template (a base model such as Gemma 3 270M) is refused for chat unless
  ``config.chat_template`` gives one: llama.cpp would otherwise fall back to a generic format
  and the model rambles.
- Answers are streamed; the server is local and serves one request at a time, so silence while
  it reads a long prompt is work, not a stall: the read timeout is the call's deadline, and the
  deadline scales with the speed measured on a short calibration call at start.
- ``load_adapter`` takes the CE update's PEFT adapter, converts it to a GGUF LoRA
  (agent.generators.gguf_lora) and restarts the server with it, so grammar-constrained decoding
  continues on the fine-tuned generator. The server dies with this process.
"""
from __future__ import annotations

import atexit
import logging
from pathlib import Path

from agent.generators.base import (Generation, Generator, GeneratorConfig, Messages, SamplingConfig, make_generator,
                                   register_generator, resolve_weights)
from evaluator.failures import ConfigError

log = logging.getLogger(__name__)

CALIBRATION = [{"role": "user", "content": "Count from one to twenty in words, separated by commas."}]


@register_generator("llama_cpp")
class LlamaCppGenerator(Generator):
    def __init__(self, *, config: GeneratorConfig) -> None:
        super().__init__(config=config)
        self._server = None
        self._client: Generator | None = None
        self._lora: Path | None = None
        self._speeds: tuple[float | None, float | None] = (None, None)   # kept across restarts (same model)
        self.calibration: dict | None = None
        if config.adapter:
            self._lora = self._gguf_adapter(Path(config.adapter))

    def model_path(self) -> Path:
        directory, gguf = resolve_weights(self.config)
        if gguf is None:
            raise ConfigError("the llama_cpp backend needs a .gguf model or a bundled model name")
        return Path(directory) / gguf

    def _chat_template(self, model: Path) -> str | None:
        """None when the GGUF carries a template; the configured one when it does not; else refuse."""
        from agent.generators.catalogue import gguf_header
        if gguf_header(model).get("tokenizer.chat_template"):
            return self.config.chat_template
        if self.config.chat_template is None:
            raise ConfigError(f"{model.name} has no chat template (a base model?): llama.cpp would fall back to a "
                              "generic chat format and the model would ramble. Pass generator.chat_template, or "
                              "use an instruct model")
        log.warning("%s has no chat template; using generator.chat_template", model.name)
        return self.config.chat_template

    def _client_ready(self) -> Generator:
        if self._client is None:
            from agent.generators.local_server import start_llama_server
            model = self.model_path()
            self._server = start_llama_server(model=model, threads=self.config.threads or 1,
                                              loras=[self._lora] if self._lora else [],
                                              chat_template=self._chat_template(model))
            atexit.register(self.close)
            deadline = self.config.deadline_s
            client = make_generator(self.config.model_copy(update={
                "backend": "openai", "base_url": self._server.base_url, "model": model.name, "grammar_field": True,
                "stream": True, "read_timeout_s": max(self.config.read_timeout_s, deadline)}))
            client.prompt_tps, client.decode_tps = self._speeds
            if client.decode_tps is None:
                self.calibration = self._calibrate(client)
            self._client = client
        return self._client

    @staticmethod
    def _calibrate(client) -> dict:
        """One short answer: loads the weights into memory and measures this machine's speed."""
        gen = client.generate(CALIBRATION, sampling=SamplingConfig(temperature=0.0, max_new_tokens=16))[0]
        return {"seconds": gen.seconds, "tokens": gen.tokens, "prompt_tps": client.prompt_tps,
                "decode_tps": client.decode_tps}

    def generate(self, messages: Messages, *, n: int = 1, sampling: SamplingConfig | None = None) -> list[Generation]:
        client = self._client_ready()
        out = client.generate(messages, n=n, sampling=sampling)
        self._speeds = (client.prompt_tps, client.decode_tps)
        return out

    @property
    def accepts_grammar(self) -> bool:
        return True

    @property
    def speeds(self) -> dict[str, float | None]:
        """Measured prompt and decode tokens/s (None before the first answer)."""
        client = self._client
        prompt, decode = (client.prompt_tps, client.decode_tps) if client is not None else self._speeds
        return {"prompt_tokens_per_s": prompt, "decode_tokens_per_s": decode}

    def _gguf_adapter(self, adapter: Path) -> Path:
        from agent.generators.gguf_lora import ensure_gguf_adapter
        return ensure_gguf_adapter(adapter, base=self.model_path())

    def load_adapter(self, path: str | Path, *, version: int) -> None:
        """Serve the base with this adapter from now on (converted to a GGUF LoRA once)."""
        self._lora = self._gguf_adapter(Path(path))
        self.config = self.config.model_copy(update={"adapter": str(path), "adapter_version": version})
        self.close()          # the next call starts a server with the new adapter

    def describe(self) -> dict:
        info = super().describe()
        info["served_by"] = "llama.cpp server" + (" + GGUF LoRA" if self._lora else "")
        return info

    def close(self) -> None:
        if self._client is not None:
            self._speeds = (self._client.prompt_tps, self._client.decode_tps)
        if self._server is not None:
            self._server.stop()
        self._server, self._client = None, None
