"""Choosing a backend by name, with `auto` picking the strongest one available here."""
from __future__ import annotations

from evaluator.failures import SandboxUnavailable
from sandbox.base import SANDBOXES, make_sandbox

AUTO_ORDER = ["docker", "process", "subprocess"]  # strongest isolation first


def resolve_sandbox_name(name: str) -> str:
    if name != "auto":
        return name
    for candidate in AUTO_ORDER:
        if candidate not in SANDBOXES:
            continue
        try:
            make_sandbox(candidate).check_available()
            return candidate
        except SandboxUnavailable:
            continue
    return "subprocess"
