"""A model whose outputs are NaN -> nan_output."""
import torch
import torch.nn as nn


class NaNNet(nn.Module):
    def __init__(self, n, k):
        super().__init__()
        self.fc = nn.Linear(n, k)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return NaNNet(n, num_classes)
