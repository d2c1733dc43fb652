"""Typed failure reasons shared by the worker, every sandbox backend and the store.

A candidate either evaluates or fails with exactly one of these reasons; the CLI turns
them into messages, the store keeps them, the generator's repair loop feeds them back.
"""
from __future__ import annotations

from enum import Enum


class FailureReason(str, Enum):
    syntax_error = "syntax_error"              # program does not parse
    import_error = "import_error"              # import of the module (or one it imports) failed
    missing_build_model = "missing_build_model"
    build_error = "build_error"               # build_model raised
    forward_error = "forward_error"           # the model raised on a forward pass
    shape_mismatch = "shape_mismatch"         # output is not [batch, num_classes]
    too_many_params = "too_many_params"
    nan_output = "nan_output"                 # NaN/inf in outputs, loss or predictions
    bad_hyperparameter = "bad_hyperparameter" # e.g. FEATURE_FRACTION outside (0, 1]
    timeout = "timeout"
    out_of_memory = "out_of_memory"
    crashed = "crashed"                       # non-zero exit without a worker verdict (segfault, os._exit)
    output_too_large = "output_too_large"     # stdout/stderr or an output file above its cap
    invalid_output = "invalid_output"         # predictions missing, mis-shaped or not probabilities
    sandbox_unavailable = "sandbox_unavailable"
    too_large = "too_large"                   # source above the pre-filter size cap
    duplicate = "duplicate"                   # pre-filter: near-duplicate of an archived program


class EnsnasError(Exception):
    """Base class of every error the library raises on purpose."""


class EvaluationFailed(EnsnasError):
    """A candidate could not be evaluated; `reason` says why in one typed word."""

    def __init__(self, reason: FailureReason, detail: str = "") -> None:
        self.reason = FailureReason(reason)
        self.detail = detail
        super().__init__(f"{self.reason.value}: {detail}" if detail else self.reason.value)


class ConfigError(EnsnasError):
    """A configuration, task or path the user gave is unusable."""


class SandboxUnavailable(EnsnasError):
    """The chosen sandbox backend cannot run here (e.g. no Docker daemon)."""
