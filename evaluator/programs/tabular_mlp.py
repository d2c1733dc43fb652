"""Seed program for tabular tasks: an MLP over a dense feature vector. The search edits this file.

FEATURE_FRACTION is the feature-bagging knob (seed 000 §5): each trained instance sees a fixed
random subset of this fraction of the input columns (the worker draws it from the instance seed).
"""
import torch.nn as nn

FEATURE_FRACTION = 1.0
HIDDEN = 64
DEPTH = 2
DROPOUT = 0.0


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
