"""Options and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path

from evaluator.failures import ConfigError


def add_task_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="digits", help="bundled task name or a task .yaml (default: digits)")
    p.add_argument("--data-path", help="use this local copy of the task's dataset")
    p.add_argument("--sandbox", default="auto", help="auto | docker | process | subprocess (default: auto)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per evaluation")
    p.add_argument("--memory-mb", type=int, default=4096)
    p.add_argument("--threads", type=int, default=1, help="torch threads inside the sandbox")
    p.add_argument("--epochs", type=int, help="override the task's proxy epochs")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def read_program(path: str) -> str:
    """The program's text; checked before any data is loaded or sandbox started."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"program {path} does not exist")
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read program {path}: {exc}") from exc


def task_from_args(args: argparse.Namespace):
    from evaluator.tasks import get_task
    task = get_task(args.task, data_path=args.data_path)
    if args.epochs:
        task = task.model_copy(update={"budget": task.budget.model_copy(update={"epochs": args.epochs})})
    return task


def evaluator_from_args(args: argparse.Namespace, task):
    from evaluator.evaluate import Evaluator
    from sandbox import Limits, make_sandbox
    from sandbox.select import resolve_sandbox_name
    limits = Limits(timeout_s=args.timeout, memory_mb=args.memory_mb, cpus=float(args.threads))
    sandbox = make_sandbox(resolve_sandbox_name(args.sandbox))
    sandbox.check_available()
    return Evaluator(task=task, sandbox=sandbox, limits=limits, threads=args.threads)


def columns(text: str) -> int:
    """Terminal columns of text: combining marks (the hat of D̂) take none."""
    import unicodedata
    return sum(not unicodedata.combining(ch) for ch in text)


def table(rows: list[tuple[str, str]]) -> str:
    width = max(columns(k) for k, _ in rows)
    return "\n".join(f"  {k}{' ' * (width - columns(k))}  {v}" for k, v in rows)
