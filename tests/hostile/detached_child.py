"""Starts a double-forked, setsid'd child that sleeps for ten minutes, then evaluates normally.

Contained: the child dies with the sandbox (PID namespace / container). The test substitutes a
unique token and looks for it in every host process's command line afterwards.
"""
import os
import sys

import torch.nn as nn

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "__TOKEN__"])
    os._exit(0)


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))
