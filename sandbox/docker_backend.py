"""The Docker backend (default wherever a daemon answers): one throw-away container per evaluation.

Hardening: no network, read-only root filesystem, private size-capped tmpfs at /tmp (the
working directory) and at the job's out/, memory (no swap) / CPU / pids limits, every capability
dropped, no-new-privileges, uid 65534, file-size and core rlimits, a wall-clock timeout that kills
the container, stdout/stderr counted and capped (the run is killed past the cap), and the container
removed afterwards whatever happened. The filesystem it sees is `sandbox.layout`'s.

PID 1 is sandbox/supervisor.py, not the worker: it kills the worker the moment a tmpfs is full,
kills whatever the worker left running when it exits, and then sends its report and a tar of out/
(which ends with the container) on stderr, which the host extracts before removing the container.

Images: by default the offline base (`sandbox.docker_image`) with the host runtime mounted
read-only; `image=` selects a self-contained image (e.g. one built from `sandbox/Dockerfile`),
which then runs its own `python` with the package installed.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from evaluator.failures import SandboxUnavailable
from sandbox.base import Launched, Sandbox, SandboxJob, SandboxRun, register_sandbox
from sandbox.layout import OUT, SCRATCH, SRC, TMPFS_INODES, job_mounts, runtime_mounts, worker_command, worker_env
from sandbox.output import (OUTPUT_TOO_LARGE, OutputPump, OutputTail, extract_out_tar, inspect_out_dir,
                            supervisor_notes)
from sandbox.supervisor import MARKER

log = logging.getLogger(__name__)
LABEL = "ensnas.sandbox"
SUPERVISOR = Path(__file__).with_name("supervisor.py")
SUPERVISOR_TARGET = f"{SRC}/supervisor.py"
SUPERVISOR_LINGER_S = 300  # after the worker: time for the host to read out/ (a host killed meanwhile: reap_orphans)
OUT_READ_TIMEOUT_S = 120


class DockerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str | None = Field(None, description="self-contained image; None = the offline base + host runtime")
    host_runtime: bool | None = Field(None, description="mount the host Python/venv/evaluator (default: only "
                                                        "for the base image)")
    python: str | None = Field(None, description="interpreter in the container (default: host's for the host "
                                                 "runtime, `python` otherwise)")
    base_url: str | None = Field(None, description="daemon address; default DOCKER_HOST or the local socket")
    user: str = "65534:65534"
    tmpfs_mb: int = Field(256, ge=16, description="size of the private /tmp")
    client_timeout_s: float = Field(30, gt=0)


@register_sandbox("docker")
class DockerSandbox(Sandbox):
    def __init__(self, *, config: DockerConfig | None = None, **fields) -> None:
        self.config = config or DockerConfig(**fields)
        self._client = None
        self._lock = threading.Lock()

    # -- daemon ---------------------------------------------------------------------------
    def _where(self) -> str:
        return self.config.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def client(self):
        with self._lock:
            if self._client is None:
                try:
                    import docker
                    client = (docker.DockerClient(base_url=self.config.base_url, timeout=int(self.config.client_timeout_s))
                              if self.config.base_url else docker.from_env(timeout=int(self.config.client_timeout_s)))
                    client.ping()
                except Exception as exc:  # ImportError, DockerException, connection refused, missing socket
                    raise SandboxUnavailable(
                        f"Docker daemon not reachable at {self._where()}: start it (`dockerd &` / "
                        f"`systemctl start docker`) or use --sandbox process ({type(exc).__name__})") from exc
                self._client = client
                reap_orphans(client)
            return self._client

    def check_available(self) -> None:
        self.image()

    def daemon_answers(self) -> bool:
        try:
            self.client().ping()
            return True
        except Exception:  # noqa: BLE001 - any failure means no
            return False

    def image(self) -> str:
        client = self.client()
        if self.config.image:
            import docker.errors
            try:
                client.images.get(self.config.image)
            except docker.errors.ImageNotFound as exc:
                raise SandboxUnavailable(f"sandbox image {self.config.image!r} is not present: build it with "
                                         "`docker build -f sandbox/Dockerfile -t <tag> .` (needs a registry for "
                                         "its FROM image) or leave image unset for the offline base") from exc
            return self.config.image
        from sandbox.docker_image import ensure_base_image
        return ensure_base_image(client)

    # -- one run ----------------------------------------------------------------------------
    def container_options(self, job: SandboxJob) -> dict:
        lim = job.limits
        host_runtime = self.config.host_runtime if self.config.host_runtime is not None else not self.config.image
        python = self.python(host_runtime)
        mounts = (runtime_mounts(python) if host_runtime else []) + job_mounts(job.work_dir, job.data_dir)
        env = worker_env(threads=max(1, int(lim.cpus)))
        if not host_runtime:
            env.pop("PYTHONPATH")  # the image has the package installed
        import docker.types
        uid, _, gid = self.config.user.partition(":")
        supervise = {"argv": worker_command(python, job.wait_for_job_s), "linger_s": SUPERVISOR_LINGER_S,
                     "mounts": {SCRATCH: "/tmp", OUT: "out/", "/dev/shm": "/dev/shm"}, "out": OUT,
                     "out_max_bytes": lim.max_out_mb << 20}
        options = dict(
            command=[python, "-I", "-S", SUPERVISOR_TARGET, json.dumps(supervise)], environment=env,
            working_dir=SCRATCH, user=self.config.user,
            volumes={**{m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in mounts},
                     str(SUPERVISOR): {"bind": SUPERVISOR_TARGET, "mode": "ro"}},
            network_mode="none", read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            tmpfs={SCRATCH: f"size={self.config.tmpfs_mb}m,mode=1777,nr_inodes={TMPFS_INODES}",
                   OUT: f"size={lim.max_out_mb}m,nr_inodes={TMPFS_INODES},uid={uid},gid={gid or uid}"},
            mem_limit=f"{lim.memory_mb}m", memswap_limit=f"{lim.memory_mb}m", nano_cpus=int(lim.cpus * 1e9),
            pids_limit=lim.pids, ipc_mode="private",
            ulimits=[docker.types.Ulimit(name="fsize", soft=lim.max_file_mb << 20, hard=lim.max_file_mb << 20),
                     docker.types.Ulimit(name="core", soft=0, hard=0),
                     docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
                     docker.types.Ulimit(name="msgqueue", soft=0, hard=0)],  # /dev/mqueue: nothing to write there
            # the backend counts and caps the attached stream; the daemon's own copy stays at most ~2 MiB
            log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "2"}),
            # the owner lets a later run remove what a run killed with -9 left behind (reap_orphans)
            labels={LABEL: "1", LABEL + ".work": str(job.work_dir),
                    LABEL + ".owner": f"{socket.gethostname()}:{os.getpid()}"},
            detach=True, stdin_open=False, tty=False,
        )
        if lim.gpu:
            options["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return options

    def python(self, host_runtime: bool) -> str:
        return self.config.python or (sys.executable if host_runtime else "python")

    def start(self, job: SandboxJob) -> "_DockerRun":
        """Create and start the container; a daemon that does not answer is SandboxUnavailable."""
        import docker.errors
        with _daemon_errors(self):
            client, image = self.client(), self.image()
            run = _DockerRun(job=job, sandbox=self)
            try:
                run.container = client.containers.create(image, **self.container_options(job))
                run.container.start()
                # logs=True replays what was printed before the attach (from the size-capped log file)
                run.pump = OutputPump(chunks=run.container.attach(stdout=True, stderr=True, stream=True, logs=True,
                                                                  demux=True), tails=run.tails)
            except docker.errors.APIError as exc:
                run.remove()
                raise SandboxUnavailable(f"Docker could not start the sandbox container: {exc}") from exc
            except BaseException:
                run.remove()
                raise
            return run


@contextmanager
def _daemon_errors(sandbox: DockerSandbox):
    """A daemon that stops answering mid-run is SandboxUnavailable (the candidate stays pending in
    the store, so `ensnas resume` evaluates it once the daemon is back)."""
    import docker.errors
    import requests.exceptions
    try:
        yield
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        if isinstance(exc, docker.errors.APIError) and sandbox.daemon_answers():
            raise
        raise SandboxUnavailable(f"the Docker daemon stopped answering during an evaluation ({exc.__class__.__name__})"
                                 ": start it again (`dockerd &` / `systemctl start docker`) and resume the run, "
                                 "or use --sandbox process") from exc


class _DockerRun(Launched):
    def __init__(self, *, job: SandboxJob, sandbox: DockerSandbox) -> None:
        self.job, self.sandbox = job, sandbox
        self.container = None
        self.pump: OutputPump | None = None
        self.notes: list[str] = []
        self.killed = threading.Event()
        self.done = threading.Event()           # the supervisor reported, or the container ended
        self.supervisor: dict | None = None     # its report: the worker's exit code, a quota it filled
        self.exit_status: dict | None = None
        self.out_stream: queue.Queue = queue.Queue()  # out/'s tar, as the supervisor sends it after its report
        lim = job.limits
        # kill from another thread: the reader must keep draining, or the daemon's stdio copy (and so
        # the container's exit, and so the kill call) would wait on it forever
        overflow = lambda: threading.Thread(target=self._kill, args=(OUTPUT_TOO_LARGE,), daemon=True).start()  # noqa: E731
        self.tails = [OutputTail(keep=lim.max_output_bytes, cap=lim.max_log_bytes, on_overflow=overflow),
                      OutputTail(keep=lim.max_output_bytes, cap=lim.max_log_bytes, on_overflow=overflow,
                                 marker=MARKER.encode(), on_marker=self._on_marker)]

    def _on_marker(self, line: bytes):
        try:
            report = json.loads(line)
            self.supervisor = report if isinstance(report, dict) else {}
        except ValueError:
            self.supervisor = {}
        self.done.set()
        return self.out_stream.put if self.supervisor.get("tar") else None

    def _wait_exit(self) -> None:
        try:
            self.exit_status = self.container.wait(timeout=self.job.limits.timeout_s + SUPERVISOR_LINGER_S + 60)
        except Exception:  # noqa: BLE001 - the caller's own wait decides
            pass
        finally:
            self.done.set()

    def _read_out(self) -> dict:
        """Extract out/'s tar from the supervisor's stderr into the host work dir (bounded in time and bytes)."""
        result: dict = {"error": f"out/ did not arrive within {OUT_READ_TIMEOUT_S} s"}

        def extract() -> None:
            result.clear()
            result.update(extract_out_tar(iter(self.out_stream.get, None), Path(self.job.work_dir) / "out",
                                          max_bytes=self.job.limits.max_out_mb << 20))
        reader = threading.Thread(target=extract, daemon=True)
        reader.start()
        reader.join(OUT_READ_TIMEOUT_S)
        if reader.is_alive():
            self.out_stream.put(None)
        return result

    def _kill(self, note: str) -> None:
        if not self.killed.is_set():
            self.killed.set()
            self.notes.append(note)
            try:
                self.container.kill()
            except Exception:  # already gone, or the daemon is slow: remove(force) follows anyway
                pass

    def alive(self) -> bool:
        if self.done.is_set():  # the worker is gone (a warm one gave up waiting); the supervisor lingers
            return False
        try:
            self.container.reload()
            return self.container.status in ("created", "running")
        except Exception:  # noqa: BLE001 - gone, or the daemon does not answer: not usable either way
            return False

    def remove(self) -> None:
        if self.container is None:
            return
        import docker.errors
        try:
            self.container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:  # never mask the run's own outcome; leftovers are findable by label
            log.warning("could not remove sandbox container %s: %s", self.container.id[:12], exc)
        if self.pump is not None:
            self.pump.join()
        self.container = None

    def cancel(self) -> None:
        self.remove()

    def finish(self) -> SandboxRun:
        with _daemon_errors(self.sandbox):
            try:
                return self._finish()
            finally:
                self.remove()

    def _finish(self) -> SandboxRun:
        lim, container, notes = self.job.limits, self.container, self.notes
        start = time.perf_counter()
        threading.Thread(target=self._wait_exit, daemon=True).start()
        timed_out = False
        if not self.done.wait(lim.timeout_s):
            timed_out = not self.killed.is_set()
            self._kill("timeout")
        report = self.supervisor if not self.killed.is_set() else None
        out = self._read_out() if report is not None and report.get("tar") else None
        container.reload()
        state = container.attrs.get("State", {})
        if report is None:  # no report: the container ended (or was killed) on its own
            status = self.exit_status or container.wait(timeout=60)
            self.pump.join()
        (so, cut_o), (se, cut_e) = (t.result() for t in self.tails)
        if MARKER in se:  # the supervisor's report line is not the program's output
            se = se[:se.rfind(MARKER)]
        exit_code = report.get("exit_code") if report else status.get("StatusCode", state.get("ExitCode"))
        if exit_code == 128 + 25:  # SIGXFSZ: a file above the size cap
            notes.append(OUTPUT_TOO_LARGE)
        notes += supervisor_notes({"quota_exceeded": (report or {}).get("quota_exceeded"), "out": out},
                                  out_mb=lim.max_out_mb, tmp_mb=self.sandbox.config.tmpfs_mb)
        notes += inspect_out_dir(self.job.work_dir / "out", max_file_mb=lim.max_file_mb)
        return SandboxRun(exit_code=exit_code, wall_seconds=time.perf_counter() - start, timed_out=timed_out,
                          out_of_memory=bool(state.get("OOMKilled")) or (exit_code == 137 and not self.killed.is_set()),
                          output_truncated=cut_o or cut_e or OUTPUT_TOO_LARGE in notes,
                          stdout_tail=so, stderr_tail=se, notes=notes)


def reap_orphans(client) -> list[str]:
    """Remove sandbox containers whose host process on this machine is gone (killed with -9
    mid-run, or a warm container it never used); returns their ids."""
    removed = []
    host = socket.gethostname()
    for container in leftover_containers(client):
        owner_host, _, pid = (container.labels.get(LABEL + ".owner") or "").rpartition(":")
        if owner_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            container.remove(force=True, v=True)
            removed.append(container.id)
        except Exception as exc:  # noqa: BLE001 - best effort: never block a run on cleanup
            if getattr(exc, "status_code", None) in (404, 409):
                # gone already, or another run on this host is removing it right now (409 Conflict)
                log.debug("orphaned sandbox container %s: %s", container.id[:12], exc)
                continue
            log.warning("could not remove orphaned sandbox container %s: %s", container.id[:12], exc)
    if removed:
        log.info("removed %d orphaned sandbox container(s)", len(removed))
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def leftover_containers(client) -> list:
    """Sandbox containers that still exist (should be none between runs)."""
    # ignore_removed: another run may remove one of them between the listing and its inspection
    return client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
