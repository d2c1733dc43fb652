"""PEFT LoRA adapter -> GGUF LoRA adapter, so the llama.cpp server serves the fine-tuned generator.

The CE update trains a PEFT adapter on the transformers model (de-quantised from the GGUF); the
llama.cpp server takes LoRA adapters in its own GGUF layout (what llama.cpp's
convert_lora_to_gguf.py writes): ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha``, and per adapted weight ``blk.N.attn_q.weight.lora_a`` (rank x in) and
``.lora_b`` (out x rank), named by the `gguf` package's tensor-name map for the base's
architecture. llama.cpp scales each product by alpha / rank, as PEFT does.

One architecture detail: llama.cpp's converter permutes the rows of the query and key
projections of `llama`-architecture models (its rotary layout), and transformers undoes that
permutation when it loads such a GGUF. W = B·A, so the same row permutation applied to B keeps
the adapter aligned with the served weights. Qwen2 and Gemma 3 are stored unpermuted.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluator.failures import ConfigError

PERMUTED_QK_ARCHS = {"llama"}      # architectures whose q/k rows llama.cpp's converter permutes
ADAPTER_FILE = "adapter_model.gguf"


def permute_rows(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf `permute` (rotary halves interleaved per head), on rows."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _base_info(base: Path) -> dict:
    from gguf import GGUFReader
    reader = GGUFReader(str(base), "r")

    def field(key: str):
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    arch = field("general.architecture")
    return {"arch": arch, "n_head": field(f"{arch}.attention.head_count"),
            "n_head_kv": field(f"{arch}.attention.head_count_kv"), "n_blocks": field(f"{arch}.block_count")}


def peft_to_gguf(adapter_dir: str | Path, base: str | Path, out: str | Path | None = None) -> Path:
    """Write the PEFT adapter in `adapter_dir` as a GGUF LoRA for the GGUF model `base`."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir, base = Path(adapter_dir), Path(base)
    out = Path(out) if out else adapter_dir / ADAPTER_FILE
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{adapter_dir} is not a PEFT adapter directory: {exc}") from exc
    if config.get("use_dora") or config.get("modules_to_save") or config.get("bias", "none") != "none":
        raise ConfigError(f"{adapter_dir}: only plain LoRA (no DoRA, biases or saved modules) converts to GGUF")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    if config.get("use_rslora"):           # PEFT scales by alpha/sqrt(r), llama.cpp by alpha/r
        alpha *= rank ** 0.5
    info = _base_info(base)
    arch_enum = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}.get(info["arch"])
    if arch_enum is None:
        raise ConfigError(f"{base}: architecture {info['arch']!r} unknown to the gguf package")
    names = gguf.get_tensor_name_map(arch_enum, int(info["n_blocks"]))
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        stem, _, kind = key.rpartition(".lora_")        # ...q_proj.lora_A.weight -> (...q_proj, A.weight)
        if kind not in ("A.weight", "B.weight"):
            raise ConfigError(f"{adapter_dir}: unexpected adapter tensor {key}")
        hf_name = stem.removeprefix("base_model.model.") + ".weight"
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise ConfigError(f"{adapter_dir}: no GGUF tensor for {hf_name} ({info['arch']})")
        pairs.setdefault(gguf_name, {})[kind[0]] = value.astype(np.float32)
    if info["arch"] in PERMUTED_QK_ARCHS:
        for name, pair in pairs.items():
            if ".attn_q." in name:
                pair["B"] = permute_rows(pair["B"], int(info["n_head"]), int(info["n_head"]))
            elif ".attn_k." in name:
                pair["B"] = permute_rows(pair["B"], int(info["n_head"]), int(info["n_head_kv"]))
    writer = gguf.GGUFWriter(str(out), info["arch"])
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name in sorted(pairs):
        pair = pairs[name]
        if set(pair) != {"A", "B"}:
            raise ConfigError(f"{adapter_dir}: {name} lacks its lora_A or lora_B")
        writer.add_tensor(f"{name}.lora_a", pair["A"])      # [rank, in]
        writer.add_tensor(f"{name}.lora_b", pair["B"])      # [out, rank]
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def ensure_gguf_adapter(adapter_dir: str | Path, *, base: str | Path) -> Path:
    """The GGUF form of a PEFT adapter (converted once, next to it); a .gguf path is taken as is."""
    adapter_dir = Path(adapter_dir)
    if adapter_dir.suffix == ".gguf" and adapter_dir.is_file():
        return adapter_dir
    out = adapter_dir / ADAPTER_FILE
    source = adapter_dir / "adapter_model.safetensors"
    if not source.is_file():
        raise ConfigError(f"{adapter_dir} has no adapter_model.safetensors (not a PEFT LoRA adapter)")
    if out.is_file() and out.stat().st_mtime >= source.stat().st_mtime:
        return out
    return peft_to_gguf(adapter_dir, base, out)
