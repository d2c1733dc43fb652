"""Leaves without a word: os._exit at import time, so the worker never writes a verdict."""
import os

os._exit(3)
