"""Memory bomb: keeps touching 64 MiB blocks until something gives. Contained: the memory limit."""
blocks = []
while True:
    blocks.append(b"x" * (64 << 20))


def build_model(input_shape, num_classes):  # never reached
    raise AssertionError
