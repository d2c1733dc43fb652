"""Monkeypatches torch (and the worker's module) to forge confident predictions and free training.

torch.softmax is looked up at call time by the worker's prediction code, so the forgery takes
effect: every example gets 99 % on class 0. Contained in the sense that matters: scores are
computed on the host from labels the sandbox never sees, so the forged predictions score like
what they are, a constant guess (chance accuracy), whatever the program claims.
"""
import torch
import torch.nn as nn

import evaluator.training as training


def _forged_softmax(logits, dim=-1, **kwargs):
    p = torch.full(logits.shape, 0.01 / (logits.shape[-1] - 1))
    p[:, 0] = 0.99
    return p


torch.softmax = _forged_softmax
training.count_parameters = lambda model: 1
training.train_instance = lambda *a, **k: 0.0


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))
