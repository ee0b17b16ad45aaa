"""Cycle counts of the SFU gateware, for the cycle model (which never imports the HDL).

Every count here is exact and data-independent; the HDL tests check the gateware against it.

**Vector lanes.** The lanes (``hdl/sfu/lanes.py``, :class:`sparsa.hdl.sfu.lanes.SfuLanes`) are a fixed pipeline
without backpressure: a beat presented with ``i_valid`` in cycle ``t`` has its outputs ``y``
and its reduction ``r`` on the output ports, with ``o_valid``, in cycle ``t + LANE_LATENCY``,
whatever its :class:`~sparsa.sfu.lane.LaneOp` and :class:`~sparsa.sfu.lane.Reduce` and the
lane count ``L`` (2..32).  Every op runs through the same stages; an op that finishes early
waits in delays (registers, or small RAMs for the long ones).  The register stages, ``R0``
being the input registers:

=========  =========================================================================
R0         input registers (``a``, ``b``, ``keep``, row scalars, op, reduce); REQUANT_ROW's
           ``m16``, ``b16`` (the M0 multiplier's operand registers)
R1         ``sat(a - x)`` (EXP_SUB), the gate table index of ``a``, the op decoded; M0's
           product ``m16 * b16`` (one MULT18X18)
R2         operands of the first multiplier (``a`` or ``min(a - x, 0)``; ``b``, ``m``,
           ``m16 * b16``, ``-LOG2E`` or ``+-1``) and its shift (16, ``sh`` or ``-(sh + 1)`` for QDIV);
           SUMSQ's ``a >> sh``
R3 - R5    first product: four 17-bit partial products (one MULT18X18 each), two adder levels
R6 - R8    its round-half-even shift: coarse shift, fine shift, rounding and range flags
R9         ``sat(rne_shift(a * b, s))``: MUL, REQUANT, SCALE, the SCALE_MUL operand, EXP's
           ``u``; the table ROMs are addressed (sync read)
R9 - R19   QDIV: the quotient's saturation check and 9 restoring division steps, rounding
R10 - R14  table entry and slope (the ROM's read latch, then a register), interpolation
           product (one MULT18X18), ``T + rne(D f)``
R15 - R16  EXP_SUB: ``rne_shift(2**-f, n)``
R15 - R19  second multiplier (SiLU/GELU ``a * g``, SCALE_MUL ``t * b``, RoPE's second
           product plus the first), then ``sat(rne_shift(., 16))``
R20        QDIV's clip to ``+-q``; ADD / SUB / PASS from the delayed operands
R21        ``y``: the op's result, 0 in dropped lanes
R22 - R23  reduction operands: ``|y|``, ``|a|``, ``(a >> sh)**2`` (one MULT18X18)
R24        each lane's reduction term (the identity in dropped lanes)
R25 - R29  five tree levels (add or max), enough for 32 lanes; fewer lanes pass through
=========  =========================================================================

so the outputs are the registers of stage R29, ``LANE_LATENCY`` = 30 cycles after the inputs.
The cycle model imports this constant; ``tests/hdl/sfu/test_lanes.py`` measures it.

**Scalar unit.** See :data:`SCALAR_CYCLES`.
"""

from __future__ import annotations

from sparsa.sfu.scalar import ScalarOp

__all__ = ["LANE_LATENCY", "LANE_TREE_LEVELS", "SCALAR_CYCLES"]

#: Cycles from the scalar unit's ``start`` (cycle 0) to its ``done`` strobe (the results are
#: on ``m``/``e``/``q`` in the ``done`` cycle; a new ``start`` is accepted in that cycle, so
#: back-to-back operations take exactly these many cycles each).  The unit is one bit-serial
#: restoring divider (a 50-bit subtractor) whose dividend shifts out of a register MSB first:
#:
#: * ``RECIP``: 1 capture + 56 quotient bits of ``floor(2**55 / d)`` (the 16-bit window from
#:   its leading one is ``m``) + 1 finish = **58**;
#: * ``RSQRT``: 1 capture + 95 quotient bits of ``floor(n * 2**78 / d)`` (the 31/32-bit window
#:   from its leading one at an even shift) + 16 square-root digits + 1 finish = **113**;
#: * ``DIV``: 1 capture + 1 negation (``|num|``) + 49 quotient bits of ``|num| / n`` + 1 rounding
#:   (remainder against ``n/2``) + 1 finish (increment and sign) = **53**;
#: * ``EXPO``: 1 capture + 24 Horner steps forming ``P = qmax * (2**mantissa_bits - 1)`` + 62
#:   quotient bits of ``floor(P * 2**31 / top)`` (its leading one is ``e + 15``) + 1 finish = **88**;
#: * ``QMANT``: 1 capture + 62 quotient bits of ``amax * 2**30 / qmax`` (the bits from position
#:   ``46 - e`` up are the floor, the rest and the remainder round it up) + 1 finish = **64**.
SCALAR_CYCLES: dict[ScalarOp, int] = {
    ScalarOp.RECIP: 1 + 56 + 1,
    ScalarOp.RSQRT: 1 + 95 + 16 + 1,
    ScalarOp.DIV: 1 + 1 + 49 + 1 + 1,
    ScalarOp.EXPO: 1 + 24 + 62 + 1,
    ScalarOp.QMANT: 1 + 62 + 1,
}

#: Levels of the reduction tree (``ceil(log2(32))``: the widest lane count).
LANE_TREE_LEVELS = 5
#: Cycles from a beat on the lanes' inputs to its ``y`` and ``r`` on their outputs.
LANE_LATENCY = 30
