"""Tries to read the host: home directory, /etc secrets, the run directory, the store, a planted secret.

Contained: nothing is readable, so the program builds normally. Anything it can read makes it
fail loudly with LEAKED in the reason's detail. The test substitutes the host paths it planted.
"""
import glob
import os

import torch.nn as nn

PLANTED = [p for p in "__SECRET_PATHS__".split(":") if p and not p.startswith("__")]
CANDIDATES = PLANTED + ["/etc/shadow", "/etc/hostname", "/root/.bash_history", "/root/.ssh/id_rsa",
                        os.path.expanduser("~/.ssh/id_rsa"), "/proc/1/environ", "/work/main/README.md"]
CANDIDATES += glob.glob("/home/*/.*") + glob.glob("/root/*") + glob.glob("/work/*/runs/*")
leaked = []
for path in CANDIDATES:
    try:
        with open(path, "rb") as f:
            data = f.read(64)
        if path in PLANTED or path.startswith(("/root", "/home", "/etc/shadow")) or "/runs/" in path:
            leaked.append(f"{path}={data[:20]!r}")
    except OSError:
        pass
if leaked:
    raise RuntimeError("LEAKED " + "; ".join(leaked))


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))
