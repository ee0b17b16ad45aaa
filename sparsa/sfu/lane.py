"""The SFU's vector lanes and their microcode: the contract between the gateware and the model.

The SFU reads one *beat* (``L`` fx elements, ``L`` = ``sfu.lanes``) per cycle from its vector
memory through a fixed-latency pipeline of ``L`` identical lanes.  Every beat carries one
:class:`LaneOp`, operands ``a`` and ``b`` (two read ports), the row's scalars ``x`` (fx), ``m``
(a mantissa, 24 bits unsigned), ``sh`` (a signed shift) and ``q`` (a code limit), and a keep bit
per lane.  A lane that is not kept outputs 0 and takes no part in the beat's reduction.  Each
beat also yields one :class:`Reduce` value over its kept lanes, which the sequencer folds over
the beats of a row.

:func:`lane_op` and :func:`reduce_beat` define a beat exactly; the row operations of
:mod:`sparsa.sfu.ops` are sequences of passes of lane ops and scalar steps, tabled in
:mod:`sparsa.sfu.schedule` and run beat by beat by :func:`sparsa.sim.sfu.run_microcode`, which
tests/sim/test_sfu_interpreter.py proves equal to :mod:`sparsa.sfu.ops`.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from sparsa.errors import FormatError
from sparsa.sfu.fixed import FX_BITS, FX_FRAC, rne_div, rne_shift, saturate_fx, shift_saturate_fx
from sparsa.sfu.ops import ROW_MANT_BITS, activation, exp_nonpositive, mul

__all__ = ["LaneOp", "Reduce", "MANT_FIELD_BITS", "ROW_MANT_MASK", "SUMSQ_LIMIT", "lane_op", "reduce_beat"]

#: The SUMSQ squarer (one 18 x 18 multiplier) is exact for ``-2**17 <= a >> sh < 2**17``.
SUMSQ_LIMIT = 1 << 17

#: Width of the ``m`` field (an activation-scale mantissa may be up to 24 bits).
MANT_FIELD_BITS = 24

#: REQUANT_ROW's mantissas are the low ``ROW_MANT_BITS`` bits of ``m`` and ``b``.
ROW_MANT_MASK = (1 << ROW_MANT_BITS) - 1


class LaneOp(IntEnum):
    """What every lane computes from ``a``, ``b`` and the row scalars."""

    PASS = 0       #: ``y = a`` (a reduction pass; nothing written)
    ADD = 1        #: ``sat(a + b)``
    MUL = 2        #: ``sat(rne_shift(a * b, 16))``
    REQUANT = 3    #: ``sat(rne_shift(a * b, sh))``; ``b`` an unsigned 16-bit weight-scale mantissa
    SILU = 4       #: ``activation(a, 'silu')``
    GELU = 5       #: ``activation(a, 'gelu')``
    SUB = 6        #: ``sat(a - x)``
    EXP_SUB = 7    #: ``exp_nonpositive(sat(a - x))``
    SCALE = 8      #: ``sat(rne_shift(a * m, sh))``
    SCALE_MUL = 9  #: ``mul(sat(rne_shift(a * m, sh)), b)``
    ROPE = 10      #: lanes ``2i, 2i+1`` rotate ``(a[2i], a[2i+1])`` by ``b[2i]`` = cos, ``b[2i+1]`` = sin
    QDIV = 11      #: ``clip(rne_div(a << max(sh, 0), m << max(-sh, 0)), -q, q)``, 0 if ``m`` is 0
    #: ``sat(rne_shift(a * (m16 * b16), sh))`` with ``m16``, ``b16`` the low 16 bits of ``m`` and
    #: ``b`` (unsigned): a per-row mantissa times a per-channel one, exact in 32 bits, one rounding
    REQUANT_ROW = 12


class Reduce(IntEnum):
    """The value a beat folds into its row's accumulator (kept lanes only)."""

    NONE = 0
    MAX = 1        #: ``max a`` (fold: max)
    AMAX = 2       #: ``max |a|`` (fold: max)
    SUM_Y = 3      #: ``sum y`` (fold: add)
    SUMSQ = 4      #: ``sum (a >> sh)**2`` with ``sh >= 0``, ``-2**17 <= a >> sh < 2**17`` (fold: add)
    SUM = 5        #: ``sum a`` (fold: add)
    AMAX_Y = 6     #: ``max |y|`` (fold: max)


def lane_op(op: LaneOp, a: np.ndarray, b: np.ndarray, keep: np.ndarray, *, x: int = 0, m: int = 0,
            sh: int = 0, q: int = 0) -> np.ndarray:
    """The lanes' outputs for beats ``a, b [..., L]`` (int64 fx) and keep bits ``[..., L]``.

    ``x``, ``m``, ``sh``, ``q`` are the row scalars (broadcast over lanes; arrays of shape
    ``[..., 1]`` give one per beat).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if not (0 <= np.min(m) and np.max(m) < 1 << MANT_FIELD_BITS):
        raise FormatError(f"lane m must be in [0, 2**{MANT_FIELD_BITS}), got {m!r}")
    if op == LaneOp.PASS:
        y = a
    elif op == LaneOp.ADD:
        y = saturate_fx(a + b)
    elif op == LaneOp.MUL:
        y = mul(a, b)
    elif op == LaneOp.REQUANT:
        y = shift_saturate_fx(a * b, sh)
    elif op in (LaneOp.SILU, LaneOp.GELU):
        y = activation(a, op.name.lower())
    elif op == LaneOp.SUB:
        y = saturate_fx(a - x)
    elif op == LaneOp.EXP_SUB:
        y = exp_nonpositive(saturate_fx(a - x))
    elif op == LaneOp.REQUANT_ROW:
        mb = (np.asarray(m, dtype=np.int64) & ROW_MANT_MASK) * (b & ROW_MANT_MASK)
        y = shift_saturate_fx(a * mb, sh)
    elif op == LaneOp.SCALE:
        y = shift_saturate_fx(a * m, sh)
    elif op == LaneOp.SCALE_MUL:
        y = mul(shift_saturate_fx(a * m, sh), b)
    elif op == LaneOp.ROPE:
        if a.shape[-1] % 2:
            raise FormatError(f"ROPE needs an even lane count, not {a.shape[-1]}")
        x0, x1, c, s = a[..., 0::2], a[..., 1::2], b[..., 0::2], b[..., 1::2]
        y = np.empty_like(a)
        y[..., 0::2] = saturate_fx(rne_shift(x0 * c - x1 * s, FX_FRAC))
        y[..., 1::2] = saturate_fx(rne_shift(x0 * s + x1 * c, FX_FRAC))
    elif op == LaneOp.QDIV:
        y = _qdiv(a, np.asarray(m, dtype=np.int64), np.asarray(sh, dtype=np.int64), np.asarray(q, dtype=np.int64))
    else:  # pragma: no cover - IntEnum is closed
        raise FormatError(f"unknown lane op {op!r}")
    return np.where(keep, y, 0)


def _qdiv(a: np.ndarray, m: np.ndarray, sh: np.ndarray, q: np.ndarray) -> np.ndarray:
    """QDIV of the true value ``a * 2**sh / m`` for every ``sh`` in ``[-64, 63]``, without int64 wrap.

    ``|a| <= 2**31``, ``m < 2**24``, ``q < 2**8``.  For ``sh >= 32`` a nonzero ``a`` gives
    ``|a| 2**sh / m >= 2**32 / 2**24 > q``: saturated.  For ``sh <= -32`` the quotient is below
    ``2**31 / 2**32 = 1/2``: 0.  In between numerator (``< 2**62``) and denominator (``< 2**55``)
    fit int64 exactly.
    """
    mm = np.broadcast_to(m, a.shape)
    safe = np.where(mm > 0, mm, 1)
    s = np.clip(sh, -(FX_BITS - 1), FX_BITS - 1)
    num = np.left_shift(a, np.maximum(s, 0))
    den = np.left_shift(safe, np.maximum(-s, 0))
    y = np.clip(rne_div(num, den), -q, q)
    y = np.where(sh >= FX_BITS, np.sign(a) * q, np.where(sh <= -FX_BITS, 0, y))
    return np.where(mm > 0, y, 0)


def reduce_beat(kind: Reduce, a: np.ndarray, y: np.ndarray, keep: np.ndarray, sh: int = 0) -> np.ndarray:
    """One beat's reduction over its kept lanes (``[...]``); the identity of a fully dropped
    beat is 0 for sums and ``-2**31`` for MAX (0 for AMAX)."""
    a = np.asarray(a, dtype=np.int64)
    if kind == Reduce.MAX:
        return np.where(keep, a, -(1 << 31)).max(axis=-1)
    if kind == Reduce.AMAX:
        return np.where(keep, np.abs(a), 0).max(axis=-1)
    if kind == Reduce.AMAX_Y:
        return np.where(keep, np.abs(y), 0).max(axis=-1)
    if kind == Reduce.SUM_Y:
        return np.where(keep, y, 0).sum(axis=-1)
    if kind == Reduce.SUM:
        return np.where(keep, a, 0).sum(axis=-1)
    if kind == Reduce.SUMSQ:
        v = np.where(keep, a >> sh, 0)
        if v.size and (v.max() >= SUMSQ_LIMIT or v.min() < -SUMSQ_LIMIT):
            raise FormatError(f"SUMSQ: a >> {sh} reaches [{int(v.min())}, {int(v.max())}], outside the squarer's "
                              f"exact domain -2**17 <= a >> sh < 2**17 (the norms' pre-shift keeps |a >> sh| <= 2**15)")
        return (v * v).sum(axis=-1)
    return np.zeros(a.shape[:-1], dtype=np.int64)
