"""Writes one enormous file in its scratch dir. Contained: file-size rlimit -> output_too_large."""
block = b"\0" * (1 << 20)
with open("huge.bin", "wb") as f:
    for _ in range(64 * 1024):
        f.write(block)


def build_model(input_shape, num_classes):  # never reached
    raise AssertionError
