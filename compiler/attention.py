"""Attention's int8 x int8 products on a datapath whose weight port is narrower: nibble passes.

Q.K^T and P.V are GEMMs whose ``k x n`` operand - K and V - is int8 codes (the KV cache,
docs/block.md), whatever the model's weights are.  A preset built for int4 weights (the
``u280-flightllm`` chain) or OVP-4 weights has a 4-bit weight port, so K and V do not fit it.
The decision (docs/block.md, "Attention on a 4-bit weight port"):

* **Two nibble passes on the matrix datapath.**  Every code ``c`` with ``-128 <= c <= 119`` is
  exactly ``16 * hi + lo`` with both ``hi`` and ``lo`` signed 4-bit (:func:`split_nibbles`), so
  ``X @ W = 16 * (X @ HI) + X @ LO``: the GEMM runs once per nibble plane on the int4 port
  (same tiling, same activations), and the SFU combines the two results with one MUL (by 16)
  and one ADD per output row (the ``nibble_combine`` vector op of :mod:`sparsa.compiler.vector`)
  before requantisation.  The compiler interleaves the planes per weight tile, so K and V are
  read from memory once (one int8 byte holds both nibbles).
* **The price**: twice the MAC cycles and weight beats of the two attention GEMMs, the same K/V
  bytes, the combine on the SFU - and K/V codes limited to ``[-119, 119]`` on such presets
  (:data:`NIBBLE_QMAX`; a 0.06-bit coarser step than int8's 127).  The estimator costs exactly
  this (:func:`operand_passes`).
* Not chosen: a wider weight port (an 8-bit mode in every PE: the DSP budget of the packed int4
  chain is the point of the preset, and an 8 x 8 product per DSP halves the attention rate
  anyway, like the passes), or the SFU (``lanes`` MACs per cycle instead of the array's).
"""

from __future__ import annotations

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import FormatError, UnsupportedError

__all__ = ["NIBBLE_QMAX", "NIBBLE_BITS", "operand_passes", "split_nibbles", "combine_nibbles", "kv_code_max"]

#: Bits of one nibble plane.
NIBBLE_BITS = 4
#: Largest code magnitude an int8 operand may have on a 4-bit port (``16 * 7 + 7``).
NIBBLE_QMAX = 119


def operand_passes(config: AcceleratorConfig, operand_bits: int) -> int:
    """GEMM passes for a dynamic ``k x n`` operand of ``operand_bits`` on ``config``'s weight port.

    1 when the port is at least as wide (``config.weight_bits``), 2 for an 8-bit operand on a
    4-bit port (:func:`split_nibbles`).

    Raises
    ------
    UnsupportedError
        Any other combination (the value and the port are named).
    """
    if isinstance(operand_bits, bool) or not isinstance(operand_bits, int) or operand_bits < 1:
        raise FormatError(f"operand_bits must be a positive int, not {operand_bits!r}")
    port = config.weight_bits
    if operand_bits <= port:
        return 1
    if operand_bits == 2 * NIBBLE_BITS and port == NIBBLE_BITS:
        return 2
    raise UnsupportedError(f"a {operand_bits}-bit attention operand on the {port}-bit weight port of "
                           f"types.weight={config.types.weight!r} is not supported (8-bit operands split into "
                           f"two 4-bit passes)")


def split_nibbles(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes in ``[-128, 119]`` -> ``(hi, lo)``, both in ``[-8, 7]``, with ``codes == 16 * hi + lo``.

    ``lo = ((c + 8) mod 16) - 8`` and ``hi = (c - lo) / 16``.

    Raises
    ------
    FormatError
        A code outside ``[-128, 119]`` (its ``hi`` would be 8), naming the largest.
    """
    c = np.asarray(codes)
    if c.dtype.kind not in "iu":
        raise FormatError(f"split_nibbles needs integer codes, not {c.dtype}")
    c = c.astype(np.int64)
    if c.size and (c.max() > NIBBLE_QMAX or c.min() < -128):
        raise FormatError(f"split_nibbles: codes must be in [-128, {NIBBLE_QMAX}] to split into two signed "
                          f"nibbles, got [{int(c.min())}, {int(c.max())}]")
    lo = ((c + 8) & 15) - 8
    return (c - lo) >> NIBBLE_BITS, lo


def combine_nibbles(y_hi: np.ndarray, y_lo: np.ndarray) -> np.ndarray:
    """The two passes' results combined: ``16 * y_hi + y_lo`` (what the SFU's MUL + ADD compute)."""
    return (np.asarray(y_hi, dtype=np.int64) << NIBBLE_BITS) + np.asarray(y_lo, dtype=np.int64)


def kv_code_max(config: AcceleratorConfig, code_bits: int = 8) -> int:
    """The largest K/V code magnitude ``config`` takes: :data:`NIBBLE_QMAX` when its weight port
    splits the cache into two nibble planes (:func:`operand_passes`), else the codes' own
    ``2**(code_bits-1) - 1`` (127 for int8).  What a block's ``kv_qmax`` must be for that config."""
    return NIBBLE_QMAX if operand_passes(config, code_bits) == 2 else (1 << (code_bits - 1)) - 1
