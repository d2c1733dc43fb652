"""Genotypes: the discrete architecture a DARTS alpha describes, and its rendering to a program.

A genotype lists, for the normal and the reduction cell, 2 (operation, input) pairs per
intermediate node (8 per cell, Lambda = 16 edges in all). `derive` is DARTS' rule; `render`
writes a self-contained program under the program contract (build_model(input_shape,
num_classes), imports only torch) so a genotype is evaluated, stored and diffed like any
other candidate.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import numpy as np

from agent.proposers.darts import network as network_module
from agent.proposers.darts import ops as ops_module
from agent.proposers.darts.network import STEPS
from agent.proposers.darts.ops import PRIMITIVES
from agent.proposers.darts.search_space import CELL_TYPES, EDGES, NONE_INDEX, NUM_EDGES, NUM_OPS, edge_index
from evaluator.failures import EnsnasError

Pair = tuple[str, int]


class GenotypeError(EnsnasError):
    """A genotype (or an alpha it is derived from) does not fit the search space."""


@dataclass(frozen=True)
class Genotype:
    normal: tuple[Pair, ...]
    reduce: tuple[Pair, ...]

    def __post_init__(self) -> None:
        for kind in CELL_TYPES:
            pairs = getattr(self, kind)
            if len(pairs) != 2 * STEPS:
                raise GenotypeError(f"{kind} cell has {len(pairs)} operations, expected {2 * STEPS}")
            for slot, (op, source) in enumerate(pairs):
                node = slot // 2
                if op not in PRIMITIVES or op == "none":
                    raise GenotypeError(f"{kind} slot {slot}: unknown or 'none' operation {op!r}")
                if not isinstance(source, int) or not 0 <= source < node + 2:
                    raise GenotypeError(f"{kind} node {node}: input {source!r} is not an earlier state (0..{node + 1})")

    @property
    def size(self) -> int:
        """Lambda: the number of kept edges (16)."""
        return len(self.normal) + len(self.reduce)

    def edges(self) -> set[tuple[str, int, int, str]]:
        """The kept (cell type, node, input, operation) tuples."""
        return {(kind, slot // 2, source, op) for kind in CELL_TYPES
                for slot, (op, source) in enumerate(getattr(self, kind))}

    def selected(self) -> dict[str, list[tuple[int, int]]]:
        """The (edge index, op index) pairs per cell type, as SuperNet.forward takes them."""
        return {kind: [(edge_index(slot // 2, source), PRIMITIVES.index(op))
                       for slot, (op, source) in enumerate(getattr(self, kind))] for kind in CELL_TYPES}

    def one_hot(self) -> dict[str, np.ndarray]:
        """alpha* as the seed's regulariser uses it: 1 at each kept (edge, operation)."""
        out = {kind: np.zeros((NUM_EDGES, NUM_OPS), np.float32) for kind in CELL_TYPES}
        for kind, pairs in self.selected().items():
            for e, op in pairs:
                out[kind][e, op] = 1.0
        return out

    def to_dict(self) -> dict[str, list[list]]:
        return {kind: [[op, source] for op, source in getattr(self, kind)] for kind in CELL_TYPES}

    @classmethod
    def from_dict(cls, data: dict) -> "Genotype":
        try:
            return cls(**{kind: tuple((str(op), int(src)) for op, src in data[kind]) for kind in CELL_TYPES})
        except (KeyError, TypeError, ValueError) as exc:
            raise GenotypeError(f"not a genotype: {exc}") from exc

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def shared_edges(a: Genotype, b: Genotype) -> int:
    """<alpha_a, alpha_b> for discrete architectures: kept (node, input, operation) in common."""
    return len(a.edges() & b.edges())


def derive(alpha: dict[str, np.ndarray]) -> Genotype:
    """DARTS' rule: per node keep the 2 inputs with the strongest non-'none' operation, and that op."""
    cells = {}
    for kind in CELL_TYPES:
        a = np.asarray(alpha[kind], dtype=np.float64)
        if a.shape != (NUM_EDGES, NUM_OPS) or not np.isfinite(a).all():
            raise GenotypeError(f"alpha[{kind!r}] must be a finite {NUM_EDGES}x{NUM_OPS} array, got {a.shape}")
        masked = a.copy()
        masked[:, NONE_INDEX] = -np.inf
        pairs: list[Pair] = []
        for node in range(STEPS):
            edges = [e for e, (n, _) in enumerate(EDGES) if n == node]
            strength = {e: masked[e].max() for e in edges}
            best = sorted(edges, key=lambda e: (-strength[e], e))[:2]
            for e in sorted(best, key=lambda e: EDGES[e][1]):
                pairs.append((PRIMITIVES[int(masked[e].argmax())], EDGES[e][1]))
        cells[kind] = tuple(pairs)
    return Genotype(**cells)


def random_genotype(rng: np.random.Generator) -> Genotype:
    """Uniform over DARTS genotypes: 2 distinct inputs per node, a random non-'none' op each."""
    ops = [p for p in PRIMITIVES if p != "none"]
    cells = {}
    for kind in CELL_TYPES:
        pairs: list[Pair] = []
        for node in range(STEPS):
            for source in sorted(rng.choice(node + 2, size=2, replace=False).tolist()):
                pairs.append((ops[int(rng.integers(len(ops)))], int(source)))
        cells[kind] = tuple(pairs)
    return Genotype(**cells)


def perturb(base: Genotype, replacements: int, rng: np.random.Generator) -> Genotype:
    """RandomD-NES: replace `replacements` kept edges of `base` by random (input, op) pairs that
    are not in `base`, so the result shares exactly size - replacements edges with it."""
    if not 0 <= replacements <= base.size:
        raise GenotypeError(f"replacements={replacements} outside 0..{base.size}")
    ops = [p for p in PRIMITIVES if p != "none"]
    cells = {kind: list(getattr(base, kind)) for kind in CELL_TYPES}
    slots = [(kind, s) for kind in CELL_TYPES for s in range(2 * STEPS)]
    for idx in rng.choice(len(slots), size=replacements, replace=False):
        kind, slot = slots[int(idx)]
        node = slot // 2
        other = cells[kind][slot ^ 1]
        original = set(getattr(base, kind)[2 * node: 2 * node + 2])
        choices = [(op, src) for src in range(node + 2) for op in ops
                   if (op, src) not in original and src != other[1]]
        cells[kind][slot] = choices[int(rng.integers(len(choices)))]
    for kind in CELL_TYPES:  # keep each node's pair ordered by input, as derive writes it
        pairs = cells[kind]
        cells[kind] = [p for node in range(STEPS) for p in sorted(pairs[2 * node: 2 * node + 2], key=lambda q: q[1])]
    return Genotype(**{k: tuple(v) for k, v in cells.items()})


def _program_block(module) -> str:
    source = inspect.getsource(module)
    start, end = "# render: program-start\n", "# render: program-end"
    return source[source.index(start) + len(start): source.index(end)].rstrip() + "\n"


def render(genotype: Genotype, *, channels: int, layers: int, stem_stride: int | None = None,
           header: str = "") -> str:
    """A program under the contract: build_model(input_shape, num_classes) -> the genotype's network.

    stem_stride None means: 2 when the input's spatial size is at least 16, else 1 (decided
    in build_model from input_shape, so one program fits several tasks).
    """
    normal = ",\n    ".join(repr(p) for p in genotype.normal)
    reduce = ",\n    ".join(repr(p) for p in genotype.reduce)
    doc = header or "A DARTS cell network rendered from a genotype (ensnas darts/EdgeNES proposer)."
    return f'''"""{doc}"""
{_program_block(ops_module)}

{_program_block(network_module)}

CHANNELS = {int(channels)}
LAYERS = {int(layers)}
STEM_STRIDE = {stem_stride!r}
GENOTYPE = {{
  "normal": [
    {normal},
  ],
  "reduce": [
    {reduce},
  ],
}}


def build_model(input_shape, num_classes):
    in_channels = input_shape[0]
    stride = STEM_STRIDE or (2 if len(input_shape) == 3 and min(input_shape[1:]) >= 16 else 1)
    return Network(in_channels, num_classes, CHANNELS, LAYERS, stride, genotype=GENOTYPE)
'''
