"""Error types shared by every part of sparsa.

Every error a user can cause (bad config, bad shape, missing optional tool) is a
:class:`SparsaError`.  The CLI prints ``error: <message>`` on one line and exits
with status 2; it never shows a traceback for these.
"""

from __future__ import annotations

__all__ = [
    "SparsaError",
    "ConfigError",
    "ShapeError",
    "FormatError",
    "MissingToolError",
    "UnsupportedError",
]


class SparsaError(Exception):
    """Base class of all user-facing sparsa errors (one-line message)."""


class ConfigError(SparsaError, ValueError):
    """A configuration file or field is invalid (message names file, field and value)."""


class ShapeError(SparsaError, ValueError):
    """A tensor or GEMM shape is invalid or does not fit the hardware."""


class FormatError(SparsaError, ValueError):
    """A value cannot be represented in a number or sparsity format."""


class UnsupportedError(SparsaError, NotImplementedError):
    """A valid request the configured hardware (or this version) cannot run."""


class MissingToolError(SparsaError, RuntimeError):
    """An optional tool or package (verilator, g++, yowasp, a model) is not installed.

    The message always says how to install it.
    """
