"""Returns one output too many per example -> shape_mismatch."""
import torch.nn as nn


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes + 1))
