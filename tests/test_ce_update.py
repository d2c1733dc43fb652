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
