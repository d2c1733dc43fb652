"""Typed configs for the DARTS/EdgeNES proposer, with CPU defaults and a larger GPU preset."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceConfig(_Strict):
    """Macro network shared by search and retraining (and written into rendered programs)."""
    channels: int = Field(8, ge=2, description="C of the first cell; doubled at reduction cells")
    layers: int = Field(3, ge=1, description="cells: normal, reduction, normal for 3")
    stem_stride: int | None = Field(None, ge=1, le=4, description="None: 2 for inputs >= 16 px, else 1")


class SearchData(_Strict):
    """How much of the task's training split the search sees; it is split again for alpha."""
    train_subset: int | None = Field(4000, ge=10)
    search_val_fraction: float = Field(0.5, gt=0, lt=1, description="DARTS' half/half split")
    batch_size: int = Field(64, ge=1)


class DartsConfig(_Strict):
    """First-order DARTS: alternate an alpha step on search-val and a w step on search-train."""
    epochs: int = Field(4, ge=1)
    w_lr: float = Field(3e-3, gt=0)
    w_weight_decay: float = Field(3e-4, ge=0)
    arch_lr: float = Field(3e-3, gt=0)
    arch_weight_decay: float = Field(1e-3, ge=0)
    arch_betas: tuple[float, float] = (0.5, 0.999)
    max_steps_per_epoch: int | None = Field(None, ge=1)


class EdgeNESConfig(_Strict):
    """Hypernetwork alpha(lambda) training (seed 001 §2.2, §3.1, §4)."""
    pivots: int = Field(5, ge=2, description="K; r_0 = 0 and r_{K-1} = Lambda are fixed")
    epsilon: float = Field(0.2, ge=0, description="lambda ~ U[-eps, Lambda + eps]")
    epochs: int = Field(4, ge=1)
    c_start: float = Field(0.05, ge=0)
    c_end: float = Field(1.0, ge=0)
    t_start: float = Field(2.0, gt=0)
    t_end: float = Field(0.3, gt=0)
    arch_lr: float = Field(2e-2, gt=0, description="the seed's architecture step size")
    w_lr: float = Field(3e-3, gt=0)
    w_weight_decay: float = Field(3e-4, ge=0)
    init_noise: float = Field(1e-2, ge=0, description="noise added to the DARTS alpha the pivot vectors start from")
    sampling: Literal["hard", "soft"] = Field(
        "hard", description="hard: straight-through Gumbel sample, one path per step (only sampled "
                            "edges get gradient); soft: the full Gumbel-softmax mixture")
    warm_start: bool = Field(True, description="start w from the DARTS supernet's weights")
    max_steps_per_epoch: int | None = Field(None, ge=1)


class RetrainConfig(_Strict):
    """Training a derived architecture from scratch (host side, for benchmarks and selection)."""
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    train_subset: int | None = Field(4000, ge=10)


class EnsembleConfig(_Strict):
    size: int = Field(3, ge=1, description="n, members in the final ensemble")
    pool: int = Field(6, ge=1, description="candidate architectures sampled for selection")
    exhaustive_limit: int = Field(5000, ge=1, description="enumerate subsets up to this many, else greedy")


class SearchConfig(_Strict):
    space: SpaceConfig = SpaceConfig()
    data: SearchData = SearchData()
    darts: DartsConfig = DartsConfig()
    edgenes: EdgeNESConfig = EdgeNESConfig()
    retrain: RetrainConfig = RetrainConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    threads: int = Field(1, ge=1)
    device: str = "cpu"


def cpu_config() -> SearchConfig:
    """Small enough for 2 CPU cores: C=8, 3 cells, 4k images, a few epochs."""
    return SearchConfig()


def large_config() -> SearchConfig:
    """A GPU-sized run (closer to the seed: 50 search epochs, hypernetwork 150)."""
    return SearchConfig(
        space=SpaceConfig(channels=16, layers=5),
        data=SearchData(train_subset=None, batch_size=96),
        darts=DartsConfig(epochs=50, w_lr=3e-3, arch_lr=3e-3),
        edgenes=EdgeNESConfig(epochs=50),
        retrain=RetrainConfig(epochs=20, batch_size=128, train_subset=None),
        ensemble=EnsembleConfig(size=3, pool=10),
        threads=8, device="cuda")


PRESETS = {"cpu": cpu_config, "large": large_config}
