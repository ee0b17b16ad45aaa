"""Lookup tables of the special-function unit, and the interpolation that reads them.

Two kinds of table, both fx (Q.16) entries made on the host from float64 and rounded half-even:

* **Activation gates** ``g(x)`` for ``y = x * g(x)``: the logistic sigmoid (SiLU) and the normal
  CDF ``Phi`` (GELU, erf form).  ``ACT_SEGMENTS`` = 512 segments of ``1/16`` over
  ``[-ACT_RANGE, ACT_RANGE)`` = ``[-16, 16)``, so ``ACT_SEGMENTS + 1`` entries; below the range
  the gate is 0, at or above it 1.0 (both within ``2**-16`` of the true gate there: sigmoid's
  tail at ``-16`` is ``1.1e-7``).
* **Exponential** ``2**-f`` for ``f`` in ``[0, 1]``: ``EXP2_SEGMENTS`` = 64 segments, 65 entries.

:func:`interpolate` is the one reader: entry ``i`` plus the next entry's difference times the
fraction, rounded half-even.  Tables are pinned by a checksum test, so a platform whose libm
rounds differently cannot change a bit unnoticed.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from sparsa.sfu.fixed import FX_FRAC, rne_shift, to_fx

__all__ = [
    "ACT_RANGE",
    "ACT_SEGMENTS",
    "ACT_FRAC_BITS",
    "EXP2_SEGMENTS",
    "EXP2_FRAC_BITS",
    "LOG2E_FX",
    "GATES",
    "gate_table",
    "exp2_table",
    "interpolate",
]

#: The activation tables cover ``[-ACT_RANGE, ACT_RANGE)``.
ACT_RANGE = 16
#: Segments of the activation tables (a power of two).
ACT_SEGMENTS = 512
#: fx fraction bits below a segment index (``1/16`` per segment -> 12 bits of the 16).
ACT_FRAC_BITS = FX_FRAC - int(math.log2(ACT_SEGMENTS // (2 * ACT_RANGE)))
#: Segments of the ``2**-f`` table.
EXP2_SEGMENTS = 64
#: fx fraction bits below an exp2 segment index.
EXP2_FRAC_BITS = FX_FRAC - int(math.log2(EXP2_SEGMENTS))
#: ``log2(e)`` in fx, rounded half-even (94548).
LOG2E_FX = int(to_fx(math.log2(math.e)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


#: Gate functions by activation name.
GATES = {"silu": _sigmoid, "gelu": _phi}


@functools.cache
def gate_table(kind: str) -> np.ndarray:
    """``ACT_SEGMENTS + 1`` fx entries of ``g(-ACT_RANGE + i / 16)`` (read-only int64)."""
    xs = -ACT_RANGE + np.arange(ACT_SEGMENTS + 1, dtype=np.float64) * (2 * ACT_RANGE / ACT_SEGMENTS)
    table = to_fx(GATES[kind](xs))
    table.setflags(write=False)
    return table


@functools.cache
def exp2_table() -> np.ndarray:
    """``EXP2_SEGMENTS + 1`` fx entries of ``2**(-i / 64)`` (``FX_ONE`` down to ``FX_ONE / 2``)."""
    table = to_fx(np.exp2(-np.arange(EXP2_SEGMENTS + 1, dtype=np.float64) / EXP2_SEGMENTS))
    table.setflags(write=False)
    return table


def interpolate(table: np.ndarray, index: np.ndarray, frac: np.ndarray, frac_bits: int) -> np.ndarray:
    """``T[i] + rne_shift((T[i+1] - T[i]) * frac, frac_bits)``: linear interpolation, exact.

    Parameters
    ----------
    table : int64 array
        ``n + 1`` entries.
    index : int64 array
        Segment indices in ``[0, n)``.
    frac : int64 array
        Position inside the segment, ``0 <= frac < 2**frac_bits``.
    frac_bits : int
        Width of ``frac``.
    """
    lo = table[index]
    return lo + rne_shift((table[index + 1] - lo) * frac, frac_bits)

