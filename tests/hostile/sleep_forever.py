"""Sleeps forever without using CPU, so only a wall clock catches it."""
import time

time.sleep(10**9)


def build_model(input_shape, num_classes):  # never reached
    raise AssertionError
