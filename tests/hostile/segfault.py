"""Dereferences NULL through ctypes: the worker dies of SIGSEGV -> crashed."""
import ctypes

ctypes.string_at(0)
