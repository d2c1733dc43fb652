"""RACHEL subnetworks (seed 002, docs/theory.md T5): blocks, growth by appending layers, rendering.

A subnetwork is a sequence of blocks followed by a fixed head. The controller grows the
previous best subnetwork by appending up to `max_new_layers` blocks; every block is a
(kind, width) pair. Two modalities share the same two-way type token:

    image (C, H, W) inputs:  type 0 = conv block      Conv3x3-BN-ReLU-Dropout-MaxPool2
                             type 1 = residual block  2x(Conv3x3-BN-ReLU) + skip (1x1 conv if widths differ)
    dense inputs (anything else, flattened; tabular, MNIST-1D):
                             type 0 = dense block     Linear-BN-ReLU-Dropout
                             type 1 = dense residual  2x(Linear-BN-ReLU) + skip (Linear if widths differ)

The head is global average pooling + Linear for images and Linear for dense inputs. A conv
block pools only while the feature map is at least 2x2, so arbitrarily deep growth stays valid.

The single source of truth is the rendered program (`render_program`): a self-contained file
under the program contract (defines build_model(input_shape, num_classes), imports only torch).
`build_subnetwork` executes that very text, so what the host trains in-process is exactly what
the sandbox, the store and the acceptance gate see.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from evaluator.failures import ConfigError, EvaluationFailed, FailureReason

Modality = Literal["image", "dense"]
BLOCK_TYPES: dict[str, tuple[str, str]] = {"image": ("conv", "residual"), "dense": ("dense", "dense_residual")}
ALL_KINDS = {kind for kinds in BLOCK_TYPES.values() for kind in kinds}


@dataclass(frozen=True)
class Layer:
    """One appended block: its kind (see BLOCK_TYPES) and width (filters or units)."""
    kind: str
    width: int

    def __post_init__(self) -> None:
        if self.kind not in ALL_KINDS:
            raise ConfigError(f"unknown block kind {self.kind!r}; known: {', '.join(sorted(ALL_KINDS))}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ConfigError(f"block width must be a positive int, got {self.width!r}")


@dataclass(frozen=True)
class SubnetSpec:
    """A subnetwork architecture: its modality and its blocks in order (the head is implicit)."""
    modality: Modality
    layers: tuple[Layer, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in BLOCK_TYPES:
            raise ConfigError(f"unknown modality {self.modality!r}; known: image, dense")
        allowed = BLOCK_TYPES[self.modality]
        bad = [layer.kind for layer in self.layers if layer.kind not in allowed]
        if bad:
            raise ConfigError(f"{self.modality} subnetworks take blocks {allowed}, got {bad}")

    @property
    def depth(self) -> int:
        return len(self.layers)

    def append(self, new_layers: tuple[Layer, ...] | list[Layer]) -> "SubnetSpec":
        """Growth step: the same blocks plus the new ones at the end (sequential connectivity)."""
        return SubnetSpec(self.modality, self.layers + tuple(new_layers))

    def describe(self) -> str:
        return " -> ".join(f"{layer.kind}({layer.width})" for layer in self.layers) or "head only"

    def as_dict(self) -> dict:
        return {"modality": self.modality, "layers": [[layer.kind, layer.width] for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict) -> "SubnetSpec":
        try:
            return cls(data["modality"], tuple(Layer(str(k), int(w)) for k, w in data["layers"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a subnetwork spec: {data!r} ({exc})") from exc


def modality_for(input_shape: tuple[int, ...]) -> Modality:
    """Images are (C, H, W); everything else is treated as a flat feature vector."""
    return "image" if len(input_shape) == 3 else "dense"


def decode_layer(modality: Modality, present: int, type_token: int, width: int) -> Layer | None:
    """The three controller tokens of one potential layer -> a block, or None when absent."""
    if not present:
        return None
    return Layer(BLOCK_TYPES[modality][int(type_token)], int(width))


# --------------------------------------------------------------------------- rendering

_HEADER = '''"""RACHEL subnetwork: {desc}.

Rendered by agent.proposers.rachel; depth {depth}; {modality} input.
"""
import torch
import torch.nn as nn

DROPOUT = {dropout}
'''

_BLOCKS = {
    "conv": '''

class ConvBlock(nn.Module):
    """Conv3x3-BN-ReLU-Dropout, then MaxPool2 while the map is at least 2x2."""

    def __init__(self, c_in, c_out, pool):
        super().__init__()
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                  nn.Dropout(DROPOUT)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)
''',
    "residual": '''

class ResidualBlock(nn.Module):
    """Two Conv3x3-BN-ReLU layers plus a skip connection (1x1 conv when the widths differ)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return self.body(x) + self.skip(x)
''',
    "dense": '''

class DenseBlock(nn.Module):
    """Linear-BN-ReLU-Dropout."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(),
                                  nn.Dropout(DROPOUT))

    def forward(self, x):
        return self.body(x)
''',
    "dense_residual": '''

class DenseResidualBlock(nn.Module):
    """Two Linear-BN-ReLU layers plus a skip connection (Linear when the widths differ)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(),
            nn.Linear(d_out, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU())
        self.skip = nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out, bias=False)

    def forward(self, x):
        return self.body(x) + self.skip(x)
''',
}

_IMAGE_BUILD = '''

def build_model(input_shape, num_classes):
    channels, height, width = input_shape
    blocks = []
{lines}
    blocks += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*blocks)
'''

_DENSE_BUILD = '''

def build_model(input_shape, num_classes):
    features = 1
    for size in input_shape:
        features *= size
    blocks = [nn.Flatten()]
{lines}
    blocks.append(nn.Linear(features, num_classes))
    return nn.Sequential(*blocks)
'''

_LINE = {
    "conv": ("    pool = min(height, width) >= 2\n"
             "    blocks.append(ConvBlock(channels, {w}, pool))\n"
             "    channels, height, width = {w}, (height // 2 if pool else height), (width // 2 if pool else width)"),
    "residual": "    blocks.append(ResidualBlock(channels, {w}))\n    channels = {w}",
    "dense": "    blocks.append(DenseBlock(features, {w}))\n    features = {w}",
    "dense_residual": "    blocks.append(DenseResidualBlock(features, {w}))\n    features = {w}",
}


def render_program(spec: SubnetSpec, *, dropout: float = 0.1) -> str:
    """The subnetwork as a program under the contract: only the block classes it uses, one
    explicit append per layer (so programs differ visibly, in diffs and to the novelty filter)."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    used = [kind for kind in BLOCK_TYPES[spec.modality] if any(layer.kind == kind for layer in spec.layers)]
    lines = "\n".join(_LINE[layer.kind].format(w=layer.width) for layer in spec.layers) or "    pass"
    build = _IMAGE_BUILD if spec.modality == "image" else _DENSE_BUILD
    header = _HEADER.format(desc=spec.describe(), depth=spec.depth, modality=spec.modality, dropout=dropout)
    return header + "".join(_BLOCKS[kind] for kind in used) + build.format(lines=lines)


def build_subnetwork(spec: SubnetSpec, input_shape: tuple[int, ...], num_classes: int, *,
                     dropout: float = 0.1) -> torch.nn.Module:
    """Instantiate the rendered program in-process (the same text the sandbox would run)."""
    from evaluator.worker import load_program

    if modality_for(tuple(input_shape)) != spec.modality:
        raise ConfigError(f"a {spec.modality} subnetwork cannot take inputs of shape {tuple(input_shape)}")
    module = load_program(render_program(spec, dropout=dropout))
    try:
        return module.build_model(tuple(input_shape), num_classes)
    except Exception as exc:  # our own rendering: a failure here is a typed build error
        raise EvaluationFailed(FailureReason.build_error, f"{type(exc).__name__}: {exc}") from exc
