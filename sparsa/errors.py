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
    "IllegalInstructionError",
    "MissingToolError",
    "UnsupportedError",
    "ExportError",
]


class SparsaError(Exception):
    """Base class of all user-facing sparsa errors (one-line message)."""


class ConfigError(SparsaError, ValueError):
    """A configuration file or field is invalid (message names file, field and value)."""


class ShapeError(SparsaError, ValueError):
    """A tensor or GEMM shape is invalid or does not fit the hardware."""


class FormatError(SparsaError, ValueError):
    """A value cannot be represented in a number or sparsity format."""


class IllegalInstructionError(FormatError):
    """An instruction word is illegal: an unassigned opcode, or bits set that its opcode does not
    use (docs/isa.md#illegal-instructions).

    Every rung that executes instructions raises it with the same one-line message (built by
    :func:`sparsa.isa.illegal_instruction`): the ISA interpreters and cycle models when they
    reach the word, the RTL backends and the SoC host driver when the controller stopped on it.

    Attributes
    ----------
    index : int or None
        Position of the word in the instruction stream (0 = first word), when known.
    word : int
        The 32-bit instruction word.
    opcode : int
        Its opcode field.
    cycles : int or None
        Timed rungs only: the cycle count at the stop (every cycle up to and including the
        fetch of the illegal word); ``None`` from untimed rungs.
    """

    def __init__(self, message: str, *, index: "int | None", word: int, opcode: int,
                 cycles: "int | None" = None) -> None:
        super().__init__(message)
        self.index = index
        self.word = word
        self.opcode = opcode
        self.cycles = cycles


class UnsupportedError(SparsaError, NotImplementedError):
    """A valid request the configured hardware (or this version) cannot run."""


class MissingToolError(SparsaError, RuntimeError):
    """An optional tool or package (verilator, g++, yowasp, a model) is not installed.

    The message always says how to install it.
    """


class ExportError(SparsaError, ValueError):
    """Generated HDL failed a check before it was written (``sparsa verilog`` / ``sparsa build``).

    For example :func:`sparsa.hdl.export.reset_triggered` finding a combinational process that
    Yosys did not give a time-0 trigger, or Yosys failing to convert the design.  Nothing is
    written; the message names the module and the check, on one line.
    """
