"""Tries to fill the host disk: many medium files (each under the per-file cap) into out/, /tmp and
every other directory it can write to, ignoring every error, then carries on as if nothing happened.

Contained: every writable place is a size-capped tmpfs, and filling one kills the run at once
(output_too_large) instead of letting it finish with an "ok". The test watches the host side.
"""
import os
import sys
import time

BLOCK = b"\xa5" * (1 << 20)
FILE_MB = 8  # below the corpus' 16 MiB per-file cap: only a total quota stops this


def fill(place, name):
    try:
        with open(os.path.join(place, name), "wb") as f:
            for _ in range(FILE_MB):
                f.write(BLOCK)
        written[place] = written.get(place, 0) + FILE_MB
        return True
    except OSError:
        return False


def writable_dirs():
    found = []
    for dirpath, dirnames, _ in os.walk("/"):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in ("/proc", "/sys")]
        if os.access(dirpath, os.W_OK):
            found.append(dirpath)
    return found


written = {}
obvious = ["/ensnas-job/out", "/tmp", os.getcwd(), os.path.expanduser("~")]
for round_ in range(64):  # the obvious places first: up to 512 MiB each
    if not any([fill(place, f"fill-{round_}.bin") for place in dict.fromkeys(obvious)]):
        break
places = writable_dirs()
print("FILL-PLACES", places, file=sys.stderr, flush=True)
for round_ in range(64):  # then every other writable directory
    if not any([fill(place, f"more-{round_}.bin") for place in places]):
        break
print("FILL-DONE", written, file=sys.stderr, flush=True)
time.sleep(30)  # a run that was not stopped while filling ends in a timeout, not in output_too_large


def build_model(input_shape, num_classes):
    import torch.nn as nn
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))
