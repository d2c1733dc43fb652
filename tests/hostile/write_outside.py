"""Tries to write or delete outside its work dir: a planted host directory, the data, the source, /usr.

Contained: every attempt fails; the program then builds normally. The test checks the host.
"""
import os
import sys

import torch.nn as nn

TARGET = "__TARGET_DIR__"
attempts = [os.path.join(TARGET, "pwned.txt"), "/ensnas-data/pwned.txt", "/ensnas-data/x_val.npy",
            "/ensnas-src/evaluator/pwned.py", "/ensnas-job/program.py", os.path.join(sys.prefix, "pwned.txt"),
            "/usr/pwned.txt", "/etc/pwned.txt", "/pwned.txt"]
for path in attempts:
    try:
        with open(path, "w") as f:
            f.write("pwned")
        print(f"HOSTILE-WRITE wrote {path}", file=sys.stderr)
    except OSError as exc:
        print(f"HOSTILE-WRITE blocked {path}: {exc.strerror}", file=sys.stderr)
for path in (os.path.join(TARGET, "sentinel.txt"), "/ensnas-data/y_train.npy", "/ensnas-job/job.json"):
    try:
        os.remove(path)
        print(f"HOSTILE-WRITE deleted {path}", file=sys.stderr)
    except OSError as exc:
        print(f"HOSTILE-WRITE could not delete {path}: {exc.strerror}", file=sys.stderr)


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))
