"""Bit layouts of the stream beats, defined once (docs/streams.md).

All multi-lane beats are packed lane 0 at the least significant bits, matching
Amaranth's ``data.ArrayLayout``.  Signed values are two's complement.

weight beat (LOAD_W, one per PE row)
    ``cols`` lanes of ``weight_bits + index_bits``; in a lane the value is at the LSBs and
    the N:M index (position of the value inside its group of ``group_size``) above it.
weight beat with OVP-4 weights (LOAD_W, one per *pair* of PE rows ``2b, 2b+1``)
    ``cols`` lanes of ``8 + 2 * index_bits``: bits 7:0 the OVP-4 pair byte (compressed slot
    ``2b`` of the column in the low nibble, slot ``2b+1`` in the high nibble, exactly the
    byte of docs/formats/ovp.md), then the N:M index of slot ``2b``, then that of ``2b+1``.
activation beat (COMPUTE, one per input row)
    ``rows`` lanes x ``group_size`` activations of ``activation_bits``: lane ``r`` holds the
    whole activation group that PE row ``r``'s weights index into; element ``j`` of lane
    ``r`` is at bit ``(r * group_size + j) * activation_bits``.  With OVP-4 activations the
    elements are 4-bit codes, so each aligned pair of elements is one OVP-4 byte (even element
    in the low nibble).
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

__all__ = ["pack_lanes", "unpack_lanes", "pack_weight_beat", "pack_activation_beat", "unpack_output_beat",
           "unpack_weight_beat", "unpack_activation_beat", "stream_beat_bits",
           "DECODED_EXP_BITS", "DECODED_INT_BITS", "pe_weight_bits", "lane_element_bits"]

#: Width of a decoded OVP-4 exponent (0..5 for int4 normals; 0..6 would fit flint4 too).
DECODED_EXP_BITS = 3
#: Width of a decoded OVP-4 integer (signed, -7..7).
DECODED_INT_BITS = 4


def pe_weight_bits(config: "AcceleratorConfig") -> int:
    """Bits of one PE's stationary weight register: value + index, or (exp, int) + index for OVP."""
    value = DECODED_EXP_BITS + DECODED_INT_BITS if config.weight_is_ovp else config.weight_bits
    return value + config.index_bits


def lane_element_bits(config: "AcceleratorConfig") -> int:
    """Bits of one activation inside the array (after the left-border decoders for OVP)."""
    return DECODED_EXP_BITS + DECODED_INT_BITS if config.activation_is_ovp else config.activation_bits


def pack_lanes(values: "np.ndarray | list[int]", width: int) -> int:
    """Pack integers (two's complement, ``width`` bits each) into one integer, element 0 at the LSBs.

    Vectorized: the lanes' bits, LSB first, are packed into little-endian bytes (a weight beat of
    thousands of lanes packs in microseconds); lanes wider than 63 bits take the exact loop."""
    flat = np.asarray(values).ravel()
    if width > 63 or flat.dtype.kind not in "iub":
        mask = (1 << width) - 1
        word = 0
        for i, v in enumerate(flat.tolist()):
            word |= (int(v) & mask) << (i * width)
        return word
    v = flat.astype(np.int64).view(np.uint64)
    bits = ((v[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return int.from_bytes(np.packbits(bits.ravel(), bitorder="little").tobytes(), "little")


def unpack_lanes(word: int, width: int, count: int, signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: ``count`` lanes of ``width`` bits as int64."""
    if width > 62:
        mask = (1 << width) - 1
        out = np.empty(count, dtype=np.int64)
        for i in range(count):
            v = (word >> (i * width)) & mask
            if signed and v >> (width - 1):
                v -= 1 << width
            out[i] = v
        return out
    nbytes = -(-count * width // 8)
    raw = np.frombuffer(int(word & ((1 << (count * width)) - 1)).to_bytes(nbytes, "little"), dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[:count * width].reshape(count, width).astype(np.int64)
    out = (bits << np.arange(width, dtype=np.int64)).sum(axis=1)
    if signed:
        out = np.where(out >> (width - 1), out - (1 << width), out)
    return out


def pack_weight_beat(config: "AcceleratorConfig", values: np.ndarray, indices: np.ndarray) -> int:
    """Pack one weight beat.

    int8/int4 weights: one PE row, ``values`` and ``indices`` of shape ``(cols,)``.
    OVP-4 weights: one pair of PE rows, ``values`` = ``cols`` pair bytes (uint8) and
    ``indices`` of shape ``(2, cols)`` (row ``2b``, row ``2b+1``).
    """
    wb, ib = config.weight_bits, config.index_bits
    if config.weight_is_ovp:
        idx = np.asarray(indices, dtype=np.int64).reshape(2, config.cols)
        lanes = (np.asarray(values, dtype=np.int64) & 0xFF) | (idx[0] << 8) | (idx[1] << (8 + ib))
        return pack_lanes(lanes, 8 + 2 * ib)
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


def unpack_weight_beat(config: "AcceleratorConfig", word: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_weight_beat`: ``(values, indices)`` of one weight beat (OVP-4 pair
    bytes stay unsigned, with the two rows' indices stacked)."""
    wb, ib = config.weight_bits, config.index_bits
    if config.weight_is_ovp:
        lanes = unpack_lanes(word, 8 + 2 * ib, config.cols, signed=False)
        mask = (1 << ib) - 1
        return (lanes & 0xFF).astype(np.uint8), np.stack([(lanes >> 8) & mask, (lanes >> (8 + ib)) & mask])
    lanes = unpack_lanes(word, wb + ib, config.cols, signed=False)
    values = lanes & ((1 << wb) - 1)
    return np.where(values >> (wb - 1), values - (1 << wb), values), lanes >> wb


def unpack_activation_beat(config: "AcceleratorConfig", word: int) -> np.ndarray:
    """Inverse of :func:`pack_activation_beat`: ``(rows, group_size)`` lanes (OVP-4 codes unsigned)."""
    shape = (config.rows, config.group_size)
    return unpack_lanes(word, config.activation_bits, shape[0] * shape[1],
                        signed=not config.activation_is_ovp).reshape(shape)


def stream_beat_bits(config: "AcceleratorConfig") -> dict[str, int]:
    """Beat width of each data stream: ``{"weights", "acts", "outputs"}``."""
    return {"weights": config.weight_beat_bits, "acts": config.activation_beat_bits,
            "outputs": config.output_beat_bits}
