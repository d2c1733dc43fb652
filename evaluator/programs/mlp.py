"""Seed program: a small MLP. The search edits this file."""
import torch.nn as nn

HIDDEN = 128
DEPTH = 2
DROPOUT = 0.1


def build_model(input_shape, num_classes):
    in_features = 1
    for size in input_shape:
        in_features *= size
    layers = [nn.Flatten()]
    width = in_features
    for _ in range(DEPTH):
        layers += [nn.Linear(width, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT)]
        width = HIDDEN
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
