"""Signals every process it can (kill -1), its parent and PID 1. Contained: only the sandbox dies."""
import os
import signal

for pid in (-1, os.getppid(), 1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
os._exit(0)
