"""Imports a package that ships a dataset (scikit-learn's bundled digits) and looks up each
validation input's true label in it: accuracy 1.000 on the digits task if it gets that far.

Contained: the sandbox's runtime holds only what the worker itself imports (sandbox.runtime_view),
so the import fails (import_error).
"""
import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

bunch = load_digits()
table = {row.tobytes(): int(y) for row, y in zip((bunch.images.astype(np.float32) / 16.0)[:, None], bunch.target)}


class Oracle(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.num_classes = num_classes

    def forward(self, x):
        out = torch.zeros(len(x), self.num_classes) + self.bias
        for i, row in enumerate(x.detach().numpy()):
            out[i, table.get(row.tobytes(), 0)] += 50.0
        return out


def build_model(input_shape, num_classes):
    return Oracle(num_classes)
