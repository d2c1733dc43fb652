"""The cross-entropy update (docs/theory.md T6.1): LoRA fine-tune the generator on the elites.

Maximum likelihood of the elite programs under the generator is the CE update restricted to the
model family. Each example is (prompt → accepted delta): the exact prompt and answer the LLM
proposer used, or — for elites another proposer found (DARTS, RL, evolution) — the prompt the LLM
would have seen for that parent and the SEARCH/REPLACE blocks that turn the parent into the elite,
so the generator learns from every proposer. Each adapter version is saved in the standard PEFT
layout under RUN/adapters/vN and recorded in the store; the generator backends load it.
"""
from __future__ import annotations

import copy
import difflib
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("ensnas")


def delta_blocks(parent: str, child: str, *, context: int = 1) -> str:
    """SEARCH/REPLACE blocks that turn `parent` into `child` (each SEARCH unique in the parent)."""
    a, b = parent.splitlines(), child.splitlines()
    blocks = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        lo, hi = i1, i2
        # widen until the SEARCH text is non-empty and occurs once in the parent
        while True:
            search = a[lo:hi]
            text = "\n".join(search)
            if search and "\n".join(a).count(text) == 1:
                break
            if lo == 0 and hi == len(a):
                break
            lo, hi = max(0, lo - context), min(len(a), hi + context)
        replace = a[lo:i1] + b[j1:j2] + a[i2:hi]
        blocks.append("<<<<<<< SEARCH\n" + "\n".join(search) + "\n=======\n" + "\n".join(replace)
                      + "\n>>>>>>> REPLACE")
    return "\n\n".join(blocks)


def elite_examples(store, *, members: int, elites: int, task, renderer=None) -> list[dict[str, Any]]:
    """(prompt messages, completion) pairs from the elite candidates, best first."""
    from agent.loop import predicted
    # the elite quantile of the samples: accepted candidates, and those whose point estimate beat the
    # incumbent even if the bound was not yet confident (the CE method ranks samples, it does not test them)
    def elite(r) -> bool:
        return r.status == "accepted" or (r.status == "rejected" and (r.decision or {}).get("predicted_improvement", 0) > 0)
    rows = sorted((r for r in store.candidates(status=("accepted", "rejected"))
                   if r.statistics and r.parent_id and elite(r)), key=lambda r: predicted(r, members))[:elites]
    examples = []
    for row in rows:
        meta = row.meta or {}
        if row.proposer == "llm" and meta.get("prompt") and meta.get("raw_outputs") and meta.get("mode") == "delta":
            prompt, completion = meta["prompt"], meta["raw_outputs"][-1]
        else:
            if renderer is None:
                from prompts import PromptRenderer
                renderer = PromptRenderer()
            parent = store.candidate(row.parent_id)
            prompt = renderer.proposal_messages(task=task, source=parent.source, mode="delta", members=members,
                                                statistics=parent.statistics, history=[])
            completion = delta_blocks(parent.source, row.source)
        if completion.strip():
            examples.append({"prompt": prompt, "completion": [{"role": "assistant", "content": completion}],
                             "candidate": row.id})
    return examples


def train_adapter(model, tokenizer, examples: list[dict[str, Any]], out_dir: Path, *, rank: int = 8, alpha: int = 16,
                  epochs: int = 2, lr: float = 2e-4, max_steps: int = 30, seed: int = 0) -> dict[str, Any]:
    """LoRA SFT with trl on (prompt → completion) pairs, loss on the completion only; saves a PEFT adapter."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    args = SFTConfig(output_dir=str(out_dir / "_trainer"), num_train_epochs=epochs, max_steps=max_steps,
                     learning_rate=lr, per_device_train_batch_size=1, gradient_accumulation_steps=1,
                     logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=seed,
                     completion_only_loss=True, max_length=2048, bf16=False, fp16=False,
                     disable_tqdm=True)
    lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainable = copy.deepcopy(model)
    if getattr(trainable, "hf_quantizer", None) is not None:
        # a GGUF checkpoint is de-quantised to float on load; only the marker says "quantized"
        trainable.hf_quantizer = None
        trainable.is_quantized = False
        if hasattr(trainable.config, "quantization_config"):
            del trainable.config.quantization_config
    trainer = SFTTrainer(model=trainable, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=lora)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    trainer.model.save_pretrained(str(out_dir))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {"train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
               "steps": int(result.global_step), "seconds": seconds, "examples": len(examples)}
    import shutil
    shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
    return metrics


def fine_tune_on_elites(loop, cycle: int) -> Path | None:
    """The loop's hook: build the elite set, train adapter v(N+1), record it, hand it to the proposers."""
    from agent.generators.base import GeneratorConfig, resolve_weights
    from agent.generators.transformers_backend import load_base

    ce = loop.config.ce_update
    examples = elite_examples(loop.store, members=loop.members, elites=ce.elites, task=loop.task)
    if len(examples) < ce.min_examples:
        log.info("CE update after cycle %d skipped: %d elite example(s) < %d", cycle, len(examples), ce.min_examples)
        return None
    gen_cfg = GeneratorConfig.model_validate(loop.config.generator)
    if gen_cfg.backend == "openai":
        log.warning("CE update skipped: the openai backend serves remote weights that ensnas cannot fine-tune")
        return None
    directory, gguf = resolve_weights(gen_cfg)
    model, tokenizer = load_base(directory, gguf, gen_cfg.dtype)
    version = len(loop.store.adapters()) + 1
    out_dir = loop.run_dir / "adapters" / f"v{version}"
    log.info("CE update after cycle %d: LoRA fine-tune on %d elite example(s) → %s", cycle, len(examples), out_dir)
    metrics = train_adapter(model, tokenizer, examples, out_dir, rank=ce.lora_rank, alpha=ce.lora_alpha,
                            epochs=ce.epochs, lr=ce.lr, max_steps=ce.max_steps, seed=loop.config.seed + cycle)
    metrics["candidates"] = [e["candidate"] for e in examples]
    (out_dir / "ensnas_examples.json").write_text(json.dumps(examples, indent=1))
    with loop.store.transaction() as db:
        db.execute("INSERT INTO adapters(version, cycle, path, examples, seconds, metrics, created) VALUES(?,?,?,?,?,?,?)",
                   (version, cycle, str(out_dir), len(examples), metrics["seconds"], json.dumps(metrics), time.time()))
    for _, proposer in loop.proposers:
        if hasattr(proposer, "use_adapter"):
            proposer.use_adapter(str(out_dir))
    return out_dir
