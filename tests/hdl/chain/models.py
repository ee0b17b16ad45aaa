"""Naive Python models and operand packing shared by the chain component tests.

Everything here is plain integer arithmetic on Python ints and NumPy arrays: dot products,
two's-complement wrapping, and the bit packing of :mod:`sparsa.chain_layout` - no knowledge
of the components' registers.
"""

from __future__ import annotations

import numpy as np

from sparsa.chain_layout import PACK_SHIFT
from sparsa.layout import pack_lanes, unpack_lanes

__all__ = ["wrap_int", "random_word", "pack_word", "pack_weight", "pack_weights", "weight_range",
           "act_range", "dot_lanes", "packed_split", "unpack_tokens"]


def wrap_int(value: int, bits: int) -> int:
    """``value`` reduced to ``bits``-bit two's complement."""
    half = 1 << (bits - 1)
    return ((int(value) + half) % (half << 1)) - half


def weight_range(cfg) -> tuple[int, int]:
    """Smallest and largest signed weight."""
    return -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1


def act_range(cfg) -> tuple[int, int]:
    """Smallest and largest signed activation."""
    return -(1 << (cfg.activation_bits - 1)), (1 << (cfg.activation_bits - 1)) - 1


def random_word(rng: np.random.Generator, cfg) -> np.ndarray:
    """One slice's activation word, shape ``(P, group_size)``, random signed activations."""
    lo, hi = act_range(cfg)
    return rng.integers(lo, hi + 1, (cfg.token_lanes, cfg.group_size))


def pack_word(cfg, word) -> int:
    """Bits of one activation word (token ``p``, element ``e`` at lane ``p * group_size + e``)."""
    return pack_lanes(np.asarray(word), cfg.activation_bits)


def pack_weight(cfg, value: int, index: int) -> int:
    """Bits of one weight lane: ``value`` at the LSBs, ``index`` above."""
    return (int(value) & ((1 << cfg.weight_bits) - 1)) | (int(index) << cfg.weight_bits)


def pack_weights(cfg, lanes) -> int:
    """Bits of a list of ``(value, index)`` weight lanes, lane 0 at the LSBs."""
    width = cfg.weight_bits + cfg.index_bits
    return sum(pack_weight(cfg, v, i) << (k * width) for k, (v, i) in enumerate(lanes))


def dot_lanes(cfg, operands) -> list[int]:
    """Exact per-token dot product ``sum_s w_s * word_s[p][index_s]`` of ``(w, index, word)`` operands."""
    return [sum(int(w) * int(word[p][index]) for w, index, word in operands) for p in range(cfg.token_lanes)]


def packed_split(total: int) -> tuple[int, int]:
    """The two lanes of a packed sum by the documented rule, in integer arithmetic.

    ``LSP`` = the low 18 bits as a signed number, ``MSP = (total - LSP) / 2**18``; equal to the
    two dot products ``(d0, d1)`` of ``total = d1 * 2**18 + d0`` whenever ``|d0| < 2**17``.
    """
    low = wrap_int(total, PACK_SHIFT)
    return low, (total - low) >> PACK_SHIFT


def unpack_tokens(value: int, cfg, count: int) -> list[int]:
    """``count`` signed accumulators of a packed port value."""
    return [int(x) for x in unpack_lanes(value, cfg.accumulator_bits, count, signed=True)]
