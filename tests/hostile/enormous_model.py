"""A model too big to even allocate (40 billion weights) -> out_of_memory, the host unharmed."""
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(200000, 200000), nn.Linear(200000, num_classes))
