"""Isolation backends behind one interface; see sandbox.base."""
from sandbox.base import Limits, Sandbox, SandboxJob, SandboxRun, SANDBOXES, make_sandbox, register_sandbox
from sandbox import subprocess_backend as _subprocess_backend  # noqa: F401  (registers "subprocess")
from sandbox import docker_backend as _docker_backend  # noqa: F401  (registers "docker")
from sandbox import process_backend as _process_backend  # noqa: F401  (registers "process")

__all__ = ["Limits", "Sandbox", "SandboxJob", "SandboxRun", "SANDBOXES", "make_sandbox", "register_sandbox"]
