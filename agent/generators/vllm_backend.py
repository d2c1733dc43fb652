"""vLLM backend (optional extra ``ensnas[vllm]``, CUDA only): batched sampling, one LoRA per adapter version.

Uses vLLM's offline API: ``LLM(model=..., enable_lora=True, max_lora_rank=...)``,
``LLM.chat(conversations, SamplingParams(...), lora_request=LoRARequest(name, int_id, path))``.
Each adapter version the CE update writes gets its own ``LoRARequest`` with a fresh integer id,
so vLLM loads it next to the base weights without restarting the engine.

A GGUF checkpoint needs a tokenizer directory (config.tokenizer): vLLM does not take one from
the GGUF offline. Importing vLLM or lacking CUDA raises GeneratorUnavailable, never ImportError.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent.generators.base import (Generation, Generator, GeneratorConfig, GeneratorError, GeneratorUnavailable,
                                   Messages, SamplingConfig, register_generator, resolve_weights)
from evaluator.failures import ConfigError


def _import_vllm() -> tuple[Any, Any, Any]:
    try:
        import torch
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise GeneratorUnavailable("the vllm backend needs `pip install 'ensnas[vllm]'` on a CUDA machine "
                                   f"({exc})") from exc
    if not torch.cuda.is_available():
        raise GeneratorUnavailable("the vllm backend needs a CUDA GPU; use the transformers or openai backend")
    return LLM, SamplingParams, LoRARequest


@register_generator("vllm")
class VLLMGenerator(Generator):
    """One vLLM engine per generator; answers for many conversations come from one batched call."""

    def __init__(self, *, config: GeneratorConfig) -> None:
        super().__init__(config=config)
        LLM, self._SamplingParams, self._LoRARequest = _import_vllm()
        directory, gguf_file = resolve_weights(config)
        model = str(directory / gguf_file) if gguf_file else str(directory)
        tokenizer = config.tokenizer
        if gguf_file and config.tokenizer is None:
            raise ConfigError("vLLM with a GGUF file needs config.tokenizer (a local tokenizer directory)")
        kwargs: dict[str, Any] = {"model": model, "seed": config.sampling.seed, "dtype": config.dtype,
                                  "gpu_memory_utilization": config.gpu_memory_utilization,
                                  "enable_lora": True, "max_lora_rank": config.max_lora_rank}
        if tokenizer:
            kwargs["tokenizer"] = tokenizer
        if config.max_model_len:
            kwargs["max_model_len"] = config.max_model_len
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types while building the engine
            raise GeneratorError(f"vLLM could not load {model}: {exc}") from exc
        self._lora: Any = None
        if config.adapter:
            self.load_adapter(config.adapter, version=config.adapter_version)

    def load_adapter(self, path: str | Path, *, version: int) -> None:
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{path} is not a PEFT adapter directory (no adapter_config.json)")
        self._lora = self._LoRARequest(f"ensnas-v{version}", version, str(path))
        self.config = self.config.model_copy(update={"adapter": str(path), "adapter_version": version})

    def _params(self, s: SamplingConfig, n: int) -> Any:
        return self._SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k or -1,
                                    seed=s.seed, max_tokens=s.max_new_tokens, stop=s.stop or None,
                                    repetition_penalty=s.repetition_penalty or 1.0)

    def _run(self, conversations: list[Messages], params: Any) -> tuple[list[Any], float]:
        start = time.perf_counter()
        try:
            outputs = self.llm.chat(messages=conversations, sampling_params=params, use_tqdm=False,
                                    lora_request=self._lora)
        except Exception as exc:
            raise GeneratorError(f"vLLM generation failed: {exc}") from exc
        return outputs, time.perf_counter() - start

    @staticmethod
    def _convert(output: Any, seconds: float) -> list[Generation]:
        prompt = len(output.prompt_token_ids or [])
        return [Generation(text=o.text, tokens=len(o.token_ids), seconds=seconds, prompt_tokens=prompt,
                           finish_reason="length" if o.finish_reason == "length" else "stop")
                for o in output.outputs]

    def generate(self, messages: Messages, *, n: int = 1, sampling: SamplingConfig | None = None) -> list[Generation]:
        outputs, seconds = self._run([messages], self._params(sampling or self.config.sampling, n))
        return self._convert(outputs[0], seconds)

    batched = True

    def generate_batch(self, conversations: list[Messages], *, sampling: SamplingConfig | None = None,
                       seeds: list[int] | None = None) -> list[Generation]:
        s = sampling or self.config.sampling
        seeds = seeds if seeds is not None else [s.seed + i for i in range(len(conversations))]
        if len(seeds) != len(conversations):
            raise ConfigError("one seed per conversation")
        params = [self._params(s.model_copy(update={"seed": seed}), 1) for seed in seeds]
        outputs, seconds = self._run(conversations, params)
        return [g for out in outputs for g in self._convert(out, seconds)]
