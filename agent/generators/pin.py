"""Which weights a run's generator is: made explicit when a run starts, checked when it resumes.

A run saved with `generator.model` unset would, on resume, use whatever the catalogue's default
is then (a newer ensnas changed it from SmolLM2-135M to Qwen2.5-Coder-0.5B to -1.5B), and one
search would silently mix two models. So a new run that uses the LLM saves the model it resolved
to (a catalogue name, a .gguf file, a checkpoint directory) in its config, and records what the
weights are (the catalogue's pinned SHA-256, or the file's own hash) as the run's `generator` meta.
`ensnas resume` keeps that model, refuses in one line weights that changed behind the same name,
and switches only when `--generator` says so (the switch is recorded, with the cycle it starts).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evaluator.failures import ConfigError

LOCAL_BACKENDS = ("llama_cpp", "transformers", "vllm")


class GeneratorChanged(ConfigError):
    """The weights behind a run's recorded generator are not those the run started with."""


def _backend(generator: dict) -> str:
    from agent.generators.base import GeneratorConfig
    return generator.get("backend") or GeneratorConfig.model_fields["backend"].default


def pinned(generator: dict) -> dict:
    """The generator config with its model explicit: a local backend's None is the catalogue's default now."""
    from agent.generators import catalogue
    out = dict(generator)
    if _backend(out) in LOCAL_BACKENDS and not out.get("model"):
        out["model"] = catalogue.DEFAULT_MODEL
    return out


def _weights_file(generator: dict) -> Path | None:
    model = generator.get("model")
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_dir() and generator.get("gguf_file"):
        path = path / generator["gguf_file"]
    return path if path.is_file() else None


def identity(generator: dict) -> dict[str, Any]:
    """What a (pinned) generator config's weights are: backend, model, kind (bundled | file |
    checkpoint | url) and SHA-256 where it is knowable (a catalogue pin without reading the file;
    a weights file is hashed once, with its size and mtime kept to skip re-hashing an untouched file)."""
    from agent.generators.catalogue import MODELS, sha256_file
    backend, model = _backend(generator), generator.get("model")
    out: dict[str, Any] = {"backend": backend, "model": model, "sha256": None}
    if backend == "openai":
        return {**out, "kind": "url", "base_url": generator.get("base_url")}
    if model in MODELS:
        return {**out, "kind": "bundled", "sha256": MODELS[model].sha256, "size": MODELS[model].size}
    path = _weights_file(generator)
    if path is None:
        return {**out, "kind": "checkpoint"}
    st = path.stat()
    return {**out, "kind": "file", "path": str(path.resolve()), "sha256": sha256_file(path), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns}


def describe(record: dict | None) -> str | None:
    """One line for the report's versions: the model and the start of its SHA-256."""
    if not record:
        return None
    sha = record.get("sha256")
    return f"{record.get('model') or record.get('base_url')}" + (f" (sha256 {sha[:12]})" if sha else "")


def check_unchanged(recorded: dict | None, generator: dict) -> None:
    """Raise GeneratorChanged when the model recorded at the run's start now names other weights.
    A missing file is left to the setup check (it says 'does not exist' and how to repair)."""
    if not recorded or not recorded.get("sha256") or recorded.get("model") != generator.get("model"):
        return
    from agent.generators.catalogue import MODELS, sha256_file
    model = recorded["model"]
    if recorded.get("kind") == "bundled":
        now = MODELS[model].sha256 if model in MODELS else None
    else:
        path = _weights_file(generator)
        if path is None:
            return
        st = path.stat()
        untouched = (st.st_size, st.st_mtime_ns) == (recorded.get("size"), recorded.get("mtime_ns"))
        now = recorded["sha256"] if untouched else sha256_file(path)
    if now != recorded["sha256"]:
        now_text = f"{now[:12]}…" if now else "not a bundled model any more"
        raise GeneratorChanged(f"the run's generator {model} is not the one it started with (SHA-256 "
                               f"{recorded['sha256'][:12]}… then, {now_text} now): resume with "
                               f"--generator {model} to continue with the weights it names now")


def uses_llm(config) -> bool:
    return any(spec.name == "llm" for spec in config.proposers)


def pin_new_run(config):
    """(config with its generator's model explicit, the generator meta) for a run that starts now;
    (config, None) when no proposer uses the LLM."""
    if not uses_llm(config):
        return config, None
    generator = pinned(config.generator)
    record = {**identity(generator), "from_cycle": 1, "at": time.time()}
    return config.model_copy(update={"generator": generator}), {"current": record, "before": []}


def pin_resumed_run(config, meta: dict | None, *, switched: bool, next_cycle: int):
    """(config, generator meta, warning or None) for a run that resumes: the recorded model, checked
    unchanged; or the one --generator gave (`switched`), recorded from `next_cycle` on. A run saved
    before models were pinned continues with today's default, and the warning says so."""
    if not uses_llm(config):
        return config, meta, None
    meta = dict(meta or {"current": None, "before": []})
    warning = None
    if not switched and not config.generator.get("model") and _backend(config.generator) in LOCAL_BACKENDS:
        warning = (f"this run's config did not name its generator; it continues with {pinned({})['model']}, the "
                   f"default now (pass --generator to choose another)")
    generator = pinned(config.generator)
    current = meta.get("current")
    if not switched:
        check_unchanged(current, generator)
        if current and current.get("model") == generator.get("model") and current.get("backend") == _backend(generator):
            return config.model_copy(update={"generator": generator}), meta, warning
    record = {**identity(generator), "from_cycle": next_cycle, "at": time.time()}
    before = list(meta.get("before") or []) + ([current] if current else [])
    return config.model_copy(update={"generator": generator}), {"current": record, "before": before}, warning
