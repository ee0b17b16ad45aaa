"""Bit layouts of the stream beats, defined once (docs/streams.md).

All multi-lane beats are packed lane 0 at the least significant bits, matching
Amaranth's ``data.ArrayLayout``.  Signed values are two's complement.

weight beat (LOAD_W, one per PE row)
    ``cols`` lanes of ``weight_bits + index_bits``; in a lane the value is at the LSBs and
    the N:M index (position of the value inside its group of ``group_size``) above it.
activation beat (COMPUTE, one per input row)
    ``rows`` lanes x ``group_size`` activations of ``activation_bits``: lane ``r`` holds the
    whole activation group that PE row ``r``'s weights index into; element ``j`` of lane
    ``r`` is at bit ``(r * group_size + j) * activation_bits``.
output beat (DRAIN, one per accumulator row)
    ``cols`` lanes of ``accumulator_bits``.

These helpers turn NumPy arrays into Python integers (arbitrary width) and back; the
Amaranth and Verilator backends use them so both see exactly the same bits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig

__all__ = ["pack_lanes", "unpack_lanes", "pack_weight_beat", "pack_activation_beat", "unpack_output_beat"]


def pack_lanes(values: "np.ndarray | list[int]", width: int) -> int:
    """Pack integers (two's complement, ``width`` bits each) into one integer, element 0 at the LSBs."""
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(np.asarray(values).ravel().tolist()):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack_lanes(word: int, width: int, count: int, signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: ``count`` lanes of ``width`` bits as int64."""
    mask = (1 << width) - 1
    out = np.empty(count, dtype=np.int64)
    for i in range(count):
        v = (word >> (i * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out[i] = v
    return out


def pack_weight_beat(config: "AcceleratorConfig", values: np.ndarray, indices: np.ndarray) -> int:
    """Pack one PE row: ``cols`` weights and their N:M indices."""
    wb, ib = config.weight_bits, config.index_bits
    lanes = (np.asarray(values, dtype=np.int64) & ((1 << wb) - 1)) | (np.asarray(indices, dtype=np.int64) << wb)
    return pack_lanes(lanes, wb + ib)


def pack_activation_beat(config: "AcceleratorConfig", lanes: np.ndarray) -> int:
    """Pack one activation beat from a ``(rows, group_size)`` array."""
    lanes = np.asarray(lanes)
    if lanes.shape != (config.rows, config.group_size):
        raise ValueError(f"activation beat must have shape {(config.rows, config.group_size)}, not {lanes.shape}")
    return pack_lanes(lanes, config.activation_bits)


def unpack_output_beat(config: "AcceleratorConfig", word: int) -> np.ndarray:
    """Unpack one output beat into ``cols`` signed accumulator values."""
    return unpack_lanes(word, config.accumulator_bits, config.cols, signed=True)
