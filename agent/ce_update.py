"""The cross-entropy update (docs/theory.md T6.1): LoRA fine-tune the generator on the elites.

Maximum likelihood of the elite programs under the generator is the CE update restricted to the
model family. Each example is (prompt → accepted delta): the exact prompt and answer the LLM
proposer used, or — for elites another proposer found (DARTS, RL, evolution) — the prompt the LLM
would have seen for that parent and the SEARCH/REPLACE blocks that turn the parent into the elite,
so the generator learns from every proposer. Each adapter version is saved in the standard PEFT
layout under RUN/adapters/vN, converted to a GGUF LoRA next to it (agent.generators.gguf_lora) so
the llama.cpp server keeps serving the generator with grammar-constrained decoding, and recorded
in the store with its metrics.

The fine-tune runs in a child process (``python -m agent.ce_update``): it loads its own copy of
the base (de-quantised from the GGUF; bfloat16 where the CPU has bf16 instructions, gradient
checkpointing for models above 1B parameters), never a deep copy of a cached one, and gives all
its memory back when it exits. The first de-quantisation of a GGUF is kept as safetensors in the
model cache, keyed by the GGUF's SHA-256 (`load_base`), for every later update. Its peak resident memory is measured and recorded. `epochs` is
honoured (steps = epochs x examples; `max_steps` only caps it). Library warnings, loss dicts and
de-quantisation bars go to RUN/ce_update.log; a TTY shows one progress bar.
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

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
                  epochs: int = 2, lr: float = 2e-4, max_steps: int = 30, seed: int = 0,
                  gradient_checkpointing: bool = False,
                  progress: Callable[[int, int, float | None], None] | None = None) -> dict[str, Any]:
    """LoRA SFT with trl on (prompt → completion) pairs, loss on the completion only; saves a PEFT adapter.

    Trains `model` itself (the caller passes a private instance: no copy is made). Steps are
    epochs x examples (batch 1), capped at max_steps. `progress(step, total, loss)` is called
    after each step."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    planned = epochs * len(examples)
    steps = min(planned, max_steps) if max_steps > 0 else planned
    data = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    args = SFTConfig(output_dir=str(out_dir / "_trainer"), num_train_epochs=epochs,
                     max_steps=steps if steps < planned else -1, learning_rate=lr, per_device_train_batch_size=1,
                     gradient_accumulation_steps=1, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                     seed=seed, completion_only_loss=True, max_length=2048, bf16=False, fp16=False,
                     disable_tqdm=True, gradient_checkpointing=gradient_checkpointing)
    lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    _drop_quantized_marker(model)

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if progress is not None and logs and "loss" in logs:
                progress(state.global_step, state.max_steps, logs.get("loss"))

    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora,
                         callbacks=[Report()])
    for quiet in (PrinterCallback, ProgressCallback):   # no raw {'loss': ...} dicts, no second bar
        trainer.remove_callback(quiet)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    trainer.model.save_pretrained(str(out_dir))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    done = int(result.global_step)
    metrics = {"train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
               "steps": done, "epochs": done / max(1, len(examples)), "planned_steps": planned,
               "seconds": seconds, "seconds_per_example": seconds / max(1, done), "examples": len(examples)}
    import shutil
    shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
    return metrics


def _drop_quantized_marker(model) -> None:
    """A GGUF checkpoint is de-quantised to float on load; only a marker still says "quantized"
    (and would stop the trainer and end up in a saved config)."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config


def dequantised_dir(gguf: Path, dtype: str, sha256: str | None = None) -> Path:
    """Where the de-quantised copy of a GGUF lives in the model cache: keyed by the GGUF's SHA-256
    (given, e.g. the catalogue's pin, or hashed here) and the dtype, so other weights never match."""
    from agent.generators.catalogue import cache_dir, sha256_file
    return cache_dir() / "models" / "dequantised" / f"{(sha256 or sha256_file(gguf))[:16]}-{dtype}"


COMPLETE = "ensnas_complete.json"      # written last: a directory without it is an interrupted save


def load_base(model_dir: str | Path, gguf_file: str | None, dtype: str, *, cache: bool = True,
              sha256: str | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, how it was loaded) for training: a private float copy of the base.

    De-quantising a GGUF in transformers is slow (it dominated the CE time: 1012 s for the 0.5B on
    the loaded machine), so the first de-quantisation is saved as safetensors in the model cache
    (dequantised_dir) and later CE updates, in this run or another, load that instead."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    info: dict[str, Any] = {"load_source": "checkpoint", "save_seconds": None}
    start = time.perf_counter()
    if not gguf_file:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        return model, tokenizer, {**info, "load_seconds": time.perf_counter() - start}
    cached = dequantised_dir(Path(model_dir) / gguf_file, dtype, sha256) if cache else None
    if cached is not None and (cached / COMPLETE).is_file():
        tokenizer = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=getattr(torch, dtype))
        return model, tokenizer, {**info, "load_source": "cache", "cache_dir": str(cached),
                                  "load_seconds": time.perf_counter() - start}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file, dtype=getattr(torch, dtype))
    _drop_quantized_marker(model)
    info.update(load_source="gguf", load_seconds=time.perf_counter() - start)
    if cached is not None:
        start = time.perf_counter()
        partial = cached.with_name(f".{cached.name}.{os.getpid()}.partial")
        try:
            model.save_pretrained(partial, safe_serialization=True)
            tokenizer.save_pretrained(partial)
            (partial / COMPLETE).write_text(json.dumps({"gguf": str(Path(model_dir) / gguf_file), "dtype": dtype}))
            partial.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(partial, cached)          # atomic; another process may have saved it first
            except OSError:
                pass
            info.update(save_seconds=time.perf_counter() - start, cache_dir=str(cached))
        except OSError as exc:                       # a full disk costs the cache, not the update
            log.warning("could not cache the de-quantised base in %s: %s", cached, exc)
        finally:
            import shutil
            shutil.rmtree(partial, ignore_errors=True)
    return model, tokenizer, info


def _quiet_libraries() -> None:
    """Library chatter (FutureWarnings, loss dicts, GGUF de-quantisation bars) stays out of the console."""
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        from datasets.utils.logging import disable_progress_bar
        disable_progress_bar()
    except ImportError:  # pragma: no cover - datasets is a dependency of trl
        pass


def _training_dtype(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch
    return "bfloat16" if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() else "float32"


def _peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    """Child process: load a private copy of the base, train, save the PEFT adapter and its GGUF form.
    Progress goes to stdout as JSON lines, everything else to stderr (the run's ce_update.log)."""
    ap = argparse.ArgumentParser(description="CE update worker (run by agent.ce_update.run_worker)")
    ap.add_argument("--examples", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--gguf-file")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--no-cache", action="store_true", help="de-quantise the GGUF, neither using nor saving a cached copy")
    ap.add_argument("--gguf-sha256", help="the GGUF's SHA-256 when known (the cache key; hashed otherwise)")
    args = ap.parse_args(argv)
    _quiet_libraries()

    def emit(**event) -> None:
        print(json.dumps(event), flush=True)

    out = Path(args.out)
    examples = json.loads(Path(args.examples).read_text())
    dtype = _training_dtype(args.dtype)
    model, tokenizer, loaded = load_base(args.model_dir, args.gguf_file, dtype, cache=not args.no_cache,
                                         sha256=args.gguf_sha256)
    load_seconds = loaded["load_seconds"]
    params = sum(p.numel() for p in model.parameters())
    emit(event="loaded", seconds=load_seconds, params=params, dtype=dtype, rss_mb=_peak_rss_mb(),
         source=loaded["load_source"])
    metrics = train_adapter(model, tokenizer, examples, out, rank=args.rank, alpha=args.alpha, epochs=args.epochs,
                            lr=args.lr, max_steps=args.max_steps, seed=args.seed,
                            gradient_checkpointing=params > 1e9,
                            progress=lambda step, total, loss: emit(event="step", step=step, total=total, loss=loss))
    metrics.update(params=params, dtype=dtype, gradient_checkpointing=params > 1e9, **loaded)
    if args.gguf_file:
        from agent.generators.gguf_lora import peft_to_gguf
        metrics["gguf_adapter"] = str(peft_to_gguf(out, Path(args.model_dir) / args.gguf_file))
    metrics["peak_rss_mb"] = _peak_rss_mb()
    (out / "ensnas_metrics.json").write_text(json.dumps(metrics, indent=1))
    emit(event="done", **metrics)
    return 0


def run_worker(examples: list[dict[str, Any]], out_dir: Path, *, model_dir: Path, gguf_file: str | None, ce,
               seed: int, log_path: Path, show_progress: bool = False, gguf_sha256: str | None = None) -> dict[str, Any]:
    """Fine-tune in a child process; returns its metrics (peak memory included). Raises
    GeneratorError with the log's tail if it fails."""
    from agent.generators.base import GeneratorError
    out_dir.mkdir(parents=True, exist_ok=True)
    examples_path = out_dir / "ensnas_examples.json"
    examples_path.write_text(json.dumps(examples, indent=1))
    cmd = [sys.executable, "-m", "agent.ce_update", "--examples", str(examples_path), "--out", str(out_dir),
           "--model-dir", str(model_dir), "--rank", str(ce.lora_rank), "--alpha", str(ce.lora_alpha),
           "--epochs", str(ce.epochs), "--lr", str(ce.lr), "--max-steps", str(ce.max_steps), "--seed", str(seed)]
    if gguf_file:
        cmd += ["--gguf-file", gguf_file]
    if gguf_sha256:
        cmd += ["--gguf-sha256", gguf_sha256]
    if not getattr(ce, "cache_dequantised", True):
        cmd += ["--no-cache"]
    from tqdm import tqdm
    bar = tqdm(total=None, desc="CE update", leave=False, disable=not (show_progress and sys.stderr.isatty()))
    metrics: dict[str, Any] | None = None
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL, text=True)
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "step":
                bar.total = event["total"]
                bar.n = event["step"]
                bar.set_postfix(loss=f"{event['loss']:.3f}" if event.get("loss") is not None else "-")
            elif event.get("event") == "done":
                metrics = {k: v for k, v in event.items() if k != "event"}
        proc.wait()
    bar.close()
    if proc.returncode != 0 or metrics is None:
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
        raise GeneratorError(f"the CE update failed (exit {proc.returncode}; log {log_path}): {tail}")
    return metrics


def fine_tune_on_elites(loop, cycle: int) -> Path | None:
    """The loop's hook: build the elite set, train adapter v(N+1), record it, hand it to the proposers."""
    from agent.generators.base import GeneratorConfig, resolve_weights

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
    version = len(loop.store.adapters()) + 1
    out_dir = loop.run_dir / "adapters" / f"v{version}"
    steps = min(ce.epochs * len(examples), ce.max_steps) if ce.max_steps > 0 else ce.epochs * len(examples)
    log.info("CE update after cycle %d: LoRA fine-tune on %d elite example(s), %d step(s) → %s", cycle, len(examples),
             steps, out_dir)
    from agent.generators.catalogue import MODELS
    pinned = (loop.store.get_meta("generator") or {}).get("current") or {}
    sha = MODELS[gen_cfg.model].sha256 if gen_cfg.model in MODELS else \
        pinned.get("sha256") if pinned.get("model") == gen_cfg.model else None
    metrics = run_worker(examples, out_dir, model_dir=directory, gguf_file=gguf, ce=ce, seed=loop.config.seed + cycle,
                         log_path=loop.run_dir / "ce_update.log", show_progress=getattr(loop, "progress", False),
                         gguf_sha256=sha)
    metrics["candidates"] = [e["candidate"] for e in examples]
    log.info("CE update: base loaded from %s in %.0f s; %d step(s) (%.1f epochs) in %.0f s, %.1f s per example, peak "
             "memory %.0f MB; adapter v%d%s", metrics.get("load_source"), metrics.get("load_seconds") or 0,
             metrics["steps"], metrics["epochs"], metrics["seconds"], metrics["seconds_per_example"],
             metrics["peak_rss_mb"], version, " (+ GGUF LoRA for llama.cpp)" if metrics.get("gguf_adapter") else "")
    with loop.store.transaction() as db:
        db.execute("INSERT INTO adapters(version, cycle, path, examples, seconds, metrics, created) VALUES(?,?,?,?,?,?,?)",
                   (version, cycle, str(out_dir), len(examples), metrics["seconds"], json.dumps(metrics), time.time()))
    for _, proposer in loop.proposers:
        if hasattr(proposer, "use_adapter"):
            proposer.use_adapter(str(out_dir))
    return out_dir


if __name__ == "__main__":
    sys.exit(main())
