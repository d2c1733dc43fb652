"""Error type raised by every function in `theory` on invalid input."""

from __future__ import annotations


class TheoryInputError(ValueError):
    """An argument is outside the domain of the docs/theory.md result being evaluated."""
