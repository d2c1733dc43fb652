"""Tasks are data: a dataset, its split, the metric, the proxy budget and a seed program.

Bundled tasks live in TASKS; a user task is a YAML file with the same fields
(`ensnas evaluate prog.py --task my_task.yaml`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluator.failures import ConfigError

PROGRAMS_DIR = Path(__file__).parent / "programs"


class ProxyBudget(BaseModel):
    """How much training one proxy instance gets."""
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    train_subset: int | None = Field(None, ge=1, description="use only the first N training examples")


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dataset: str
    data_path: str | None = None
    split_seed: int = 0
    val_fraction: float = Field(0.1, gt=0, lt=1)
    metric: Literal["brier"] = "brier"  # T1 is exact for squared error; CE/accuracy are reported too
    budget: ProxyBudget = ProxyBudget()
    seed_program: str = "mlp.py"
    max_params: int = Field(2_000_000, ge=1)
    members: int = Field(5, ge=2, description="M, the size of the deployed ensemble")

    def seed_source(self) -> str:
        path = Path(self.seed_program)
        if not path.is_absolute() and not path.exists():
            path = PROGRAMS_DIR / self.seed_program
        try:
            return path.read_text()
        except OSError as exc:
            raise ConfigError(f"task {self.name}: cannot read seed program {path}: {exc}") from exc


TASKS: dict[str, TaskConfig] = {
    t.name: t for t in [
        TaskConfig(name="fashion-mnist", dataset="fashion-mnist", val_fraction=5000 / 60000,
                   budget=ProxyBudget(epochs=1, batch_size=128, train_subset=12000),
                   seed_program="cnn_small.py", max_params=1_000_000),
        TaskConfig(name="digits", dataset="digits", val_fraction=0.25,
                   budget=ProxyBudget(epochs=15, batch_size=64, lr=3e-3),
                   seed_program="mlp.py", max_params=500_000),
        TaskConfig(name="mnist1d", dataset="mnist1d", val_fraction=0.2,
                   budget=ProxyBudget(epochs=15, batch_size=100, lr=3e-3),
                   seed_program="mlp.py", max_params=500_000),
    ]
}


def register_task(task: TaskConfig) -> None:
    TASKS[task.name] = task


def get_task(name_or_path: str, **overrides) -> TaskConfig:
    """A bundled task by name, or a YAML task file; keyword overrides replace fields."""
    if name_or_path in TASKS:
        base = TASKS[name_or_path].model_dump()
    elif name_or_path.endswith((".yaml", ".yml")):
        try:
            base = yaml.safe_load(Path(name_or_path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read task file {name_or_path}: {exc}") from exc
    else:
        raise ConfigError(f"unknown task {name_or_path!r}; bundled: {', '.join(sorted(TASKS))} "
                          "(or give a .yaml task file)")
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TaskConfig.model_validate(base)
    except ValidationError as exc:
        raise ConfigError(f"invalid task {name_or_path}: {exc}") from exc


# Tabular tasks (adult, movielens, tabular) register themselves here. Their data packages are
# looked up only when a task is loaded, so a missing wheel is a ConfigError then, not at import.
from evaluator import tabular as _tabular  # noqa: E402,F401
