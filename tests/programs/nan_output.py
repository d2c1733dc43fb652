import torch
import torch.nn as nn


class NaNNet(nn.Module):
    def __init__(self, in_features, num_classes):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)) * torch.tensor(float("nan"))


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return NaNNet(n, num_classes)
