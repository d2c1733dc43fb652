"""The discrete DARTS network a genotype describes; its marked block is the body of rendered programs."""
import torch
import torch.nn as nn

from agent.proposers.darts.ops import FactorizedReduce, ReLUConvBN, make_op

# render: program-start
# The discrete DARTS network: a stem, then `layers` cells (normal cells, with a reduction cell in
# the middle that halves the resolution and doubles the channels), global pooling and a linear
# head. Each cell has 2 inputs (the two previous cells) and 4 intermediate nodes; each node sums
# two operations applied to earlier states, and the cell outputs the concatenation of its 4 nodes.
# This block is copied verbatim into rendered programs (it uses only torch and make_op).
STEPS = 4


def reduction_layers(layers):
    """Indices of reduction cells: the middle one for 2-3 cells, DARTS' 1/3 and 2/3 beyond."""
    if layers <= 1:
        return set()
    if layers <= 3:
        return {layers // 2}
    return {layers // 3, 2 * layers // 3}


class Cell(nn.Module):
    """A discrete cell: `ops` is a list of 2*STEPS (op_name, input_index) pairs, two per node."""

    def __init__(self, ops, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.inputs = [int(i) for _, i in ops]
        self.ops = nn.ModuleList(
            make_op(name, c, 2 if reduction and i < 2 else 1) for name, i in ops)

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(STEPS):
            a, b = 2 * node, 2 * node + 1
            states.append(self.ops[a](states[self.inputs[a]]) + self.ops[b](states[self.inputs[b]]))
        return torch.cat(states[2:], dim=1)


class Network(nn.Module):
    """Stem -> cells -> global average pool -> linear. 2-D inputs (C, L) are treated as (C, 1, L)."""

    def __init__(self, in_channels, num_classes, channels, layers, stem_stride, genotype=None):
        super().__init__()
        self.genotype = genotype
        c_stem = 3 * channels
        # stride > 1 average-pools first, so a small stem sees every pixel of a large input
        pool = [nn.AvgPool2d(stem_stride, ceil_mode=True)] if stem_stride > 1 else []
        self.stem = nn.Sequential(*pool, nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for layer in range(layers):
            reduction = layer in reduction_layers(layers)
            if reduction:
                c *= 2
            self.cells.append(self.make_cell(reduction, c_pp, c_p, c, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, STEPS * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def make_cell(self, reduction, c_pp, c_p, c, reduction_prev):
        ops = self.genotype["reduce" if reduction else "normal"]
        return Cell(ops, c_pp, c_p, c, reduction, reduction_prev)

    def features(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(2)
        s = self.stem(x)
        return s, s

    def forward(self, x):
        s0, s1 = self.features(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))
# render: program-end
