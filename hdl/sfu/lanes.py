"""The SFU's vector lanes: ``L`` identical fixed-latency lanes and the beat's reduction tree.

Each cycle the lanes accept one beat (``i_valid``) - an op, a reduction kind, ``L`` fx
operands ``a`` and ``b``, a keep bit per lane and the row scalars ``x``, ``m``, ``sh``, ``q`` -
and :data:`~sparsa.sfu.timing.LANE_LATENCY` cycles later present ``y`` (``L`` fx results) and
``r`` (the beat's reduction over its kept lanes) with ``o_valid``.  Outputs equal
:func:`sparsa.sfu.lane.lane_op` and :func:`sparsa.sfu.lane.reduce_beat` bit for bit; the
stage list is in :mod:`sparsa.sfu.timing`.  No backpressure: every register advances every
cycle, and every beat carries its own control down the pipeline, so beats of different ops
may follow each other back to back.

Each lane has two 32 x 32 multipliers, each four 17-bit partial products (one MULT18X18 each)
between registers and then two adder levels (on ECP5, :func:`uses_ecp5_dsps`, those registers
are the ``MULT18X18D``'s own input and output registers, as in :mod:`sparsa.hdl.pe`):

* **M0** (R0 - R1): REQUANT_ROW's ``m16 * b16``, the low 16 bits of the row mantissa ``m`` and
  of the channel mantissa ``b`` (unsigned, exact in 32 bits; one MULT18X18 whose input
  registers are R0);
* **M1** (R2 - R5): ``a * b`` (MUL, REQUANT), ``a * m`` (SCALE, SCALE_MUL), ``a * (m16 * b16)``
  (REQUANT_ROW, a 32 x 33 product below ``2**63``),
  ``min(a - x, 0) * -LOG2E`` (EXP_SUB), RoPE's first product, ``a * +-1`` (QDIV: ``|a|``),
  followed by a round-half-even shift by ``s`` in ``[-64, 63]`` and saturation (R6 - R9);
  QDIV takes ``|a| * 2**(sh + 1)`` (the shifted value and whether bits were shifted out)
  from there into a restoring divider by ``m`` with 9 quotient bits and a saturation check;
* **M2** (R15 - R19): ``a * g`` (SiLU, GELU), ``t * b`` (SCALE_MUL), RoPE's second product
  added to the first, then ``sat(rne_shift(., 16))``.

The gate and ``2**-f`` tables are ROMs built at elaboration from :mod:`sparsa.sfu.tables`
(entry ``i`` holds ``T[i]`` and the slope ``T[i+1] - T[i]``), one pair of read ports per two
lanes (Yosys puts the gate ROMs into block RAM, the 64-word exp ROM into LUTs); one more
MULT18X18 per lane interpolates, one squares ``a >> sh`` for SUMSQ, exact while
``-2**17 <= a >> sh < 2**17`` (the norms' pre-shift keeps ``|a >> sh| <= 2**15``).  RoPE's sum
of products wraps modulo ``2**64`` like the NumPy contract's int64 arithmetic.

Delays of four or more stages are small RAM rings (distributed RAM, ``ram_delays``): most of
what the lanes carry is operands and results waiting for the slowest op.

Size: one pipeline whose stages share the per-beat control; split by stage group into helpers,
which a reader follows top to bottom against the stage table of :mod:`sparsa.sfu.timing`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from sparsa.sfu.fixed import FX_BITS, FX_FRAC, FX_MAX, FX_MIN, FX_ONE
from sparsa.sfu.lane import MANT_FIELD_BITS, LaneOp, Reduce
from sparsa.sfu.ops import ROW_MANT_BITS
from sparsa.sfu.tables import (ACT_FRAC_BITS, ACT_RANGE, ACT_SEGMENTS, EXP2_FRAC_BITS, EXP2_SEGMENTS, LOG2E_FX,
                               exp2_table, gate_table)
from sparsa.sfu.timing import LANE_LATENCY, LANE_TREE_LEVELS

__all__ = ["SfuLanes", "SH_BITS", "Q_BITS", "R_BITS", "lanes_signature_widths", "uses_ecp5_dsps"]

#: Width of the signed shift ``sh`` (-64..63).
SH_BITS = 7
#: Width of the code limit ``q``.
Q_BITS = 8
#: Width of the reduction output ``r``.
R_BITS = 64
#: Quotient bits of QDIV's divider: ``floor(2 |n| / d)`` below ``2**QDIV_BITS``, else saturated.
QDIV_BITS = 9
#: Chunk width of the partial products (unsigned low chunk, signed high chunk, each <= 18 bits).
_CHUNK = 17

# Register stages (see sparsa.sfu.timing); R0 holds the inputs.
_M1_OPERANDS = 2
_M1_PRODUCT = _M1_OPERANDS + 3          # 5
_M1_ROUNDED = _M1_PRODUCT + 4           # 9: sat(rne_shift(P1, s)); the ROMs are addressed
_QDIV_FIRST = _M1_PRODUCT + 4           # 9: the saturation check, then one quotient bit per stage
_QDIV_ROUNDED = _QDIV_FIRST + QDIV_BITS + 1   # 19
_ROM_DATA = _M1_ROUNDED + 1             # 10
_INTERP = _ROM_DATA + 4                 # 14: T + rne(D * f)
_EXP_DONE = _INTERP + 2                 # 16
_M2_OPERANDS = _INTERP + 1              # 15
_M2_PRODUCT = _M2_OPERANDS + 3          # 18
_M2_ROUNDED = _M2_PRODUCT + 1           # 19
_RESULTS = _QDIV_ROUNDED + 1            # 20: every op's result
_Y = _RESULTS + 1                       # 21
_TERMS = _Y + 3                         # 24: each lane's reduction term
_OUT = _TERMS + LANE_TREE_LEVELS        # 29
assert _OUT + 1 == LANE_LATENCY, "sparsa.sfu.timing.LANE_LATENCY does not match the stages"
assert max(_EXP_DONE, _M2_ROUNDED) <= _RESULTS, "an op finishes after the results stage"


def lanes_signature_widths(lanes: int) -> dict[str, int]:
    """Port widths of :class:`SfuLanes` with ``lanes`` lanes (for exports and documentation)."""
    _check_lanes(lanes)
    return {"i_valid": 1, "op": 4, "reduce": 3, "a": FX_BITS * lanes, "b": FX_BITS * lanes, "keep": lanes,
            "x": FX_BITS, "m": MANT_FIELD_BITS, "sh": SH_BITS, "q": Q_BITS,
            "o_valid": 1, "y": FX_BITS * lanes, "r": R_BITS}


def _check_lanes(lanes: object) -> int:
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes % 2 or not 2 <= lanes <= 32:
        raise ValueError(f"lanes must be an even int in [2, 32], not {lanes!r}")
    return lanes


class _Pipe:
    """Named values of one pipeline (a lane, or the per-beat control) by register stage.

    ``put(name, value, k)`` registers ``value`` (computed from stage ``k - 1`` values) as the
    stage-``k`` value of ``name``; ``get(name, k)`` returns it at any later stage.  The delays
    are built by :meth:`finish`, once every stage a value is read at is known: between two
    stages read, a chain of registers, or with a ``ring`` pointer and a gap of at least
    :data:`_RAM_DELAY_MIN` stages, a small RAM (:func:`_ram_delay`: distributed RAM on an FPGA
    instead of ``gap`` flip-flops per bit).
    """

    def __init__(self, m: Module, prefix: str, ring: "Signal | None" = None, registers: tuple = ()) -> None:
        self.m = m
        self.prefix = prefix
        self._ring = ring
        self._registers = set(registers)        # names whose delays must reset (valid bits)
        self._stages: dict[str, dict[int, Value]] = {}

    def bind(self, name: str, sig: Value, stage: int) -> None:
        if name in self._stages:
            raise ValueError(f"pipeline value {self.prefix}{name} defined twice")
        self._stages[name] = {stage: sig}

    def put(self, name: str, value, stage: int, shape=None) -> Signal:
        value = Value.cast(value)
        sig = Signal(value.shape() if shape is None else shape, name=f"{self.prefix}{name}_r{stage}")
        self.m.d.sync += sig.eq(value)
        self.bind(name, sig, stage)
        return sig

    def get(self, name: str, stage: int) -> Value:
        stages = self._stages[name]
        first = min(stages)
        if stage < first:
            raise ValueError(f"{self.prefix}{name} is defined at stage {first}, not {stage}")
        if stage not in stages:
            stages[stage] = Signal(stages[first].shape(), name=f"{self.prefix}{name}_r{stage}")
        return stages[stage]

    def finish(self) -> None:
        """Drive every stage read from the one before it (registers or a RAM delay)."""
        for name, stages in self._stages.items():
            order = sorted(stages)
            for prev, stage in zip(order, order[1:]):
                self._delay(name, stages[prev], stages[stage], prev, stage)

    def _delay(self, name: str, src: Value, dst: Signal, first: int, last: int) -> None:
        gap = last - first
        if self._ring is not None and gap >= _RAM_DELAY_MIN and name not in self._registers:
            _ram_delay(self.m, f"{self.prefix}{name}_d{first}_{last}", src, dst, gap, self._ring)
            return
        prev = src
        for stage in range(first + 1, last):
            sig = Signal(src.shape(), name=f"{self.prefix}{name}_r{stage}")
            self.m.d.sync += sig.eq(prev)
            prev = sig
        self.m.d.sync += dst.eq(prev)


#: Shortest delay a lane builds as a RAM (a ring of ``_RING_DEPTH`` words) instead of registers.
_RAM_DELAY_MIN = 4
#: Depth of a RAM delay; longer delays chain several.
_RING_DEPTH = 16


def _ram_delay(m: Module, name: str, src: Value, dst: Signal, gap: int, ring: Signal) -> None:
    """``dst`` = ``src`` ``gap`` cycles later: a RAM written at ``ring`` (a free-running
    counter) and read asynchronously ``gap - 1`` words behind it, then a register.

    Yosys maps it to distributed RAM (ECP5 ``TRELLIS_DPR16X4``: 4 bits x 16 words each).  The
    contents need no reset: what the delay shows before it has been written ``gap`` times
    belongs to no valid beat.
    """
    shape = Value.cast(src).shape()
    while gap > 0:
        step = min(gap, _RING_DEPTH)
        out = dst if step == gap else Signal(shape, name=f"{name}_{gap}")
        if step < _RAM_DELAY_MIN:
            prev = src
            for i in range(step):
                sig = out if i == step - 1 else Signal(shape, name=f"{name}_{gap}_{i}")
                m.d.sync += sig.eq(prev)
                prev = sig
        else:
            mem = memory.Memory(shape=shape, depth=_RING_DEPTH, init=[])
            m.submodules[f"{name}_{gap}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="comb")
            m.d.comb += [wr.addr.eq(ring), wr.data.eq(src), wr.en.eq(1), rd.addr.eq(ring - (step - 1))]
            m.d.sync += out.eq(rd.data)
        src, gap = out, gap - step


def _sat(value, bits: int = FX_BITS) -> Value:
    """Clip a signed value to ``bits`` bits: it fits when its bits from ``bits - 1`` up are all
    equal (a LUT reduction beside the adder that made it, not a second carry chain)."""
    value = Value.cast(value)
    if len(value) <= bits:
        return value
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(_all_equal(value[bits - 1:]), value[:bits].as_signed(), Mux(value[-1], lo, hi))


def _low_nonzero(value: Value, n: Value) -> Value:
    """Whether any of the ``n`` lowest bits of ``value`` is set."""
    w = len(value)
    mask = ~(Const((1 << w) - 1, w) << n)[:w]
    return (value.as_unsigned() & mask).any()


def _select(choices, shape) -> Value:
    """The value whose condition holds, 0 if none: an AND-OR of one-hot ``(condition, value)``
    pairs (one LUT level per four values instead of a chain of multiplexers)."""
    out = Const(0, shape)
    for hit, value in choices:
        out = out | Mux(hit, value, 0)        # Amaranth extends each by its own signedness
    return out


def _all_equal(bits: Value) -> Value:
    return bits.all() | ~bits.any()


def _signed_bits(values) -> int:
    """Width of the signed shape that holds every integer of ``values``."""
    return max(Shape.cast(range(min(values), max(values) + 1)).width + 1, 2)


def _rom_words(entries, t_bits: int, d_bits: int) -> list[int]:
    """ROM words ``T[i] | (T[i+1] - T[i]) << t_bits`` of a table of ``n + 1`` entries."""
    words = []
    for i in range(len(entries) - 1):
        t, d = int(entries[i]), int(entries[i + 1]) - int(entries[i])
        words.append(t | ((d & ((1 << d_bits) - 1)) << t_bits))
    return words


class _Tables:
    """The interpolation ROMs' contents and field widths, from :mod:`sparsa.sfu.tables`."""

    def __init__(self) -> None:
        gates = [gate_table("silu"), gate_table("gelu")]
        expt = exp2_table()
        assert len(gates[0]) == ACT_SEGMENTS + 1 and len(expt) == EXP2_SEGMENTS + 1
        values = [int(v) for t in (*gates, expt) for v in t]
        diffs = [int(d) for t in (*gates, expt) for d in (t[1:] - t[:-1])]
        if min(values) < 0:
            raise AssertionError("SFU tables must be non-negative")  # pragma: no cover - they are
        self.t_bits = max(values).bit_length()
        self.d_bits = _signed_bits(diffs)
        self.gate = _rom_words(gates[0], self.t_bits, self.d_bits) + _rom_words(gates[1], self.t_bits, self.d_bits)
        self.exp = _rom_words(expt, self.t_bits, self.d_bits)

    @property
    def width(self) -> int:
        return self.t_bits + self.d_bits

    def fields(self, word: Value) -> tuple[Value, Value]:
        return word[:self.t_bits], word[self.t_bits:].as_signed()


def uses_ecp5_dsps(platform) -> bool:
    """Whether the lanes instantiate ``MULT18X18D`` with their A, B and output registers for
    ``platform`` (a Lattice ECP5 platform: a board build).

    Yosys' ECP5 flow does not pack fabric registers into the DSP, and the routing into and out
    of the DSP column then dominates a stage (the PE measured 76 MHz that way, docs/fpga.md);
    every other platform - simulation (``None``), Verilator, Xilinx - uses ``*`` between the
    same registers.
    """
    if platform is None:
        return False
    try:
        from amaranth.vendor import LatticePlatform
    except ImportError:     # pragma: no cover - Amaranth 0.5 always has it
        return False
    return isinstance(platform, LatticePlatform) and getattr(platform, "family", None) == "ecp5"


def _mult18x18d(m: Module, name: str, *, a, b, p) -> None:
    """One ``MULT18X18D``, signed 18 x 18 (``SIGNEDA = SIGNEDB = 1``), with its A, B and output
    registers on ``CLK0``: ``p`` (36 bits) shows ``a_reg * b_reg`` with ``a_reg <= a``,
    ``b_reg <= b`` - two clock edges from the pins.  (The instantiation of
    :func:`sparsa.hdl.pe._mult18x18d`, signed; tests replace this function by a model.)
    """
    ports = {f"i_A{i}": a[i] for i in range(18)}
    ports.update({f"i_B{i}": b[i] for i in range(18)})
    ports.update({f"i_C{i}": 0 for i in range(18)})
    ports.update({f"o_P{i}": p[i] for i in range(36)})
    params = {}
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        params[f"p_REG_{reg}_CLK"] = "CLK0"
        params[f"p_REG_{reg}_CE"] = "CE0"
        params[f"p_REG_{reg}_RST"] = "RST0"
    params.update(p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE", p_GSR="DISABLED", p_RESETMODE="SYNC")
    m.submodules[name] = Instance(
        "MULT18X18D", **params,
        i_CLK0=ClockSignal("sync"), i_CE0=1, i_RST0=0,
        i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0, **ports)


def _product(m: Module, lane: _Pipe, name: str, a, b, stage: int, width: int, dsp: bool) -> None:
    """``lane[name]`` at ``stage + 1`` = ``a * b`` (``signed(width)``) of two operands of at most 18
    bits (signed or unsigned), computed from stage ``stage - 1`` values and registered at ``stage``.

    With ``dsp`` the operand and product registers are one ``MULT18X18D``'s input and output
    registers (:func:`_mult18x18d`; operands extended to 18 bits, unsigned ones of at most 17);
    otherwise fabric registers around ``*``.
    """
    if not dsp:
        ar = lane.put(f"{name}_a", a, stage)
        br = lane.put(f"{name}_b", b, stage)
        lane.put(name, ar * br, stage + 1, signed(width))
        return
    a18, b18 = Signal(18, name=f"{lane.prefix}{name}_a18"), Signal(18, name=f"{lane.prefix}{name}_b18")
    p36 = Signal(36, name=f"{lane.prefix}{name}_p36")
    prod = Signal(signed(width), name=f"{lane.prefix}{name}_r{stage + 1}")
    lane.m.d.comb += [a18.eq(a), b18.eq(b), prod.eq(p36[:width])]
    _mult18x18d(lane.m, f"{lane.prefix}{name}_dsp", a=a18, b=b18, p=p36)
    lane.bind(name, prod, stage + 1)


def _multiply(lane: _Pipe, name: str, x, y, stage: int, dsp: bool, extra: "str | None" = None,
              shapes: tuple = (signed(FX_BITS), signed(FX_BITS))) -> None:
    """``lane[name]`` at ``stage + 3`` = ``x * y (+ lane[extra])`` modulo ``2**64``; ``x`` and ``y``
    (at most 35 bits, signed) are computed from stage ``stage - 1`` values and registered at ``stage``.

    Stage ``+1``: four partial products of 17-bit chunks (low chunks unsigned, high signed),
    each one MULT18X18 between registers (:func:`_product`); ``+2``: ``hh << 34 | ll`` (a
    concatenation) plus ``extra``, and ``lh + hl``; ``+3``: the sum.
    """
    if not dsp:         # one operand register each, shared by the partial products
        x, y = lane.put(f"{name}_x", x, stage, shapes[0]), lane.put(f"{name}_y", y, stage, shapes[1])
    else:
        xs, ys = Signal(shapes[0], name=f"{lane.prefix}{name}_x"), Signal(shapes[1], name=f"{lane.prefix}{name}_y")
        lane.m.d.comb += [xs.eq(x), ys.eq(y)]
        x, y = xs, ys
    chunks = {"l": (x[:_CHUNK], y[:_CHUNK]), "h": (x[_CHUNK:].as_signed(), y[_CHUNK:].as_signed())}
    widths = {"ll": 2 * _CHUNK, "lh": len(x) + 1, "hl": len(y) + 1, "hh": len(x) + len(y) - 2 * _CHUNK}
    parts = {}
    for i in "lh":
        for j in "lh":
            pname = f"{name}_{i}{j}"
            if dsp:
                _product(lane.m, lane, pname, chunks[i][0], chunks[j][1], stage, widths[i + j], True)
            else:
                lane.put(pname, chunks[i][0] * chunks[j][1], stage + 1)
            parts[i + j] = lane.get(pname, stage + 1)
    outer = Cat(parts["ll"].as_unsigned()[:2 * _CHUNK], parts["hh"]).as_signed()
    if extra is not None:
        outer = outer + lane.get(extra, stage + 1)
    c = lane.put(f"{name}_outer", outer, stage + 2, signed(64))
    mid = lane.put(f"{name}_mid", parts["lh"] + parts["hl"], stage + 2)
    lane.put(name, c + (mid << _CHUNK), stage + 3, signed(64))


def _control(ctrl: _Pipe, port) -> None:
    """The per-beat control: input registers, the decoded op and M1's shift."""
    for name in ("i_valid", "op", "reduce", "keep", "x", "m", "sh", "q"):
        ctrl.put(name, getattr(port, name), 0)
    op = ctrl.get("op", 0)
    for o in LaneOp:
        ctrl.put(f"is_{o.name}", op == o, 1)
    red = ctrl.get("reduce", 0)
    for k in Reduce:
        ctrl.put(f"red_{k.name}", red == k, 1)
    ctrl.put("fold_max", (red == Reduce.MAX) | (red == Reduce.AMAX) | (red == Reduce.AMAX_Y), 1)
    is_ = {o: ctrl.get(f"is_{o.name}", 1) for o in LaneOp}
    sh1 = ctrl.get("sh", 1)
    s1 = Mux(is_[LaneOp.QDIV], -(sh1 + 1), Mux(is_[LaneOp.REQUANT] | is_[LaneOp.REQUANT_ROW] | is_[LaneOp.SCALE]
                                               | is_[LaneOp.SCALE_MUL], sh1, FX_FRAC))
    ctrl.put("s1", s1, _M1_OPERANDS, signed(8))
    s1 = ctrl.get("s1", _M1_OPERANDS)
    # W2 = P * 2**33 shifted right by r = s + 32 gives floor(P * 2**-s) above its half bit.
    r = s1 + 32
    ctrl.put("big", s1 < -32, _M1_OPERANDS + 1)
    ctrl.put("r_hi", r[3:7] << 3, _M1_OPERANDS + 1, unsigned(7))
    ctrl.put("r_lo", r[:3], _M1_OPERANDS + 1, unsigned(3))
    ctrl.put("m_zero", ctrl.get("m", 0) == 0, 1)


def _front(ctrl: _Pipe, lane: _Pipe, partner: _Pipe, odd: bool, dsp: bool) -> None:
    """R1 - R2: ``sat(a - x)``, the gate index, and M1's operands."""
    a0, x0 = lane.get("a", 0), ctrl.get("x", 0)
    lane.put("dsub", _sat(a0 - x0), 1, signed(FX_BITS))
    pos = a0 + ACT_RANGE * FX_ONE
    index_bits = (ACT_SEGMENTS - 1).bit_length()
    lane.put("gidx", pos[ACT_FRAC_BITS:ACT_FRAC_BITS + index_bits], 1)
    lane.put("gfrac", pos[:ACT_FRAC_BITS], 1)
    lane.put("glo", a0 < -ACT_RANGE * FX_ONE, 1)
    lane.put("ghi", a0 >= ACT_RANGE * FX_ONE, 1)
    lane.put("aneg", a0 < 0, 1)
    is_ = {o: ctrl.get(f"is_{o.name}", 1) for o in LaneOp}
    a1, b1, m1 = lane.get("a", 1), lane.get("b", 1), ctrl.get("m", 1)
    dsub = lane.get("dsub", 1)
    a_even = partner.get("a", 1) if odd else a1
    x1 = Mux(is_[LaneOp.EXP_SUB], Mux(dsub < 0, dsub, 0), Mux(is_[LaneOp.ROPE], a_even, a1))
    y1 = Mux(is_[LaneOp.EXP_SUB], -LOG2E_FX,
             Mux(is_[LaneOp.SCALE] | is_[LaneOp.SCALE_MUL], m1,
                 Mux(is_[LaneOp.QDIV], Mux(lane.get("aneg", 1), -1, 1),
                     Mux(is_[LaneOp.REQUANT_ROW], lane.get("mb", 1), b1))))
    _multiply(lane, "p1", x1, y1, _M1_OPERANDS, dsp, shapes=(signed(FX_BITS), signed(FX_BITS + 1)))
    sh1 = ctrl.get("sh", 1)
    shift = Mux(sh1[-1], 0, sh1.as_unsigned()[:SH_BITS - 1])     # SUMSQ: sh >= 0
    lane.put("sqv", (a1 >> shift)[:_CHUNK + 1].as_signed(), 2)


def _round_m1(ctrl: _Pipe, lane: _Pipe) -> None:
    """R6 - R9: ``sat(rne_shift(P1, s))``, plus the unrounded window QDIV divides."""
    k = _M1_PRODUCT
    p = lane.get("p1", k)
    big, r_hi = ctrl.get("big", k), ctrl.get("r_hi", k)
    w2 = Cat(Const(0, 33), p).as_signed()
    lane.put("h1", Mux(big, 0, w2 >> r_hi), k + 1, w2.shape())
    lane.put("st1", _low_nonzero(w2, r_hi) & ~big, k + 1)
    lane.put("nzbig", big & p.any(), k + 1)
    lane.put("psign", p[-1], k + 1)
    h1 = lane.get("h1", k + 1)
    r_lo = ctrl.get("r_lo", k + 1)
    lane.put("h2", h1 >> r_lo, k + 2)
    lane.put("st2", lane.get("st1", k + 1) | _low_nonzero(h1, r_lo), k + 2)
    h2, st2 = lane.get("h2", k + 2), lane.get("st2", k + 2)
    half, window = h2[0], h2[1:35]
    lane.put("f34", window.as_signed(), k + 3)
    lane.put("up1", half & (st2 | h2[1]), k + 3)
    lane.put("inexact", half | st2, k + 3)
    lane.put("fits", _all_equal(h2[34:]) & ~lane.get("nzbig", k + 2), k + 3)
    f34, up, fits = lane.get("f34", k + 3), lane.get("up1", k + 3), lane.get("fits", k + 3)
    v = f34 + up
    lane.put("t", Mux(~fits, Mux(lane.get("psign", k + 3), FX_MIN, FX_MAX), _sat(v)), _M1_ROUNDED,
             signed(FX_BITS))


def _qdiv(ctrl: _Pipe, lane: _Pipe) -> None:
    """R9 - R20: ``clip(rne(|a| 2**sh / m), 0, q)`` with the sign of ``a``; 0 if ``m`` is 0.

    With ``N = floor(|a| 2**(sh+1))`` (M1's window) and ``d = m``: ``floor(2 |n| / d) =
    floor(N / d)``; nine restoring steps give it below ``2**9`` (else the code saturates), and
    rounding half-even uses its lowest bit, the remainder and the bits shifted out of ``N``.
    """
    k = _QDIV_FIRST
    n = lane.get("f34", k - 1).as_unsigned()
    m = ctrl.get("m", k - 1)
    lane.put("qsat", ~lane.get("fits", k - 1) | (n >= (m << QDIV_BITS)), k)
    lane.put("rem9", n, k)
    for bit in reversed(range(QDIV_BITS)):
        stage = k + QDIV_BITS - bit
        rem = lane.get(f"rem{bit + 1}", stage - 1)
        diff = rem - (ctrl.get("m", stage - 1) << bit)
        lane.put(f"qb{bit}", ~diff[-1], stage)
        lane.put(f"rem{bit}", Mux(diff[-1], rem, diff), stage, unsigned(len(n)))
    last = k + QDIV_BITS
    q2 = Cat(*(lane.get(f"qb{bit}", last) for bit in range(QDIV_BITS)))
    sticky = lane.get("rem0", last).any() | lane.get("inexact", last)
    up = q2[0] & (sticky | q2[1])
    quotient, q = q2[1:], ctrl.get("q", last)
    lane.put("qr", quotient + up, _QDIV_ROUNDED)
    # qr > q, decided beside the increment rather than after it
    lane.put("qover", (quotient > q) | ((quotient == q) & up), _QDIV_ROUNDED)
    qr, q = lane.get("qr", _QDIV_ROUNDED), ctrl.get("q", _QDIV_ROUNDED)
    mag = Mux(lane.get("qsat", _QDIV_ROUNDED) | lane.get("qover", _QDIV_ROUNDED), q, qr)
    code = Mux(lane.get("aneg", _QDIV_ROUNDED), -mag, mag)
    lane.put("yq", Mux(ctrl.get("m_zero", _QDIV_ROUNDED), 0, code), _RESULTS, signed(FX_BITS))


def _interpolate(m: Module, ctrl: _Pipe, lane: _Pipe, tables: _Tables, ports: tuple, dsp: bool) -> None:
    """R9 - R14: read ``T, D`` at the gate index or ``f >> 10``, ``T + rne_shift(D * frac, 12)``.

    The ROM words are registered once more after the ROMs' read latches, so no logic and no
    route to a DSP follows a block RAM's clock-to-out (docs/fpga.md: that path limited the
    8x8 SoC until the RAMs' output registers were used).  The exp fraction (10 bits) is
    scaled by 4 so both tables round at ``ACT_FRAC_BITS``: ``rne_shift(4 D f, 12) ==
    rne_shift(D f, 10)``.
    """
    gate_port, exp_port = ports
    k = _M1_ROUNDED
    t = lane.get("t", k)
    index_bits = (ACT_SEGMENTS - 1).bit_length()
    gate_kind = ctrl.get(f"is_{LaneOp.GELU.name}", k)
    m.d.comb += [gate_port.addr.eq(Cat(lane.get("gidx", k)[:index_bits], gate_kind)),
                 exp_port.addr.eq(t[EXP2_FRAC_BITS:FX_FRAC])]
    lane.bind("gword", gate_port.data, _ROM_DATA)
    lane.bind("eword", exp_port.data, _ROM_DATA)
    k = _ROM_DATA + 1                   # the words' registers
    is_exp = ctrl.get(f"is_{LaneOp.EXP_SUB.name}", k)
    tg, dg = tables.fields(lane.get("gword", k))
    te, de = tables.fields(lane.get("eword", k))
    scale = ACT_FRAC_BITS - EXP2_FRAC_BITS
    efrac = lane.get("t", k)[:EXP2_FRAC_BITS] << scale
    lane.put("it", Mux(is_exp, te, tg), k + 1, unsigned(tables.t_bits))
    slope = Signal(signed(tables.d_bits), name=f"{lane.prefix}slope")
    frac = Signal(ACT_FRAC_BITS, name=f"{lane.prefix}frac")
    m.d.comb += [slope.eq(Mux(is_exp, de, dg)), frac.eq(Mux(is_exp, efrac, lane.get("gfrac", k)))]
    _product(m, lane, "iprod", slope, frac, k + 1, tables.d_bits + ACT_FRAC_BITS, dsp)
    p = lane.get("iprod", _INTERP - 1)
    fb = ACT_FRAC_BITS
    up = p[fb - 1] & (p[:fb - 1].any() | p[fb])
    # T + floor(p / 2**12) + up as one adder: the carry-in enters through an extra low bit
    g = (Cat(up, lane.get("it", _INTERP - 1)) + Cat(up, (p >> fb)).as_signed()) >> 1
    is_gate = ctrl.get(f"is_{LaneOp.SILU.name}", _INTERP - 1) | ctrl.get(f"is_{LaneOp.GELU.name}", _INTERP - 1)
    lo, hi = lane.get("glo", _INTERP - 1), lane.get("ghi", _INTERP - 1)
    lane.put("g", Mux(is_gate & lo, 0, Mux(is_gate & hi, FX_ONE, g)), _INTERP, signed(tables.t_bits + 2))


def _exp(lane: _Pipe) -> None:
    """R15 - R16: ``e**x = rne_shift(2**-f, n)``, 0 for ``n > 17`` (decided at R10, so the
    shift's barrel follows no comparator)."""
    n = lane.get("t", _M1_ROUNDED)[FX_FRAC:]
    zero = n > FX_FRAC + 1
    lane.put("ezero", zero, _M1_ROUNDED + 1)
    lane.put("eshift", Mux(zero, 0, n), _M1_ROUNDED + 1, unsigned((FX_FRAC + 1).bit_length()))
    k = _INTERP
    v = lane.get("g", k)[:FX_FRAC + 1]
    se = lane.get("eshift", k)
    hv = Cat(Const(0, 1), v)
    hh = hv >> se
    lane.put("eh", hh[1:], k + 1)
    lane.put("ehalf", hh[0], k + 1)
    lane.put("est", _low_nonzero(hv, se), k + 1)
    f, half, st = lane.get("eh", k + 1), lane.get("ehalf", k + 1), lane.get("est", k + 1)
    lane.put("ye", Mux(lane.get("ezero", k + 1), 0, f + (half & (st | f[0]))), _EXP_DONE, unsigned(FX_FRAC + 2))


def _second_product(ctrl: _Pipe, lane: _Pipe, partner: _Pipe, odd: bool, dsp: bool) -> None:
    """R15 - R19: M2 = ``a * g``, ``t * b`` or RoPE (``P1 + a[2i+1] * (-b[2i+1] | b[2i])``), rounded by 16."""
    k = _M2_OPERANDS - 1
    is_ = {o: ctrl.get(f"is_{o.name}", k) for o in LaneOp}
    a, b, pa, pb = lane.get("a", k), lane.get("b", k), partner.get("a", k), partner.get("b", k)
    a_odd = a if odd else pa
    pb_early = partner.get("b", k - 1)    # -b[2i+1] registered a stage early: no adder before the DSP
    rope_y = lane.put("rope_y", pb_early if odd else -pb_early, k, signed(FX_BITS + 1))
    x2 = Mux(is_[LaneOp.SCALE_MUL], lane.get("t", k), Mux(is_[LaneOp.ROPE], a_odd, a))
    y2 = Mux(is_[LaneOp.SILU] | is_[LaneOp.GELU], lane.get("g", k), Mux(is_[LaneOp.ROPE], rope_y, b))
    lane.put("p1x", Mux(ctrl.get(f"is_{LaneOp.ROPE.name}", _M1_PRODUCT), lane.get("p1", _M1_PRODUCT), 0),
             _M1_PRODUCT + 1, signed(64))
    _multiply(lane, "p2", x2, y2, _M2_OPERANDS, dsp, extra="p1x", shapes=(signed(FX_BITS), signed(FX_BITS + 1)))
    p = lane.get("p2", _M2_PRODUCT)
    half, st = p[FX_FRAC - 1], p[:FX_FRAC - 1].any()
    f = p[FX_FRAC:].as_signed()
    up = half & (st | f[0])
    fits = _all_equal(f[FX_BITS - 1:])
    v = f[:FX_BITS].as_signed() + up
    lane.put("yp", Mux(~fits, Mux(f[-1], FX_MIN, FX_MAX), _sat(v)), _M2_ROUNDED,
             signed(FX_BITS))


def _result(ctrl: _Pipe, lane: _Pipe, index: int) -> None:
    """R20 - R21: ADD / SUB / PASS from the delayed operands, then the op's result or 0."""
    k = _RESULTS - 1
    is_ = {o: ctrl.get(f"is_{o.name}", k) for o in LaneOp}
    a, b, x = lane.get("a", k), lane.get("b", k), ctrl.get("x", k)
    lane.put("y0", Mux(is_[LaneOp.ADD], _sat(a + b), Mux(is_[LaneOp.SUB], _sat(a - x), a)), _RESULTS,
             signed(FX_BITS))
    k = _RESULTS
    is_ = {o: ctrl.get(f"is_{o.name}", k) for o in LaneOp}
    sources = {
        "y0": (LaneOp.PASS, LaneOp.ADD, LaneOp.SUB),
        "t": (LaneOp.MUL, LaneOp.REQUANT, LaneOp.REQUANT_ROW, LaneOp.SCALE),
        "ye": (LaneOp.EXP_SUB,),
        "yp": (LaneOp.SILU, LaneOp.GELU, LaneOp.SCALE_MUL, LaneOp.ROPE),
        "yq": (LaneOp.QDIV,),
    }
    keep = ctrl.get("keep", k)[index]
    choices = [(keep & Cat(*(is_[o] for o in ops)).any(), lane.get(name, k)) for name, ops in sources.items()]
    lane.put("y", _select(choices, signed(FX_BITS)), _Y, signed(FX_BITS))


def _term(ctrl: _Pipe, lane: _Pipe, index: int, dsp: bool) -> None:
    """R22 - R24: the lane's reduction term (the fold's identity in a dropped lane)."""
    k = _Y
    y, a = lane.get("y", k), lane.get("a", k)
    lane.put("absy", Mux(y < 0, -y, y), k + 1)
    lane.put("absa", Mux(a < 0, -a, a), k + 1)
    sqv = lane.get("sqv", k)            # a >> sh, shifted at R2
    _product(lane.m, lane, "sq", sqv, sqv, k + 1, 2 * (_CHUNK + 1), dsp)
    k = _TERMS - 1
    red = {r: ctrl.get(f"red_{r.name}", k) for r in Reduce}
    keep = ctrl.get("keep", k)[index]
    a = lane.get("a", k)
    choices = [
        (red[Reduce.MAX], Mux(keep, a, -(1 << (FX_BITS - 1)))),
        (red[Reduce.AMAX], Mux(keep, lane.get("absa", k), 0)),
        (red[Reduce.AMAX_Y], lane.get("absy", k)),
        (red[Reduce.SUM_Y], lane.get("y", k)),
        (red[Reduce.SUM], Mux(keep, a, 0)),
        (red[Reduce.SUMSQ], Mux(keep, lane.get("sq", k), 0)),
    ]
    lane.put("term", _select(choices, signed(R_BITS)), _TERMS, signed(R_BITS))


def _tree(m: Module, ctrl: _Pipe, terms: list[Value]) -> Value:
    """R25 - R29: fold the lane terms pairwise (add, or max), one level per stage, padded to
    :data:`~sparsa.sfu.timing.LANE_TREE_LEVELS` levels; returns the stage-R29 value."""
    level = list(terms)
    for depth in range(LANE_TREE_LEVELS):
        stage = _TERMS + depth + 1
        fold_max = ctrl.get("fold_max", stage - 1)
        nxt = []
        for i in range(0, len(level), 2):
            sig = Signal(signed(R_BITS), name=f"tree{depth}_{i // 2}_r{stage}")
            if i + 1 < len(level):
                u, v = level[i], level[i + 1]
                m.d.sync += sig.eq(Mux(fold_max, Mux(u > v, u, v), u + v))
            else:
                m.d.sync += sig.eq(level[i])
            nxt.append(sig)
        level = nxt
    assert len(level) == 1
    return level[0]


class SfuLanes(wiring.Component):
    """``lanes`` SFU vector lanes and the beat reduction, :data:`~sparsa.sfu.timing.LANE_LATENCY` deep.

    Parameters
    ----------
    lanes : int
        Lane count ``L``: even, 2..32.
    ram_delays : bool
        Build the lanes' delays of :data:`_RAM_DELAY_MIN` or more stages as small RAMs
        (distributed RAM on an FPGA) instead of flip-flops; the same cycle behaviour.

    Attributes
    ----------
    i_valid : In(1)
        A beat is on the inputs (it only sets ``o_valid`` later; the lanes compute every cycle).
    op : In(4)
        :class:`~sparsa.sfu.lane.LaneOp`.
    reduce : In(3)
        :class:`~sparsa.sfu.lane.Reduce`.
    a, b : In(ArrayLayout(signed(32), L))
        fx operands (REQUANT: ``b`` is the weight-scale mantissa, RoPE: cos, sin pairs).
    keep : In(L)
        Lane ``i`` is kept (a dropped lane outputs 0 and leaves the reduction).
    x : In(signed(32))
        Row scalar of SUB / EXP_SUB.
    m : In(24)
        Row mantissa of SCALE / SCALE_MUL / QDIV / REQUANT_ROW (its low 16 bits).
    sh : In(signed(7))
        Row shift (-64..63) of REQUANT / REQUANT_ROW / SCALE / SCALE_MUL / QDIV / SUMSQ.
    q : In(8)
        QDIV's code limit.
    o_valid : Out(1)
        ``i_valid`` of the beat on ``y`` and ``r``.
    y : Out(ArrayLayout(signed(32), L))
        :func:`~sparsa.sfu.lane.lane_op` of the beat.
    r : Out(signed(64))
        :func:`~sparsa.sfu.lane.reduce_beat` of the beat.
    """

    def __init__(self, lanes: int, *, ram_delays: bool = True) -> None:
        try:
            self._lanes = _check_lanes(lanes)
            if not isinstance(ram_delays, bool):
                raise TypeError(f"ram_delays must be a bool, not {ram_delays!r}")
        except (ValueError, TypeError):
            self._MustUse__silence = True
            raise
        self._ram_delays = ram_delays
        fx = signed(FX_BITS)
        super().__init__({
            "i_valid": In(1), "op": In(4), "reduce": In(3),
            "a": In(data.ArrayLayout(fx, lanes)), "b": In(data.ArrayLayout(fx, lanes)), "keep": In(lanes),
            "x": In(fx), "m": In(MANT_FIELD_BITS), "sh": In(signed(SH_BITS)), "q": In(Q_BITS),
            "o_valid": Out(1), "y": Out(data.ArrayLayout(fx, lanes)), "r": Out(signed(R_BITS)),
        })

    @property
    def lanes(self) -> int:
        """The lane count ``L``."""
        return self._lanes

    @property
    def ram_delays(self) -> bool:
        """Whether long delays are RAMs."""
        return self._ram_delays

    @property
    def latency(self) -> int:
        """:data:`~sparsa.sfu.timing.LANE_LATENCY`."""
        return LANE_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        tables = _Tables()
        ctrl = _Pipe(m, "c_", self._ring(m, "c_"), registers=("i_valid",))
        _control(ctrl, self)
        lanes = [_Pipe(m, f"l{i}_", self._ring(m, f"l{i}_")) for i in range(self._lanes)]
        dsp = uses_ecp5_dsps(platform)
        for i, lane in enumerate(lanes):
            lane.put("a", self.a[i], 0)
            lane.put("b", self.b[i], 0)
            # M0: REQUANT_ROW's m16 * b16 at R1 (its operand registers are R0)
            _product(m, lane, "mb", self.m[:ROW_MANT_BITS], self.b[i][:ROW_MANT_BITS], 0,
                     2 * ROW_MANT_BITS + 1, dsp)
        ports = self._roms(m, tables)
        for i, lane in enumerate(lanes):
            partner, odd = lanes[i ^ 1], bool(i % 2)
            _front(ctrl, lane, partner, odd, dsp)
            _round_m1(ctrl, lane)
            _qdiv(ctrl, lane)
            _interpolate(m, ctrl, lane, tables, ports[i], dsp)
            _exp(lane)
            _second_product(ctrl, lane, partner, odd, dsp)
            _result(ctrl, lane, i)
            _term(ctrl, lane, i, dsp)
        r = _tree(m, ctrl, [lane.get("term", _TERMS) for lane in lanes])
        m.d.comb += [self.o_valid.eq(ctrl.get("i_valid", _OUT)), self.r.eq(r)]
        m.d.comb += [self.y[i].eq(lane.get("y", _OUT)) for i, lane in enumerate(lanes)]
        for pipe in (ctrl, *lanes):
            pipe.finish()
        return m

    def _ring(self, m: Module, prefix: str) -> "Signal | None":
        """The RAM delays' write pointer, one per pipeline (all equal: a shared counter would
        drive the address of every distributed RAM of every lane), or None without them."""
        if not self._ram_delays:
            return None
        ring = Signal(range(_RING_DEPTH), name=f"{prefix}ring")
        m.d.sync += ring.eq(ring + 1)
        return ring

    def _roms(self, m: Module, tables: _Tables) -> list[tuple]:
        """One gate ROM and one exp ROM per lane pair, a sync read port each per lane."""
        ports = []
        for pair in range(self._lanes // 2):
            gate = memory.Memory(shape=unsigned(tables.width), depth=len(tables.gate), init=tables.gate)
            expm = memory.Memory(shape=unsigned(tables.width), depth=len(tables.exp), init=tables.exp)
            m.submodules[f"gate_rom{pair}"] = gate
            m.submodules[f"exp_rom{pair}"] = expm
            for _ in range(2):
                ports.append((gate.read_port(domain="sync"), expm.read_port(domain="sync")))
        return ports
