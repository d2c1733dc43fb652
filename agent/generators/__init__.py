"""LLM generator backends behind one interface (see base.py)."""
from agent.generators.base import (Generation, Generator, GeneratorConfig, GeneratorError, GeneratorTimeout,
                                   GeneratorUnavailable, SamplingConfig, make_generator, register_generator)

__all__ = ["Generation", "Generator", "GeneratorConfig", "GeneratorError", "GeneratorTimeout",
           "GeneratorUnavailable", "SamplingConfig", "make_generator", "register_generator"]
