"""The instruction encoding of one :class:`~sparsa.sfu.command.SfuCommand`: :data:`COMMAND_WORDS` 32-bit words.

The machine's SFU instruction (:mod:`sparsa.machine.isa`) is a header word followed by these
words.  The fields are packed LSB first in the order of :data:`COMMAND_FIELDS`, word 0 holding
bits 0..31 of the packed command; a signed field is its two's complement in its width.  Every
value :class:`~sparsa.sfu.command.SfuCommand` accepts fits its field, so
``decode_command(encode_command(c)) == c`` for every command (property-tested).
"""

from __future__ import annotations

from dataclasses import fields

from sparsa.errors import FormatError
from sparsa.sfu.command import SfuCommand, SfuOp

__all__ = ["COMMAND_FIELDS", "COMMAND_BITS", "COMMAND_WORDS", "encode_command", "decode_command"]

#: ``(name, width, signed)`` of every command field, LSB first.  Addresses are 24 bits (the
#: range :class:`SfuCommand` accepts); ``bits`` is stored as ``bits4`` (1: 4-bit codes).
COMMAND_FIELDS: tuple[tuple[str, int, bool], ...] = (
    ("op", 4, False), ("rows", 16, False), ("n", 16, False),
    ("dst", 24, False), ("a", 24, False), ("b", 24, False), ("b_step", 24, False),
    ("shift", 7, True), ("mantissa", 24, False), ("exponent", 8, True), ("bits4", 1, False),
    ("eps_code", 48, False), ("causal", 1, False), ("offset", 24, False), ("unit", 16, False),
    ("mantissa_bits", 5, False), ("scale_dst", 24, False), ("row_exponent", 1, False),
    ("exp_dst", 24, False), ("scale_src", 24, False), ("exp_src", 24, False), ("qmax", 7, False),
)
#: Bits of the packed command.
COMMAND_BITS = sum(width for _, width, _ in COMMAND_FIELDS)
#: 32-bit words after the SFU instruction's header word.
COMMAND_WORDS = -(-COMMAND_BITS // 32)

assert {name for name, _, _ in COMMAND_FIELDS} - {"bits4"} | {"bits"} == {f.name for f in fields(SfuCommand)}


def _values(cmd: SfuCommand) -> dict[str, int]:
    values = {f.name: getattr(cmd, f.name) for f in fields(SfuCommand)}
    values["bits4"] = int(values.pop("bits") == 4)
    return {k: int(v) for k, v in values.items()}


def encode_command(cmd: SfuCommand) -> list[int]:
    """The :data:`COMMAND_WORDS` words of ``cmd``."""
    if not isinstance(cmd, SfuCommand):
        raise FormatError(f"encode_command takes an SfuCommand, not {type(cmd).__name__}")
    values, packed, offset = _values(cmd), 0, 0
    for name, width, _signed in COMMAND_FIELDS:
        v = values[name]
        if not -(1 << width) < v < (1 << width):
            raise FormatError(f"SFU command field {name}={v} does not fit its {width} bits")
        packed |= (v & ((1 << width) - 1)) << offset
        offset += width
    return [(packed >> (32 * i)) & 0xFFFFFFFF for i in range(COMMAND_WORDS)]


def decode_command(words: "list[int] | tuple[int, ...]") -> SfuCommand:
    """The command of :data:`COMMAND_WORDS` ``words``.

    Raises
    ------
    FormatError
        Not :data:`COMMAND_WORDS` 32-bit words, bits set beyond :data:`COMMAND_BITS`, an
        unassigned op, or field values the command refuses.
    """
    words = list(words)
    if len(words) != COMMAND_WORDS or any(isinstance(w, bool) or not 0 <= int(w) < 1 << 32 for w in words):
        raise FormatError(f"an SFU command is {COMMAND_WORDS} 32-bit words, not {words!r}")
    packed = sum(int(w) << (32 * i) for i, w in enumerate(words))
    if packed >> COMMAND_BITS:
        raise FormatError(f"SFU command words set bits beyond bit {COMMAND_BITS - 1} (reserved, must be zero)")
    values, offset = {}, 0
    for name, width, signed in COMMAND_FIELDS:
        v = (packed >> offset) & ((1 << width) - 1)
        if signed and v >> (width - 1):
            v -= 1 << width
        values[name] = v
        offset += width
    try:
        op = SfuOp(values.pop("op"))
    except ValueError:
        raise FormatError(f"SFU command op {packed & 0xF} is not assigned "
                          f"({', '.join(f'{o.name}={int(o)}' for o in SfuOp)})") from None
    bits = 4 if values.pop("bits4") else 8
    return SfuCommand(op, bits=bits, causal=bool(values.pop("causal")),
                      row_exponent=bool(values.pop("row_exponent")), **values)
