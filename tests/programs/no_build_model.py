import torch.nn as nn

def make_model(input_shape, num_classes):
    return nn.Linear(1, num_classes)
