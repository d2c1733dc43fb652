"""The DARTS search space: normal and reduction cells with 4 intermediate nodes and 14 edges,
each edge a mixed operation over PRIMITIVES.

The supernet takes the architecture as an argument of forward (a weight per edge and operation,
per cell type) instead of owning it, so DARTS (softmax of its own alpha) and EdgeNES (Gumbel-
softmax of a hypernetwork's alpha(lambda)) drive the same weights. With `selected` given, only
the chosen (edge, operation) pairs run -- a sampled discrete architecture, single path -- so
only their weights receive gradient (what Theorem 1 counts).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from agent.proposers.darts.network import STEPS, Network
from agent.proposers.darts.ops import PRIMITIVES, FactorizedReduce, ReLUConvBN, make_op

CELL_TYPES = ("normal", "reduce")
# edge e connects state EDGES[e][1] to node EDGES[e][0]; states 0, 1 are the cell inputs
EDGES: list[tuple[int, int]] = [(node, i) for node in range(STEPS) for i in range(node + 2)]
NUM_EDGES = len(EDGES)            # 14
NUM_OPS = len(PRIMITIVES)         # 8
NONE_INDEX = PRIMITIVES.index("none")


def edge_index(node: int, source: int) -> int:
    """Index in EDGES of the edge from state `source` to intermediate node `node`."""
    return EDGES.index((node, source))


class MixedOp(nn.Module):
    """All operations on one edge; output is their weighted sum ('none' contributes zero)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, channels, stride) for name in PRIMITIVES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(weights[k] * op(x) for k, op in enumerate(self.ops) if k != NONE_INDEX)

    def single(self, x: torch.Tensor, op: int, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.ops[op](x)


class SearchCell(nn.Module):
    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.edges = nn.ModuleList(MixedOp(c, 2 if reduction and i < 2 else 1) for _, i in EDGES)

    def forward(self, s0, s1, weights: torch.Tensor, selected: list[tuple[int, int]] | None = None):
        states = [self.pre0(s0), self.pre1(s1)]
        by_node: dict[int, list[tuple[int, int]]] | None = None
        if selected is not None:
            by_node = {n: [] for n in range(STEPS)}
            for e, op in selected:
                by_node[EDGES[e][0]].append((e, op))
        for node in range(STEPS):
            if by_node is None:
                out = sum(self.edges[e](states[EDGES[e][1]], weights[e])
                          for e in range(NUM_EDGES) if EDGES[e][0] == node)
            else:
                parts = [self.edges[e].single(states[EDGES[e][1]], op, weights[e, op]) for e, op in by_node[node]]
                out = sum(parts) if parts else torch.zeros_like(states[1] if not self.reduction else
                                                                states[1][:, :, ::2, ::2])
            states.append(out)
        return torch.cat(states[2:], dim=1)


class SuperNet(Network):
    """The macro network of `Network` with SearchCells; forward(x, weights, selected=None).

    weights: {"normal": [14, 8] tensor, "reduce": [14, 8] tensor} (rows need not sum to 1);
    selected: optional {"normal": [(edge, op), ...], "reduce": [...]}, the single-path choice.
    """

    def make_cell(self, reduction, c_pp, c_p, c, reduction_prev):
        return SearchCell(c_pp, c_p, c, reduction, reduction_prev)

    def forward(self, x, weights: dict[str, torch.Tensor], selected: dict[str, list] | None = None):
        s0, s1 = self.features(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind], None if selected is None else selected[kind])
        return self.classifier(self.pool(s1).flatten(1))

    def edge_parameters(self, kind: str, edge: int, op: int) -> list[nn.Parameter]:
        """The parameters of operation `op` on `edge` in every cell of type `kind`."""
        return [p for cell in self.cells if (cell.reduction == (kind == "reduce"))
                for p in cell.edges[edge].ops[op].parameters()]


def stem_stride(space_stride: int | None, input_shape: tuple[int, ...]) -> int:
    """The stem's stride: as configured, else 2 for inputs of 16 px or more (as rendered programs do)."""
    return space_stride or (2 if len(input_shape) == 3 and min(input_shape[1:]) >= 16 else 1)


def build_supernet(*, channels: int, layers: int, stride: int | None, input_shape: tuple[int, ...],
                   num_classes: int) -> SuperNet:
    return SuperNet(input_shape[0], num_classes, channels, layers, stem_stride(stride, input_shape))
