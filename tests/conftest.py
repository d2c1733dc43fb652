"""Shared fixtures. Tests run against tiny real data and real training, nothing mocked."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One dataset cache per test session (ENSNAS_CACHE if set, so CI can reuse it)."""
    env = os.environ.get("ENSNAS_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("ensnas-cache")


@pytest.fixture(scope="session")
def digits_task():
    from evaluator.tasks import get_task
    from evaluator.tasks import ProxyBudget
    task = get_task("digits")
    return task.model_copy(update={"budget": ProxyBudget(epochs=3, batch_size=64, lr=3e-3)})


@pytest.fixture(scope="session")
def digits_evaluator(digits_task, cache_dir):
    from evaluator.evaluate import Evaluator
    from sandbox import Limits, make_sandbox
    return Evaluator(task=digits_task, sandbox=make_sandbox("subprocess"), limits=Limits(timeout_s=120),
                     cache_dir=cache_dir)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny ops (LSTM controllers, small subnetworks): intra-op threads only add contention
    (30x slower on a loaded 2-core box). Use with pytestmark = pytest.mark.usefixtures(...)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def program(name: str) -> str:
    return (PROGRAMS / name).read_text()


def _unavailable(what: str, why: str):
    """Skip locally, but fail in CI: a skipped Docker/Ray test there would hide a real gap."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but unavailable: {why}", pytrace=False)
    pytest.skip(f"{what} unavailable: {why}")


@pytest.fixture(scope="session")
def docker_sandbox():
    """A DockerSandbox whose daemon answers (and whose offline base image exists)."""
    from evaluator.failures import SandboxUnavailable
    from sandbox import make_sandbox
    sandbox = make_sandbox("docker")
    try:
        sandbox.check_available()
    except SandboxUnavailable as exc:
        _unavailable("a Docker daemon", str(exc))
    return sandbox


@pytest.fixture(scope="session")
def ray_module():
    """The `ray` package (the `ray` extra); fails in CI when missing."""
    try:
        import ray
    except ImportError as exc:
        _unavailable("ray (pip install 'ensnas[ray]')", str(exc))
    return ray
