"""Burns CPU forever at import. Contained: the wall-clock timeout (or the CPU-seconds rlimit)."""
n = 0
while True:
    n += 1


def build_model(input_shape, num_classes):  # never reached
    raise AssertionError
