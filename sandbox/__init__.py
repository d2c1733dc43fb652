"""Isolation backends behind one interface; see sandbox.base."""
from sandbox.base import Limits, Sandbox, SandboxJob, SandboxRun, SANDBOXES, make_sandbox, register_sandbox
from sandbox import subprocess_backend as _subprocess_backend  # noqa: F401  (registers "subprocess")

__all__ = ["Limits", "Sandbox", "SandboxJob", "SandboxRun", "SANDBOXES", "make_sandbox", "register_sandbox"]
