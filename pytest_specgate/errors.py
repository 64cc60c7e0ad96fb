"""Errors a user can act on. Each message says what went wrong, where, and the fix."""

from __future__ import annotations


class SpecgateError(Exception):
    """Base class: caught at the pytest boundary and shown without a traceback."""


class SpecgateConfigError(SpecgateError):
    """The config file or an option is wrong (becomes a pytest.UsageError)."""


class PreflightError(SpecgateError):
    """The binary, model or flags cannot work; found before any model is loaded."""


class ServerError(SpecgateError):
    """llama-server died, did not become ready, or answered with an error."""


class SampleError(SpecgateError):
    """A request came back unusable as a measurement (e.g. fewer tokens than asked)."""


class ResultsError(SpecgateError):
    """A results or baseline file is unreadable; it is never silently overwritten."""
