"""The CE update: elite examples, delta blocks that re-create the elite, and a real LoRA SFT step."""
from __future__ import annotations

import numpy as np
import pytest

from agent.ce_update import delta_blocks, train_adapter
from agent.delta import apply_output
from agent.proposers.mutation import mutate
from evaluator.tasks import get_task


@pytest.mark.parametrize("seed", range(12))
def test_delta_blocks_recreate_the_child(seed):
    parent = get_task("digits").seed_source()
    child, _ = mutate(parent, np.random.default_rng(seed), edits=3)
    result = apply_output(parent, delta_blocks(parent, child), mode="delta")
    assert result.ok, result.detail
    assert result.source == child


@pytest.fixture(scope="module")
def tiny_llama():
    """A tiny random Llama with the bundled SmolLM2 tokenizer (offline)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from agent.generators.catalogue import model_file
    small = model_file("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(small.parent, gguf_file=small.name)
    import torch
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    return LlamaForCausalLM(config), tokenizer


@pytest.mark.slow
def test_lora_sft_lowers_the_loss_and_saves_a_peft_adapter(tiny_llama, tmp_path):
    model, tokenizer = tiny_llama
    parent = "import torch.nn as nn\nHIDDEN = 32\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(HIDDEN, num_classes)\n"
    child = parent.replace("HIDDEN = 32", "HIDDEN = 64")
    example = {"prompt": [{"role": "system", "content": "Edit the program."}, {"role": "user", "content": parent}],
               "completion": [{"role": "assistant", "content": delta_blocks(parent, child)}], "candidate": 2}
    metrics = train_adapter(model, tokenizer, [example], tmp_path / "v1", rank=8, alpha=16, epochs=20, lr=5e-2,
                            max_steps=8)
    assert (tmp_path / "v1" / "adapter_config.json").exists()
    assert any(p.name.startswith("adapter_model") for p in (tmp_path / "v1").iterdir())
    assert metrics["steps"] == 8
    assert metrics["train_loss_last"] < metrics["train_loss_first"]  # the loss on the elite falls
    from peft import PeftModel
    import torch
    tuned = PeftModel.from_pretrained(model, str(tmp_path / "v1"))
    ids = tokenizer("<<<<<<< SEARCH", return_tensors="pt").input_ids
    with torch.no_grad():
        with tuned.disable_adapter():
            base_logits = tuned(ids).logits
        assert not torch.allclose(tuned(ids).logits, base_logits)


def _examples(k: int) -> list[dict]:
    parent = "import torch.nn as nn\nHIDDEN = 32\n\ndef build_model(input_shape, num_classes):\n    return nn.Linear(HIDDEN, num_classes)\n"
    out = []
    for i in range(k):
        child = parent.replace("HIDDEN = 32", f"HIDDEN = {64 + i}")
        out.append({"prompt": [{"role": "user", "content": parent}],
                    "completion": [{"role": "assistant", "content": delta_blocks(parent, child)}], "candidate": i})
    return out


@pytest.mark.slow
def test_epochs_are_honoured_max_steps_only_caps_and_the_console_stays_quiet(tiny_llama, tmp_path, capsys):
    """The defect: max_steps=30 ran regardless of epochs (3 examples, epochs 2 -> 30 steps = 10 epochs),
    and trainer printed raw {'loss': ...} dicts."""
    import copy
    model, tokenizer = tiny_llama
    seen = []
    metrics = train_adapter(copy.deepcopy(model), tokenizer, _examples(3), tmp_path / "a", epochs=2, max_steps=30,
                            progress=lambda step, total, loss: seen.append((step, total)))
    assert metrics["steps"] == 6 and metrics["epochs"] == 2 and metrics["seconds_per_example"] > 0
    assert seen[-1] == (6, 6) and len(seen) == 6
    capped = train_adapter(copy.deepcopy(model), tokenizer, _examples(3), tmp_path / "b", epochs=5, max_steps=4)
    assert capped["steps"] == 4 and capped["planned_steps"] == 15
    out = capsys.readouterr()
    assert "{'loss'" not in out.out + out.err


@pytest.mark.slow
def test_worker_process_trains_records_peak_memory_and_keeps_chatter_in_the_log(tiny_llama, tmp_path):
    from agent.ce_update import run_worker
    from agent.config import CEUpdateConfig
    model, tokenizer = tiny_llama
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    ce = CEUpdateConfig(epochs=1, max_steps=30)
    metrics = run_worker(_examples(2), tmp_path / "v1", model_dir=tmp_path / "base", gguf_file=None, ce=ce, seed=0,
                         log_path=tmp_path / "ce_update.log")
    assert metrics["steps"] == 2 and metrics["peak_rss_mb"] > 50 and (tmp_path / "v1" / "adapter_config.json").exists()
    assert "gguf_adapter" not in metrics        # a transformers checkpoint has no GGUF to serve it


@pytest.mark.slow
@pytest.mark.integration
def test_gguf_lora_through_llama_cpp_matches_transformers_peft(tmp_path):
    """A PEFT adapter on the real SmolLM2-135M (llama architecture: the q/k row permutation matters),
    converted by agent.generators.gguf_lora and served by the llama.cpp server: the adapted server's
    next-token log-probabilities differ from the base server's, and match transformers + PEFT on the
    de-quantised weights within quantisation tolerance."""
    import http.client
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agent.generators.catalogue import model_file
    from agent.generators.gguf_lora import peft_to_gguf
    from agent.generators.local_server import start_llama_server

    base = model_file("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(base.parent, gguf_file=base.name)
    model = AutoModelForCausalLM.from_pretrained(base.parent, gguf_file=base.name, dtype=torch.float32).eval()
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                            lora_dropout=0.0, init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.08)
    peft.save_pretrained(tmp_path / "adapter")
    gguf_adapter = peft_to_gguf(tmp_path / "adapter", base)
    text = "def build_model(input_shape, num_classes):\n    layers = [nn.Flatten()]\n    width ="
    ids = tokenizer(text).input_ids
    with torch.no_grad():
        adapted = torch.log_softmax(peft(torch.tensor([ids])).logits[0, -1], -1)
        with peft.disable_adapter():
            plain = torch.log_softmax(peft(torch.tensor([ids])).logits[0, -1], -1)

    def served(loras) -> dict[int, float]:
        with start_llama_server(model=base, loras=loras) as server:
            port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/completion", body=json.dumps({"prompt": ids, "n_predict": 1, "n_probs": 40,
                                                                 "temperature": 0, "cache_prompt": False}),
                         headers={"Content-Type": "application/json"})
            top = json.loads(conn.getresponse().read())["completion_probabilities"][0]["top_logprobs"]
        return {t["id"]: t["logprob"] for t in top}

    server_plain, server_adapted = served([]), served([gguf_adapter])
    shared = sorted(set(server_adapted) & set(server_plain))
    effect_llama = np.array([server_adapted[t] - server_plain[t] for t in shared])
    effect_hf = np.array([(adapted[t] - plain[t]).item() for t in shared])
    base_gap = max(abs(server_plain[t] - plain[t].item()) for t in server_plain)     # quantised arithmetic alone
    adapted_gap = max(abs(server_adapted[t] - adapted[t].item()) for t in server_adapted)
    assert np.abs(effect_hf).mean() > 0.2, "the test adapter is too weak to tell anything"
    assert np.abs(effect_llama).mean() > 0.2                                          # the adapter is applied
    # ... and applied the same way: no disagreement beyond quantisation (measured: base 0.21, adapted 0.23,
    # corr 0.97; without the q/k permutation: adapted 0.74, corr 0.90)
    assert adapted_gap < base_gap + 0.1, (adapted_gap, base_gap)
    assert np.corrcoef(effect_llama, effect_hf)[0, 1] > 0.94


@pytest.mark.slow
def test_the_dequantised_base_is_cached_by_its_sha_and_loads_the_same_model(tmp_path, monkeypatch):
    """The CE update's slow part was de-quantising the GGUF on every update. The first load now saves
    the float copy in the model cache under the GGUF's SHA-256; later loads read it and get exactly
    the same weights and tokenizer (chat template included); another SHA or cache=False never reads it."""
    import torch

    from agent.ce_update import COMPLETE, dequantised_dir, load_base
    from agent.generators.catalogue import MODELS, model_file
    monkeypatch.setenv("ENSNAS_CACHE_DIR", str(tmp_path / "cache"))
    base, sha = model_file("smollm2-135m"), MODELS["smollm2-135m"].sha256
    first, tok1, info1 = load_base(base.parent, base.name, "float32", sha256=sha)
    assert info1["load_source"] == "gguf" and info1["save_seconds"] > 0
    assert (dequantised_dir(base, "float32", sha) / COMPLETE).is_file()
    assert not list(dequantised_dir(base, "float32", sha).parent.glob(".*partial"))
    second, tok2, info2 = load_base(base.parent, base.name, "float32", sha256=sha)
    assert info2["load_source"] == "cache"
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    text = "<<<<<<< SEARCH\nHIDDEN = 128\n"
    assert tok1(text).input_ids == tok2(text).input_ids and tok1.chat_template == tok2.chat_template
    assert "quantization_config" not in (dequantised_dir(base, "float32", sha) / "config.json").read_text()
    _, _, off = load_base(base.parent, base.name, "float32", sha256=sha, cache=False)
    assert off["load_source"] == "gguf" and off["save_seconds"] is None
    assert dequantised_dir(base, "float32", "0" * 64) != dequantised_dir(base, "float32", sha)
