"""The fastest CPU path for a GGUF model: a private llama.cpp server on 127.0.0.1, spoken to
through the `openai` backend. The default of `ensnas run` (the bundled SmolLM2-135M GGUF).

llama.cpp cannot load the PEFT adapters the CE update writes, so `load_adapter` hands
generation to the `transformers` backend with that adapter on the same base weights (slower on
a CPU, but the fine-tuned generator is the one that answers). The server dies with this process.
"""
from __future__ import annotations

import atexit
from pathlib import Path

from agent.generators.base import (Generation, Generator, GeneratorConfig, Messages, SamplingConfig, make_generator,
                                   register_generator, resolve_weights)


@register_generator("llama_cpp")
class LlamaCppGenerator(Generator):
    def __init__(self, *, config: GeneratorConfig) -> None:
        super().__init__(config=config)
        self._server = None
        self._client: Generator | None = None
        self._adapted: Generator | None = None
        if config.adapter:
            self._adapted = make_generator(config.model_copy(update={"backend": "transformers"}))

    def _client_ready(self) -> Generator:
        if self._client is None:
            from agent.generators.local_server import start_llama_server
            directory, gguf = resolve_weights(self.config)
            if gguf is None:
                from evaluator.failures import ConfigError
                raise ConfigError("the llama_cpp backend needs a .gguf model (or the bundled default)")
            self._server = start_llama_server(model=Path(directory) / gguf, threads=self.config.threads or 1)
            atexit.register(self.close)
            self._client = make_generator(self.config.model_copy(
                update={"backend": "openai", "base_url": self._server.base_url, "model": gguf, "grammar_field": True}))
        return self._client

    def generate(self, messages: Messages, *, n: int = 1, sampling: SamplingConfig | None = None) -> list[Generation]:
        if self._adapted is not None:
            return self._adapted.generate(messages, n=n, sampling=sampling)
        return self._client_ready().generate(messages, n=n, sampling=sampling)

    @property
    def accepts_grammar(self) -> bool:
        return self._adapted is None  # the transformers fallback (serving an adapter) takes no grammar

    def load_adapter(self, path: str | Path, *, version: int) -> None:
        self.config = self.config.model_copy(update={"adapter": str(path), "adapter_version": version})
        if self._adapted is None:
            self._adapted = make_generator(self.config.model_copy(update={"backend": "transformers"}))
        else:
            self._adapted.load_adapter(path, version=version)
        self.close()  # the server's weights are stale now

    def describe(self) -> dict:
        info = super().describe()
        info["served_by"] = "transformers+adapter" if self._adapted is not None else "llama.cpp server"
        return info

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server, self._client = None, None
