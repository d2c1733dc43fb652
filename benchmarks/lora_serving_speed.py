"""Decode speed of the llama.cpp server with and without a GGUF LoRA: what the CE update costs generation.

The CE update (agent/ce_update.py) serves the base GGUF plus its adapter, converted to a GGUF LoRA
(agent.generators.gguf_lora), through the same llama.cpp server. llama.cpp applies a LoRA at run
time (extra low-rank matmuls per adapted projection), so decoding may get slower. This measures it
directly: an adapter of the CE update's shape (rank, alpha and target modules from CEUpdateConfig)
is made on the de-quantised base, its B matrices drawn at random (a trained adapter's speed does
not depend on its values; non-zero so the answers must differ, which is checked), then base and
adapted servers answer the same prompts at temperature 0, interleaved A B B A, and the server's own
decode tokens/s are compared as a ratio measured in the same run.

    .venv/bin/python benchmarks/lora_serving_speed.py [--model qwen2.5-coder-1.5b] [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import print_table, write_result  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": "Write a Python function that returns the n-th Fibonacci number iteratively."}],
    [{"role": "user", "content": "Explain in three sentences what dropout does in a neural network."}],
]


def make_adapter(model_name: str, out: Path, *, seed: int = 0) -> dict:
    """A PEFT LoRA of the CE update's shape on the de-quantised base, B drawn at random."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agent.ce_update import dequantised_dir
    from agent.config import CEUpdateConfig
    from agent.generators.catalogue import MODELS, model_file
    ce = CEUpdateConfig()
    gguf = model_file(model_name)
    base_dir = dequantised_dir(gguf, "bfloat16", MODELS[model_name].sha256)
    if not (base_dir / "config.json").exists():
        raise SystemExit(f"no de-quantised base at {base_dir}: run one CE update first (ensnas run, or "
                         "benchmarks/ce_update.py)")
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.bfloat16)
    lora = LoraConfig(r=ce.lora_rank, lora_alpha=ce.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    peft = get_peft_model(model, lora)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) * 0.02)
    peft.save_pretrained(str(out))
    params = sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)
    del peft, model
    return {"rank": ce.lora_rank, "alpha": ce.lora_alpha, "lora_params": params, "seconds": time.perf_counter() - start}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--name", default="lora_serving_speed")
    args = ap.parse_args()
    from agent.generators.base import SamplingConfig
    from agent.generators.catalogue import model_file
    from agent.generators.base import make_generator
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ensnas-lora-speed-") as tmp:
        adapter_dir = Path(tmp) / "adapter"
        adapter = make_adapter(args.model, adapter_dir)
        config = {"backend": "llama_cpp", "model": args.model, "threads": args.threads}
        gens = {"base": make_generator(config), "lora": make_generator({**config, "adapter": str(adapter_dir)})}
        gguf_lora = gens["lora"]._lora
        adapter["gguf_bytes"] = gguf_lora.stat().st_size if gguf_lora else None
        sampling = SamplingConfig(temperature=0.0, max_new_tokens=args.tokens, seed=0)
        for g in gens.values():                              # start both servers, load weights, warm the caches
            g.generate(PROMPTS[0], sampling=sampling)
        samples: dict[str, list[float]] = {"base": [], "lora": []}
        texts: dict[str, list[str]] = {"base": [], "lora": []}
        for r in range(args.repeats):
            for name in (("base", "lora", "lora", "base") if r % 2 == 0 else ("lora", "base", "base", "lora")):
                for prompt in PROMPTS:
                    (gen,) = gens[name].generate(prompt, sampling=sampling)
                    tps = (gen.timings or {}).get("predicted_per_second")
                    samples[name].append(float(tps) if tps else gen.tokens / gen.seconds)
                    texts[name].append(gen.text)
        for g in gens.values():
            g.close()
    differs = sum(a != b for a, b in zip(texts["base"], texts["lora"]))
    rows, result = [], {"model": args.model, "threads": args.threads, "repeats": args.repeats,
                        "max_new_tokens": args.tokens, "adapter": adapter, "answers_differ": differs,
                        "answers_compared": len(texts["base"]), "loadavg_before": load_before,
                        "loadavg_after": os.getloadavg()}
    for name, xs in samples.items():
        result[name] = {"decode_tokens_per_s_median": float(np.median(xs)), "mean": float(np.mean(xs)),
                        "min": float(np.min(xs)), "max": float(np.max(xs)), "n": len(xs)}
        rows.append([name, len(xs), f"{np.median(xs):.2f}", f"{np.min(xs):.2f}-{np.max(xs):.2f}"])
    result["lora_over_base"] = result["lora"]["decode_tokens_per_s_median"] / result["base"]["decode_tokens_per_s_median"]
    print_table(["server", "answers", "decode tok/s (median)", "range"], rows)
    print(f"LoRA / base decode speed: {result['lora_over_base']:.3f}; answers that differ: {differs} of "
          f"{len(texts['base'])} (the adapter is applied); load {load_before} -> {result['loadavg_after']}")
    print(f"wrote {write_result(args.name, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
