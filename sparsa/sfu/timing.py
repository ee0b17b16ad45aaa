"""Cycle counts of the SFU gateware, for the cycle model (which never imports the HDL).

Every count here is exact and data-independent; the HDL tests check the gateware against it.
"""

from __future__ import annotations

from sparsa.sfu.scalar import ScalarOp

__all__ = ["SCALAR_CYCLES"]

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
