"""Tries to reach the outside: a host loopback listener, a public resolver, DNS. Then behaves.

Contained: every attempt fails (no network namespace route); the host's listener sees nothing.
The test substitutes the port of a listener it runs on 127.0.0.1.
"""
import socket
import sys

import torch.nn as nn

PORT = int("__PORT__") if "__PORT__".isdigit() else 9
for host, port in (("127.0.0.1", PORT), ("1.1.1.1", 53), ("8.8.8.8", 443)):
    try:
        with socket.create_connection((host, port), timeout=2):
            print(f"HOSTILE-NET connected to {host}:{port}", file=sys.stderr)
    except OSError as exc:
        print(f"HOSTILE-NET blocked {host}:{port}: {exc}", file=sys.stderr)
try:
    socket.getaddrinfo("example.com", 80)
    print("HOSTILE-NET resolved example.com", file=sys.stderr)
except OSError as exc:
    print(f"HOSTILE-NET dns blocked: {exc}", file=sys.stderr)


def build_model(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n, num_classes))
