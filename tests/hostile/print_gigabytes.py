"""Prints 4 GiB to stdout. Contained: killed once the stream passes its cap -> output_too_large."""
import sys

line = "spam " * 200000 + "\n"
for _ in range(4 * 1024):
    sys.stdout.write(line)


def build_model(input_shape, num_classes):  # never reached
    raise AssertionError
