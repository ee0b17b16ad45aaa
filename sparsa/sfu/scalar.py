"""The SFU's scalar unit: the once-per-row computations, their operand domains and reference.

The scalar unit computes one value per row (or per tensor) between the vector passes of an
SFU operation: the reciprocal of a softmax row sum, the inverse square root of a norm's mean
square, a LayerNorm mean, and the exponent and mantissas of an on-chip quantizer's scales.
Each operation is a function of :mod:`sparsa.sfu.fixed`; :func:`scalar_reference` checks the
operands against the domain the gateware (:mod:`sparsa.hdl.sfu.scalar`) is built for and
calls it:

=========  ==============================================  =============================================
op         result                                          domain
=========  ==============================================  =============================================
``RECIP``  ``(m, e) = normalized_reciprocal(d)``           ``1 <= d < 2**40``
``RSQRT``  ``(m, e) = normalized_rsqrt(d, n)``             ``0 <= d < 2**48``, ``1 <= n <= 2**16``
           (``(0, 0)`` for ``d = 0``)
``DIV``    ``q = rne_div(d, n)``                           ``-2**48 <= d < 2**48``, ``1 <= n <= 2**16``
``EXPO``   ``e = scale_exponent(d, qmax, mantissa_bits)``  ``0 <= d <= 2**31``, ``1 <= qmax <= 127``,
                                                           ``2 <= mantissa_bits <= 24``
``QMANT``  ``m = scale_mantissa(d, e, qmax)``              ``0 <= d <= 2**31``, ``1 <= qmax <= 127``,
                                                           ``-14 <= e <= 46`` (what ``EXPO`` returns),
                                                           ``m < 2**24``
=========  ==============================================  =============================================

The fields a result does not define are 0 (``RECIP`` gives ``q = 0``, ``EXPO`` gives
``m = q = 0``, ...), as the gateware's outputs are.  ``RSQRT`` of ``d = 0`` is ``(0, 0)``, as
:func:`sparsa.sfu.ops.rmsnorm` and the lane microcode take it (a zero row with ``eps = 0``).  Cycle counts are in
:data:`sparsa.sfu.timing.SCALAR_CYCLES`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np

from sparsa.errors import FormatError
from sparsa.sfu.fixed import normalized_reciprocal, normalized_rsqrt, rne_div, scale_exponent, scale_mantissa

__all__ = [
    "ScalarOp",
    "ScalarResult",
    "RECIP_D_RANGE",
    "RSQRT_D_RANGE",
    "ROW_N_RANGE",
    "DIV_NUM_RANGE",
    "SCALE_TOP_RANGE",
    "QMAX_RANGE",
    "MANTISSA_BITS_RANGE",
    "SCALE_E_RANGE",
    "QMANT_M_LIMIT",
    "scalar_reference",
]


class ScalarOp(IntEnum):
    """An operation of the scalar unit (the gateware's ``op`` code)."""

    RECIP = 0   #: ``normalized_reciprocal(d)``
    RSQRT = 1   #: ``normalized_rsqrt(d, n)``
    DIV = 2     #: ``rne_div(d, n)`` (``d`` signed)
    EXPO = 3    #: ``scale_exponent(d, qmax, mantissa_bits)``
    QMANT = 4   #: ``scale_mantissa(d, e, qmax)``


# Domains: inclusive (lo, hi) ranges.
#: ``d`` of ``RECIP`` (a softmax row sum).
RECIP_D_RANGE = (1, (1 << 40) - 1)
#: ``d`` of ``RSQRT`` (a norm's sum of squares plus its eps term; 0 gives ``(0, 0)``).
RSQRT_D_RANGE = (0, (1 << 48) - 1)
#: ``n`` of ``RSQRT`` and ``DIV`` (a row length).
ROW_N_RANGE = (1, 1 << 16)
#: The numerator ``d`` of ``DIV``: a signed 49-bit integer (a LayerNorm row sum).
DIV_NUM_RANGE = (-(1 << 48), (1 << 48) - 1)
#: ``d`` of ``EXPO`` and ``QMANT``: the largest magnitude ``max |x|`` of the fx codes of a tensor /
#: scale unit (``2**31`` is ``|FX_MIN|``).
SCALE_TOP_RANGE = (0, 1 << 31)
#: ``qmax`` of ``EXPO`` and ``QMANT`` (7 for int4 codes, 127 for int8).
QMAX_RANGE = (1, 127)
#: ``mantissa_bits`` of ``EXPO``.
MANTISSA_BITS_RANGE = (2, 24)
#: ``e`` of ``QMANT``: every exponent ``EXPO`` returns on its domain.  The extremes are
#: ``scale_exponent(2**31, 1, 2) = -14`` and ``scale_exponent(1, 127, 24) = 46``
#: (``e - 16 = floor(log2(qmax * (2**mantissa_bits - 1) / top))``).
SCALE_E_RANGE = (-14, 46)
#: ``QMANT`` results are below this (the gateware's ``m`` is 24 bits wide).
QMANT_M_LIMIT = 1 << 24


class ScalarResult(NamedTuple):
    """What the scalar unit returns; fields an operation does not define are 0."""

    m: int
    """Mantissa: ``RECIP``/``RSQRT`` in ``[2**15, 2**16)``, ``QMANT`` below ``2**24``."""
    e: int
    """Exponent: ``RECIP``/``RSQRT``/``EXPO``."""
    q: int
    """Quotient: ``DIV`` (signed)."""


def _check(op: ScalarOp, name: str, value: int, bounds: tuple[int, int]) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise FormatError(f"scalar {op.name}: {name}={value} is outside [{lo}, {hi}]")


def scalar_reference(op: ScalarOp | int, *, d: int = 0, n: int = 1, e: int = 0, qmax: int = 127,
                     mantissa_bits: int = 16) -> ScalarResult:
    """What the scalar unit computes for ``op``, bit for bit.

    Parameters
    ----------
    op : ScalarOp
        The operation.
    d : int
        The wide operand: ``RECIP``/``RSQRT`` divisor, ``DIV`` numerator (signed), ``EXPO``
        ``top``, ``QMANT`` ``amax``.
    n : int
        ``RSQRT`` numerator / ``DIV`` divisor (a row length).
    e : int
        ``QMANT`` exponent.
    qmax : int
        ``EXPO``/``QMANT`` largest code.
    mantissa_bits : int
        ``EXPO`` mantissa width.

    Returns
    -------
    ScalarResult
        ``(m, e, q)``, the fields ``op`` does not define 0.

    Raises
    ------
    FormatError
        An operand ``op`` reads is outside its domain (one line: operand, value, range).
    """
    for name, value in (("d", d), ("n", n), ("e", e), ("qmax", qmax), ("mantissa_bits", mantissa_bits)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise FormatError(f"scalar operand {name} must be an integer, not {value!r}")
    try:
        op = ScalarOp(op)
    except ValueError:
        raise FormatError(f"scalar op must be one of {[o.name for o in ScalarOp]}, not {op!r}") from None
    d, n, e, qmax, mantissa_bits = int(d), int(n), int(e), int(qmax), int(mantissa_bits)
    if op is ScalarOp.RECIP:
        _check(op, "d", d, RECIP_D_RANGE)
        m, ex = normalized_reciprocal(d)
        return ScalarResult(m, ex, 0)
    if op is ScalarOp.RSQRT:
        _check(op, "d", d, RSQRT_D_RANGE)
        _check(op, "n", n, ROW_N_RANGE)
        m, ex = normalized_rsqrt(d, n) if d > 0 else (0, 0)
        return ScalarResult(m, ex, 0)
    if op is ScalarOp.DIV:
        _check(op, "d", d, DIV_NUM_RANGE)
        _check(op, "n", n, ROW_N_RANGE)
        return ScalarResult(0, 0, int(rne_div(np.int64(d), np.int64(n))))
    _check(op, "d", d, SCALE_TOP_RANGE)
    _check(op, "qmax", qmax, QMAX_RANGE)
    if op is ScalarOp.EXPO:
        _check(op, "mantissa_bits", mantissa_bits, MANTISSA_BITS_RANGE)
        return ScalarResult(0, scale_exponent(d, qmax, mantissa_bits), 0)
    _check(op, "e", e, SCALE_E_RANGE)
    m = scale_mantissa(d, e, qmax)
    if m >= QMANT_M_LIMIT:
        raise FormatError(f"scalar QMANT: m={m} (d={d}, e={e}, qmax={qmax}) is outside [0, {QMANT_M_LIMIT - 1}]")
    return ScalarResult(m, 0, 0)
