"""Seed program: a small CNN for 1x28x28 images. The search edits this file."""
import torch.nn as nn

CHANNELS = 16


def build_model(input_shape, num_classes):
    in_channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(in_channels, CHANNELS, kernel_size=3, padding=1),
        nn.BatchNorm2d(CHANNELS),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(CHANNELS, 2 * CHANNELS, kernel_size=3, padding=1),
        nn.BatchNorm2d(2 * CHANNELS),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(2 * CHANNELS * 16, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
