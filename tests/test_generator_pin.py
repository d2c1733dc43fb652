"""A resumed run keeps the generator it started with (agent/generators/pin.py): the model a new run
resolved to is saved explicit with the weights' SHA-256; a changed default does not switch it,
changed weights behind the same name are refused in one line, and only --generator switches
(recorded with the cycle it starts). Driven through the real `ensnas resume` up to the loop."""
from __future__ import annotations

import dataclasses

import pytest

from agent.cli import main
from agent.commands import run as run_cmd
from agent.config import RunConfig
from agent.generators import catalogue
from agent.generators.catalogue import MODELS
from agent.generators.pin import GeneratorChanged, identity, pin_new_run, pin_resumed_run
from agent.loop import SearchLoop
from agent.store import RunStore
from tests.test_generators_catalogue import fake_model, write_gguf  # noqa: F401 - a fixture
from tests.test_loop import FAST_TASK


@pytest.fixture()
def fast_task(tmp_path) -> str:
    path = tmp_path / "task.yaml"
    path.write_text(FAST_TASK)
    return str(path)


@pytest.fixture()
def two_models(fake_model, monkeypatch):  # noqa: F811
    """fake-model (the default when the run starts) and fake-model-2 (the default later)."""
    model = fake_model[0]
    monkeypatch.setitem(MODELS, "fake-model-2", dataclasses.replace(model, name="fake-model-2", sha256="2" * 64))
    monkeypatch.setattr(catalogue, "DEFAULT_MODEL", "fake-model")
    return model


def _start(run_dir, task, generator: dict) -> None:
    """A run created the way `ensnas run` creates it (the loop's setup), stopped before any cycle."""
    config = RunConfig.load(None, task=task, cycles=1, proposers=[{"name": "llm", "candidates": 1}],
                            generator=generator, sandbox={"backend": "subprocess", "workers": 1})
    SearchLoop(run_dir=run_dir, config=config, progress=False).close()


def _resume(capsys, monkeypatch, run_dir, *flags) -> tuple[int, str, str, dict]:
    """`ensnas resume` through setup and the loop's construction; the loop itself is not run."""
    seen: dict = {}

    def finish(loop, args):
        seen["config"] = loop.config
        loop.close()
        return 0
    monkeypatch.setattr(run_cmd, "_finish", finish)
    code = main(["resume", str(run_dir), "--quiet", *flags])
    out = capsys.readouterr()
    return code, out.out, out.err, seen


def test_resume_keeps_the_bundled_model_the_run_started_with(tmp_path, two_models, monkeypatch, capsys, fast_task,
                                                             cache_dir):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    _start(run_dir, fast_task, {"backend": "llama_cpp"})           # model unset: the default at the time
    with RunStore(run_dir, read_only=True) as store:
        assert store.get_meta("config")["generator"]["model"] == "fake-model"
        assert store.get_meta("generator")["current"]["sha256"] == two_models.sha256
        assert two_models.sha256[:12] in store.get_meta("versions")["generator"]

    monkeypatch.setattr(catalogue, "DEFAULT_MODEL", "fake-model-2")    # a newer ensnas, another default
    code, out, err, seen = _resume(capsys, monkeypatch, run_dir)
    assert code == 0, err
    assert seen["config"].generator["model"] == "fake-model" and "fake-model-2" not in out

    monkeypatch.setitem(MODELS, "fake-model", dataclasses.replace(two_models, sha256="f" * 64))  # new weights, same name
    before = (run_dir / "run.sqlite").read_bytes()
    code, out, err, seen = _resume(capsys, monkeypatch, run_dir)
    assert code == 2 and "not the one it started with" in err and "--generator fake-model" in err
    assert not seen and (run_dir / "run.sqlite").read_bytes() == before

    code, out, err, seen = _resume(capsys, monkeypatch, run_dir, "--generator", "fake-model-2")
    assert code == 0, err
    assert seen["config"].generator["model"] == "fake-model-2"
    with RunStore(run_dir, read_only=True) as store:
        meta = store.get_meta("generator")
        assert meta["current"]["model"] == "fake-model-2" and meta["current"]["from_cycle"] == 1
        assert [r["model"] for r in meta["before"]] == ["fake-model"]
    code, _, err, seen = _resume(capsys, monkeypatch, run_dir)             # and it stays switched
    assert code == 0 and seen["config"].generator["model"] == "fake-model-2"


def test_a_run_saved_without_its_model_is_pinned_on_resume_and_says_so(tmp_path, two_models, monkeypatch, capsys,
                                                                       fast_task, cache_dir):
    monkeypatch.setenv("ENSNAS_CACHE", str(cache_dir))
    run_dir = tmp_path / "run"
    _start(run_dir, fast_task, {"backend": "llama_cpp"})
    with RunStore(run_dir) as store:                       # as runs made before pinning were saved
        config = store.get_meta("config")
        config["generator"].pop("model")
        store.set_meta("config", config)
        store.set_meta("generator", None)
    code, out, err, seen = _resume(capsys, monkeypatch, run_dir)
    assert code == 0, err
    assert "did not name its generator; it continues with fake-model" in out
    with RunStore(run_dir, read_only=True) as store:
        assert store.get_meta("config")["generator"]["model"] == "fake-model"
        assert store.get_meta("generator")["current"]["model"] == "fake-model"
    monkeypatch.setattr(catalogue, "DEFAULT_MODEL", "fake-model-2")
    code, out, err, seen = _resume(capsys, monkeypatch, run_dir)
    assert code == 0 and seen["config"].generator["model"] == "fake-model" and "warning" not in out


def test_a_gguf_file_is_hashed_and_a_changed_file_refused(tmp_path):
    gguf = write_gguf(tmp_path / "m.gguf", template="{{ x }}")
    config = RunConfig.load(None, proposers=[{"name": "llm"}], generator={"backend": "llama_cpp", "model": str(gguf)})
    config, meta = pin_new_run(config)
    assert meta["current"]["kind"] == "file" and meta["current"]["sha256"] == catalogue.sha256_file(gguf)
    same, kept, warning = pin_resumed_run(config, meta, switched=False, next_cycle=3)
    assert kept == meta and warning is None
    write_gguf(gguf, template="{{ y }}")                   # other weights at the same path
    with pytest.raises(GeneratorChanged, match="not the one it started with"):
        pin_resumed_run(config, meta, switched=False, next_cycle=3)
    _, switched, _ = pin_resumed_run(config, meta, switched=True, next_cycle=3)
    assert switched["current"]["from_cycle"] == 3 and switched["current"]["sha256"] != meta["current"]["sha256"]
    no_llm = RunConfig.load(None, proposers=[{"name": "random"}])
    assert pin_new_run(no_llm) == (no_llm, None)
    assert identity({"backend": "openai", "base_url": "http://127.0.0.1:9/v1"})["kind"] == "url"
