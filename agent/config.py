"""The run configuration: one typed object, loadable from YAML, every field with a CPU default."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.population.budgets import BudgetConfig
from agent.population.config import PopulationConfig
from evaluator.acceptance import AcceptanceConfig
from evaluator.failures import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProposerSpec(_Strict):
    name: str = "llm"
    candidates: int = Field(3, ge=1, description="candidates per cycle from this proposer")
    options: dict[str, Any] = Field(default_factory=dict)


class NoveltyConfig(_Strict):
    enabled: bool = True
    threshold: float = Field(0.95, gt=0, le=1, description="drop if estimated Jaccard to any archived program ≥ this")
    num_perm: int = Field(128, ge=16)
    shingle: int = Field(5, ge=1, description="token shingle length")


class PrefilterConfig(_Strict):
    max_bytes: int = Field(20_000, ge=100)
    max_lines: int = Field(400, ge=5)


class SandboxConfig(_Strict):
    backend: str = "auto"
    timeout_s: float = 600.0
    memory_mb: int = 4096
    threads: int = 1
    workers: int = Field(2, ge=1, description="evaluations in parallel")
    warm_start: bool = Field(True, description="launch each worker's next sandbox (interpreter, torch, data) "
                                               "while the current candidate trains")
    gpu: bool = Field(False, description="give the sandbox the GPUs (docker); on Ray each evaluation asks for one")


class RayConfig(_Strict):
    """`executor: ray`: where the cluster is and how it treats a lost node (sandbox.ray_executor)."""
    address: str | None = Field("auto", description="'auto' (RAY_ADDRESS, else a cluster started on this machine "
                                                    "with `ray start`), host:port, ray://host:port; null: a private "
                                                    "local Ray")
    max_retries: int = Field(3, ge=-1, description="re-runs of an evaluation whose node died (-1: no limit)")
    warm_start: bool = Field(True, description="each Ray worker keeps one sandbox warm for its next evaluation")
    node_cache_dir: str | None = Field(None, description="where nodes keep the shipped inputs (default: their "
                                                         "ENSNAS_CACHE or ~/.cache/ensnas)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources each evaluation "
                                        "asks for, e.g. {ensnas: 1} for nodes started with --resources")
    attempt_log: str | None = Field(None, description="a directory every node can write: one file per "
                                                      "attempt, <job>.<node>.<pid>, 'done' once it returned")


class CEUpdateConfig(_Strict):
    enabled: bool = True
    every: int = Field(2, ge=1, description="fine-tune the generator every n cycles")
    elites: int = Field(8, ge=1)
    min_examples: int = Field(1, ge=1)
    lora_rank: int = 8
    lora_alpha: int = 16
    epochs: int = 2
    lr: float = 2e-4
    max_steps: int = 30
    cache_dequantised: bool = Field(True, description="keep the base de-quantised from the GGUF as safetensors in "
                                                      "the model cache (keyed by its SHA-256) for later updates")


class DeployConfig(_Strict):
    members: int = Field(5, ge=2, description="M of the final deployed ensemble (default: RunConfig.members)")
    export: bool = True


class RunConfig(_Strict):
    task: str = "digits"
    data_path: str | None = None
    cycles: int = Field(3, ge=1)
    seed: int = 0
    members: int | None = Field(None, ge=2, description="M, the deployed ensemble size: the gate predicts the "
                                                        "M-ensemble that the deploy trains (default 5)")
    # The bundled 135M model rarely writes a valid edit on its own (benchmarks/generator_validity);
    # evolution beside it keeps the search moving and feeds the CE update elites to learn from.
    proposers: list[ProposerSpec] = Field(default_factory=lambda: [ProposerSpec(name="llm", candidates=2),
                                                                   ProposerSpec(name="evolution", candidates=2)])
    generator: dict[str, Any] = Field(default_factory=lambda: {"backend": "llama_cpp", "sampling": {"max_new_tokens": 256}},
                                      description="agent.generators config (backend, model, sampling)")
    novelty: NoveltyConfig = NoveltyConfig()
    prefilter: PrefilterConfig = PrefilterConfig()
    sandbox: SandboxConfig = SandboxConfig()
    executor: Literal["local", "ray"] = Field("local", description="where evaluations run: this machine's threads "
                                                                   "or a Ray cluster (see `ray`)")
    ray: RayConfig = RayConfig()
    acceptance: AcceptanceConfig = AcceptanceConfig()
    noise_instances: int = Field(4, ge=0, description="instances of the seed program for a pooled seed-noise estimate (0: off)")
    ce_update: CEUpdateConfig = CEUpdateConfig()
    deploy: DeployConfig = DeployConfig()
    elites: int = Field(8, ge=1)
    history: int = Field(8, ge=1, description="recent candidates shown to proposers")
    population: PopulationConfig = PopulationConfig()
    pipeline: Literal["off", "lagged", "overlapped"] = Field(
        "overlapped", description="overlapped: cycle n+1's proposals are written while cycle n trains, from the "
                                  "decisions up to cycle n-1; lagged: the same proposals without the overlap (same "
                                  "decisions, for checking); off: each cycle proposes after the previous one decided")
    budget: BudgetConfig = BudgetConfig()

    @model_validator(mode="after")
    def _one_m(self) -> "RunConfig":
        """One M for the gate and the deploy. `members` sets both; so does acceptance.members or
        deploy.members given alone (older configs); only both given, and different, sets them apart."""
        gate = "members" in self.acceptance.model_fields_set
        deploy = "members" in self.deploy.model_fields_set
        m = self.members or (self.acceptance.members if gate else self.deploy.members if deploy else None)
        m = m or AcceptanceConfig.model_fields["members"].default
        self.members = m
        if not gate:
            self.acceptance = self.acceptance.model_copy(update={"members": m})
        if not deploy:
            self.deploy = self.deploy.model_copy(update={"members": m})
        return self

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "RunConfig":
        data: dict[str, Any] = {}
        if path:
            try:
                data = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read config {path}: {exc}") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid config{' ' + str(path) if path else ''}: {exc}") from exc
