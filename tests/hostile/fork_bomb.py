"""Fork bomb: every process forks forever. Contained: pids/NPROC cap, then killed at the timeout."""
import os

while True:
    try:
        os.fork()
    except OSError:
        pass


def build_model(input_shape, num_classes):  # never reached
    raise AssertionError
