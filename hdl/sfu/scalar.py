"""The SFU's scalar unit: one bit-serial restoring divider for the once-per-row computations.

:class:`SfuScalar` computes :func:`sparsa.sfu.scalar.scalar_reference` bit for bit, one
operation at a time, in the data-independent cycle counts of
:data:`sparsa.sfu.timing.SCALAR_CYCLES`.  Area matters more than speed (it runs once per row),
so everything is one radix-2 restoring divider: a dividend register ``X`` shifts out MSB first
into the remainder ``R``, a 50-bit subtractor compares ``2R + bit`` with the divisor ``Dv``,
and each quotient bit is routed by the operation::

    RECIP   Q = floor(2**55 / d)        56 bits   the 16 bits from Q's leading one are m;
                                                  e = 55 - (bits after them)
    RSQRT   Q = floor(n * 2**78 / d)    95 bits   the window from Q's leading one that ends at an
                                                  even position and is >= 2**30 (it is < 2**32):
                                                  floor(Q / 4**j); m = its 16-step digit-by-digit
                                                  square root, e = 39 - j; d = 0 gives (0, 0)
    DIV     Q = floor(|num| / n)        49 bits   |num| from one pass through the finish's incrementer;
                                                  a 50th step compares 2R with n: round to nearest,
                                                  ties to even (2R == n, an equality of registers);
                                                  q = +-(Q + up)
    EXPO    Q = floor(P * 2**31 / top)  62 bits   P = qmax * (2**mantissa_bits - 1) (Horner: 24
                                                  steps P = 2P + qmax while mantissa_bits last);
                                                  e = (position of Q's leading one) - 15, found
                                                  the step after the leading one (Q >= 3)
    QMANT   Q = floor(amax * 2**30/qmax) 62 bits  bits at positions >= s = 46 - e shift into m,
                                                  the others and the remainder set a sticky bit:
                                                  m = floor(Q / 2**s) + sticky

Why these are the fixed.py functions: ``floor(floor(x) / k) = floor(x / k)`` for integer
``k`` (so a window of a long quotient is the quotient at a smaller exponent, and RECIP's
``_normalize`` loop picks exactly that window); for RSQRT ``floor(sqrt(floor(y)))`` is
``floor(sqrt(y))`` and the window ``floor(n * 4**e / d)`` in ``[2**30, 2**32)`` has its root in
``[2**15, 2**16)``; 39 = the largest ``e`` on the domain (``d = 2**48 - 1``, ``n = 1``), 7 the
smallest.  EXPO: ``ceil(top * 2**(e-16) / qmax) <= 2**mb - 1`` iff ``top * 2**(e-16) <= P``,
so the largest ``e`` is ``16 + floor(log2(P / top))``, and ``floor(log2(floor(P 2**31 / top)))``
is ``floor(log2(P 2**31 / top))``.  QMANT: ``ceil(x / 2**s) = floor(x / 2**s) + [x not a
multiple]``.  DIV: round half to even is odd-symmetric: ``rne(num / n) = sign * rne(|num| / n)``.

Per cycle the longest path is the divider's 50-bit subtractor into its registers (or the
49-bit increment of the finish, or EXPO's 31-bit Horner adder); nothing but a register's
input multiplexer follows a carry chain: the window conditions, the ``DIV`` tie and every
enable depend on registers only.  There is no leading-one detector or barrel shifter: the
leading one is found as the quotient bits arrive (a flag freezes the window and latches the
position).

Ports: see :class:`SfuScalar`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from sparsa.sfu.scalar import ScalarOp
from sparsa.sfu.timing import SCALAR_CYCLES

__all__ = ["SfuScalar", "D_BITS", "M_BITS", "E_BITS", "Q_BITS"]

#: Width of the wide operand port ``d`` (a signed 49-bit ``num`` for DIV).
D_BITS = 49
#: Width of the mantissa output ``m`` (QMANT results are below ``2**24``).
M_BITS = 24
#: Width of the signed exponent output ``e`` and input ``e_in``.
E_BITS = 8
#: Width of the signed quotient output ``q``.
Q_BITS = 49

# Quotient bits (division steps) of each operation; the dividend is left-aligned in X.
_STEPS = {ScalarOp.RECIP: 56, ScalarOp.RSQRT: 95, ScalarOp.DIV: 49, ScalarOp.EXPO: 62, ScalarOp.QMANT: 62}
_HORNER_STEPS = 24          # EXPO: mantissa_bits <= 24
_SQRT_STEPS = 16
_RECIP_K = 55               # RECIP dividend 2**55
_RSQRT_E = 39               # RSQRT dividend n * 4**39
_EXPO_BIAS = 14             # EXPO e = (position after the leading one) - 14
_QMANT_TOP = 46             # QMANT s = 46 - e


class _Phase(enum.Enum, shape=3):
    IDLE = 0
    NEGATE = 1
    HORNER = 2
    DIVIDE = 3
    ROUND = 4
    SQRT = 5
    FINISH = 6


class SfuScalar(wiring.Component):
    """The scalar unit: ``RECIP``, ``RSQRT``, ``DIV``, ``EXPO`` and ``QMANT`` (:class:`ScalarOp`).

    A ``start`` in an idle cycle (``busy`` low; the ``done`` cycle is idle) captures ``op`` and
    the operands; ``done`` is high exactly ``SCALAR_CYCLES[op]`` cycles later, with the result
    on ``m``/``e``/``q`` (the fields the operation does not define are 0).  The outputs hold
    their value until the next ``done``.  A ``start`` while ``busy`` is **ignored** (the running
    operation is not disturbed).  Operands outside the domain of
    :func:`~sparsa.sfu.scalar.scalar_reference` give unspecified results, in the same cycles.

    Attributes
    ----------
    start : In(1)
        Begin an operation (one-cycle strobe; ignored while ``busy``).
    op : In(ScalarOp)
        The operation.
    d : In(49)
        The wide operand: ``RECIP``/``RSQRT`` the unsigned divisor ``d`` (bits 0..47, bit 48
        zero), ``DIV`` the signed numerator ``num`` (49-bit two's complement), ``EXPO`` ``top``
        and ``QMANT`` ``amax`` (bits 0..31: up to ``2**31``).
    n : In(17)
        ``RSQRT`` numerator, ``DIV`` divisor (``1 .. 2**16``).
    e_in : In(signed(8))
        ``QMANT`` exponent.
    qmax : In(8)
        ``EXPO``/``QMANT`` largest code (``1 .. 127``).
    mantissa_bits : In(5)
        ``EXPO`` mantissa width (``2 .. 24``).
    busy : Out(1)
        An operation is running (from the cycle after ``start`` up to the cycle before ``done``).
    done : Out(1)
        One-cycle strobe: the results are valid.
    m : Out(24)
        ``RECIP``/``RSQRT``/``QMANT`` mantissa.
    e : Out(signed(8))
        ``RECIP``/``RSQRT``/``EXPO`` exponent.
    q : Out(signed(49))
        ``DIV`` quotient.
    """

    def __init__(self) -> None:
        super().__init__({
            "start": In(1),
            "op": In(ScalarOp),
            "d": In(D_BITS),
            "n": In(17),
            "e_in": In(signed(E_BITS)),
            "qmax": In(8),
            "mantissa_bits": In(5),
            "busy": Out(1),
            "done": Out(1),
            "m": Out(M_BITS),
            "e": Out(signed(E_BITS)),
            "q": Out(signed(Q_BITS)),
        })

    @staticmethod
    def cycles(op: ScalarOp) -> int:
        """``SCALAR_CYCLES[op]``: cycles from ``start`` to ``done``."""
        return SCALAR_CYCLES[ScalarOp(op)]

    def elaborate(self, platform) -> Module:
        m = Module()
        op = Signal(ScalarOp, name="op_r")
        phase = Signal(_Phase)
        dv = Signal(48)             # divisor
        rem = Signal(48)            # remainder, < dv
        x = Signal(49)              # dividend (MSB first); RSQRT: the root, shifted in at bit 0
        qr = Signal(49)             # quotient / its window
        srem = Signal(17)           # square-root remainder (<= 2 * root)
        cnt = Signal(7)             # steps left in the phase - 1 = DIVIDE: position of the quotient bit
        aux = Signal(7)             # RECIP/RSQRT: position of the window's last bit; EXPO: Horner steps
                                    # left, then the position after the leading one; QMANT: s = 46 - e
        qmax = Signal(7)
        neg = Signal()              # DIV: num < 0
        full = Signal()             # RECIP/RSQRT/EXPO: the window is complete
        sticky = Signal()           # QMANT: discarded quotient bits; DIV: the carry-in of |num| / +-(Q + up)

        m.d.comb += self.busy.eq(phase != _Phase.IDLE)
        m.d.sync += self.done.eq(0)

        # The divider: 2R + bit against the divisor (DIV's ROUND step shifts in 0: x is empty by then).
        shifted = Cat(x[48], rem)                           # 49 bits
        trial = Signal(50)
        m.d.comb += trial.eq(shifted - dv)
        ge = ~trial[49]
        tie = Cat(Const(0, 1), rem) == dv                   # DIV: 2R == n, from registers

        # The square-root digit: 4 * rem + the next two radicand bits against 4 * root + 1.
        r2 = Cat(qr[30:32], srem)                           # 19 bits
        strial = Signal(20)
        m.d.comb += strial.eq(r2 - Cat(Const(1, 2), x[:16]))
        sge = ~strial[19]

        # The finish's increment: DIV +-(Q + up), QMANT Q + sticky; also DIV's |num| = (num ^ neg) + neg.
        cin = sticky | ((op == ScalarOp.QMANT) & rem[:8].any())
        inc = Signal(49)
        m.d.comb += inc.eq((qr ^ neg.replicate(49)) + cin)

        with m.Switch(phase):
            with m.Case(_Phase.IDLE):
                with m.If(self.start):                      # capture: the divisor, the left-aligned dividend
                    m.d.sync += [op.eq(self.op), rem.eq(0), qr.eq(0), srem.eq(0), full.eq(0), sticky.eq(0),
                                 neg.eq(0), aux.eq(0), qmax.eq(self.qmax[:7]), phase.eq(_Phase.DIVIDE)]
                    with m.Switch(self.op):
                        with m.Case(ScalarOp.RECIP):
                            m.d.sync += [dv.eq(self.d[:48]), x.eq(1 << 48), cnt.eq(_STEPS[ScalarOp.RECIP] - 1)]
                        with m.Case(ScalarOp.RSQRT):
                            m.d.sync += [dv.eq(self.d[:48]), x.eq(self.n << 32),
                                         cnt.eq(_STEPS[ScalarOp.RSQRT] - 1)]
                        with m.Case(ScalarOp.DIV):
                            sign = self.d[48]
                            m.d.sync += [dv.eq(self.n), qr.eq(self.d), neg.eq(sign), sticky.eq(sign),
                                         phase.eq(_Phase.NEGATE), cnt.eq(_STEPS[ScalarOp.DIV] - 1)]
                        with m.Case(ScalarOp.EXPO):
                            m.d.sync += [dv.eq(self.d[:48]), x.eq(0), aux.eq(self.mantissa_bits),
                                         phase.eq(_Phase.HORNER), cnt.eq(_HORNER_STEPS - 1)]
                        with m.Case(ScalarOp.QMANT):
                            m.d.sync += [dv.eq(self.qmax), x.eq(self.d[:32] << 17),
                                         aux.eq(_QMANT_TOP - self.e_in), cnt.eq(_STEPS[ScalarOp.QMANT] - 1)]

            with m.Case(_Phase.NEGATE):                     # DIV: |num| into the dividend
                m.d.sync += [x.eq(inc), qr.eq(0), sticky.eq(0), phase.eq(_Phase.DIVIDE)]

            with m.Case(_Phase.HORNER):                     # EXPO: P = qmax * (2**mb - 1) in x[18:49]
                with m.If(aux != 0):
                    m.d.sync += [x[18:].eq((x[18:] << 1) + qmax), aux.eq(aux - 1)]
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    m.d.sync += [phase.eq(_Phase.DIVIDE), cnt.eq(_STEPS[ScalarOp.EXPO] - 1)]

            with m.Case(_Phase.DIVIDE):
                m.d.sync += [x.eq(x << 1), rem.eq(Mux(ge, trial[:48], shifted[:48])), cnt.eq(cnt - 1)]
                with m.Switch(op):
                    with m.Case(ScalarOp.DIV):
                        m.d.sync += qr.eq(Cat(ge, qr[:48]))
                    with m.Case(ScalarOp.QMANT):
                        with m.If(cnt >= aux):
                            m.d.sync += qr.eq(Cat(ge, qr[:48]))
                        with m.Else():
                            m.d.sync += sticky.eq(sticky | ge)
                    with m.Default():                       # RECIP, RSQRT, EXPO: window from the leading one
                        complete = Signal()
                        with m.Switch(op):
                            with m.Case(ScalarOp.RECIP):
                                m.d.comb += complete.eq(qr[14])                 # new window >= 2**15
                            with m.Case(ScalarOp.RSQRT):                        # even position, >= 2**30
                                m.d.comb += complete.eq(~cnt[0] & (qr[30] | qr[29]))
                            with m.Default():                                   # EXPO: the leading one
                                m.d.comb += complete.eq(qr[0])                  # was the previous bit
                        with m.If(~full):
                            m.d.sync += qr.eq(Cat(ge, qr[:48]))
                            with m.If(complete):
                                m.d.sync += [full.eq(1), aux.eq(cnt)]
                with m.If(cnt == 0):
                    with m.Switch(op):
                        with m.Case(ScalarOp.DIV):
                            m.d.sync += phase.eq(_Phase.ROUND)
                        with m.Case(ScalarOp.RSQRT):
                            m.d.sync += [phase.eq(_Phase.SQRT), cnt.eq(_SQRT_STEPS - 1)]
                        with m.Default():
                            m.d.sync += phase.eq(_Phase.FINISH)

            with m.Case(_Phase.ROUND):                      # DIV: the carry-in of +-(Q + up)
                up = (ge & ~tie) | (tie & qr[0])
                m.d.sync += [sticky.eq(up ^ neg), phase.eq(_Phase.FINISH)]

            with m.Case(_Phase.SQRT):
                m.d.sync += [srem.eq(Mux(sge, strial[:17], r2[:17])), x.eq(Cat(sge, x[:48])),
                             qr.eq(qr << 2), cnt.eq(cnt - 1)]
                with m.If(cnt == 0):
                    m.d.sync += phase.eq(_Phase.FINISH)

            with m.Case(_Phase.FINISH):
                m.d.sync += [phase.eq(_Phase.IDLE), self.done.eq(1),
                             self.m.eq(0), self.e.eq(0), self.q.eq(0)]
                with m.Switch(op):
                    with m.Case(ScalarOp.RECIP):
                        m.d.sync += [self.m.eq(qr[:16]), self.e.eq(_RECIP_K - aux)]
                    with m.Case(ScalarOp.RSQRT):                # d = 0 (a zero row, eps = 0): (0, 0)
                        with m.If(dv != 0):
                            m.d.sync += [self.m.eq(x[:16]), self.e.eq(_RSQRT_E - aux[1:])]
                    with m.Case(ScalarOp.DIV):
                        m.d.sync += self.q.eq(inc)
                    with m.Case(ScalarOp.EXPO):
                        with m.If(dv != 0):                         # top = 0: e = 0
                            m.d.sync += self.e.eq(aux - _EXPO_BIAS)
                    with m.Case(ScalarOp.QMANT):
                        m.d.sync += self.m.eq(inc[:M_BITS])
        return m
