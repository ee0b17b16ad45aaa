# amaranth: UnusedElaboratable=no
"""SfuLanes against the NumPy lane contract (sparsa.sfu.lane): every op and reduction of random
and worst-case beats bit for bit, beats of different ops back to back and with bubbles, the
latency exactly LANE_LATENCY, and the Verilog export lint-clean."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sparsa.hdl.export import write_verilog
from sparsa.hdl.sfu.lanes import SH_BITS, SfuLanes, lanes_signature_widths
from sparsa.sfu.fixed import FX_FRAC, FX_MAX, FX_MIN, FX_ONE, rne_shift
from sparsa.sfu.lane import MANT_FIELD_BITS, LaneOp, Reduce, lane_op, reduce_beat
from sparsa.sfu.tables import ACT_FRAC_BITS, ACT_RANGE, ACT_SEGMENTS, EXP2_FRAC_BITS, LOG2E_FX
from sparsa.sfu.timing import LANE_LATENCY

from ..helpers import expect_error, simulate

#: The (op, reduce) pairs the microcode uses (sparsa.sfu.lane's *_passes), plus every op alone.
USED = [(LaneOp.PASS, Reduce.MAX), (LaneOp.EXP_SUB, Reduce.SUM_Y), (LaneOp.SCALE, Reduce.NONE),
        (LaneOp.PASS, Reduce.AMAX), (LaneOp.PASS, Reduce.SUMSQ), (LaneOp.SCALE_MUL, Reduce.NONE),
        (LaneOp.PASS, Reduce.SUM), (LaneOp.SUB, Reduce.NONE), (LaneOp.SUB, Reduce.AMAX_Y),
        (LaneOp.QDIV, Reduce.NONE), (LaneOp.ADD, Reduce.AMAX_Y), (LaneOp.REQUANT, Reduce.AMAX_Y),
        (LaneOp.MUL, Reduce.SUM_Y), (LaneOp.SILU, Reduce.AMAX_Y), (LaneOp.GELU, Reduce.MAX),
        (LaneOp.ROPE, Reduce.NONE), (LaneOp.REQUANT_ROW, Reduce.NONE), (LaneOp.REQUANT_ROW, Reduce.AMAX_Y)]
EDGE = 16 * FX_ONE
SPECIAL = [FX_MIN, FX_MAX, 0, -1, 1, FX_ONE, -FX_ONE, 1 << 15, -(1 << 15), 3 << 15, -EDGE, EDGE, -EDGE - 1,
           EDGE - 1, (1 << 17) + (1 << 11), -(1 << 17) - (1 << 11)]
SH_OPS = (LaneOp.REQUANT, LaneOp.REQUANT_ROW, LaneOp.SCALE, LaneOp.SCALE_MUL, LaneOp.QDIV)


def fx_values(n: int):
    """``n`` fx codes, extremes and rounding ties likely."""
    elem = st.one_of(st.sampled_from(SPECIAL), st.integers(FX_MIN, FX_MAX), st.integers(-(1 << 21), 1 << 21))
    return st.lists(elem, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.int64))


@st.composite
def beats(draw, lanes: int, pairs=None):
    """One beat as a dict of the lanes' inputs, inside the contract's domain for its op."""
    op, red = draw(st.sampled_from(pairs or USED))
    a, b = draw(fx_values(lanes)), draw(fx_values(lanes))
    keep = np.array(draw(st.lists(st.booleans(), min_size=lanes, max_size=lanes)))
    m = draw(st.one_of(st.sampled_from([0, 1, (1 << 24) - 1, 1 << 15]), st.integers(0, (1 << MANT_FIELD_BITS) - 1)))
    sh = draw(st.integers(-(1 << (SH_BITS - 1)), (1 << (SH_BITS - 1)) - 1))
    q = draw(st.one_of(st.sampled_from([0, 1, 7, 127, 255]), st.integers(0, 255)))
    x = draw(st.one_of(st.sampled_from([FX_MIN, FX_MAX, 0]), st.integers(FX_MIN, FX_MAX)))
    abits = int(np.abs(a).max()).bit_length()
    # every shift the sh port takes (-64..63): the contract saturates the true value
    # (sparsa.sfu.fixed.shift_saturate_fx) and QDIV divides it exactly, like the lanes
    if op == LaneOp.REQUANT:
        b = b & 0xFFFF
    elif op == LaneOp.QDIV and draw(st.booleans()):   # quotients around 2**-2 .. 2**9 rather than 0 or saturated
        sh = int(np.clip(m.bit_length() - abits + draw(st.integers(-3, 9)), -(1 << (SH_BITS - 1)),
                         (1 << (SH_BITS - 1)) - 1))
    elif op == LaneOp.EXP_SUB and draw(st.booleans()):
        a = a >> draw(st.integers(0, 12))          # a softmax row: x is its max, a - x in [-18, 0] mostly
        x = int(a.max())
    if red == Reduce.SUMSQ:       # the squarer's domain: |a >> sh| <= 2**17 (the norms keep 2**15)
        sh = min(max(sh, 0, abits - 17), 63)
    return dict(op=op, reduce=red, a=a, b=b, keep=keep, x=x, m=m, sh=sh, q=q)


def expected(beat: dict) -> tuple[np.ndarray, int]:
    y = lane_op(beat["op"], beat["a"], beat["b"], beat["keep"], x=beat["x"], m=beat["m"], sh=beat["sh"],
                q=beat["q"])
    r = int(reduce_beat(beat["reduce"], beat["a"], y, beat["keep"], beat["sh"]))
    return y, r


def _pack(values, bits: int = 32) -> int:
    return sum((int(v) & ((1 << bits) - 1)) << (bits * i) for i, v in enumerate(values))


def _unpack(word: int, n: int, bits: int = 32) -> list[int]:
    out = []
    for i in range(n):
        v = (word >> (bits * i)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def run(lanes: int, schedule: list, **options) -> list:
    """Drive ``schedule`` (a beat dict, or None for a bubble, one per cycle); return
    ``(o_valid, y, r)`` of every cycle after the inputs, ``LANE_LATENCY`` cycles more."""
    dut = SfuLanes(lanes, **options)
    seen = []

    async def tb(ctx):
        for cycle in range(len(schedule) + LANE_LATENCY + 1):
            beat = schedule[cycle] if cycle < len(schedule) else None
            ctx.set(dut.i_valid, beat is not None)
            if beat is not None:
                ctx.set(dut.op, int(beat["op"]))
                ctx.set(dut.reduce, int(beat["reduce"]))
                ctx.set(dut.a.as_value(), _pack(beat["a"]))
                ctx.set(dut.b.as_value(), _pack(beat["b"]))
                ctx.set(dut.keep, _pack(beat["keep"], 1))
                for name in ("x", "m", "sh", "q"):
                    ctx.set(getattr(dut, name), int(beat[name]))
            await ctx.tick()
            seen.append((ctx.get(dut.o_valid), _unpack(ctx.get(dut.y.as_value()), lanes), ctx.get(dut.r)))

    simulate(dut, tb)
    return seen


def check(lanes: int, schedule: list, **options) -> None:
    """The outputs of ``schedule`` equal the contract, ``LANE_LATENCY`` cycles after each beat."""
    seen = run(lanes, schedule, **options)
    for cycle, (valid, y, r) in enumerate(seen):
        src = cycle + 1 - LANE_LATENCY
        beat = schedule[src] if 0 <= src < len(schedule) else None
        assert valid == (beat is not None), f"o_valid wrong in cycle {cycle}"
        if beat is not None:
            want_y, want_r = expected(beat)
            ctx = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in beat.items()}
            assert y == want_y.tolist(), f"y of beat {src}: {ctx}"
            assert r == want_r, f"r of beat {src}: {ctx}"


SIM = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
           phases=[Phase.explicit, Phase.reuse, Phase.generate])


@pytest.mark.parametrize("lanes", [2, 4])
@settings(max_examples=6, **SIM)
@given(data=st.data())
def test_random_beats_back_to_back_with_bubbles(lanes, data):
    """Every cycle a different beat (op, reduce and scalars drawn anew) or a bubble."""
    schedule = data.draw(st.lists(st.one_of(beats(lanes), beats(lanes), st.none()), min_size=1, max_size=24))
    check(lanes, schedule)


@pytest.mark.parametrize("op", list(LaneOp))
def test_every_op_with_every_reduction(op):
    """One beat of ``op`` with each Reduce kind, back to back, on the worst-case operands."""
    rng = np.random.default_rng(int(op))
    lanes = 4
    schedule = []
    for red in Reduce:
        for trial in range(2):
            pick = rng.integers(0, len(SPECIAL), (2, lanes))
            a = np.array(SPECIAL, dtype=np.int64)[pick[0]]
            b = np.array(SPECIAL, dtype=np.int64)[pick[1]]
            if trial:
                a, b = rng.integers(FX_MIN, FX_MAX, lanes), rng.integers(FX_MIN, FX_MAX, lanes)
            sh = 9
            if op == LaneOp.REQUANT:
                b = b & 0xFFFF
            if op == LaneOp.QDIV:
                sh = -17
            if red == Reduce.SUMSQ:
                sh = max(0, int(np.abs(a).max()).bit_length() - 15)
                if op in SH_OPS:
                    continue
            keep = np.array([True, bool(trial), True, not trial])
            schedule.append(dict(op=op, reduce=red, a=a, b=b, keep=keep, x=int(a[0]) if trial else FX_MIN,
                                 m=(1 << 16) + 5, sh=sh, q=127))
    check(lanes, schedule)


def _beat(op, a, b=None, *, red=Reduce.NONE, keep=None, x=0, m=0, sh=0, q=0):
    a = np.array(a, dtype=np.int64)
    return dict(op=op, reduce=red, a=a, b=a.copy() if b is None else np.array(b, dtype=np.int64),
                keep=np.ones(len(a), bool) if keep is None else np.array(keep, bool), x=x, m=m, sh=sh, q=q)


def test_worst_case_operands():
    """Table edges (x = +-16 and beyond), exp of 0 and of very negative, rounding ties,
    saturating products and shifts, QDIV saturating and with m = 0."""
    e = EDGE
    schedule = [
        _beat(LaneOp.SILU, [-e - 1, -e, e - 1, e]),
        _beat(LaneOp.GELU, [FX_MIN, FX_MAX, -e + 4095, e - 4096]),
        _beat(LaneOp.EXP_SUB, [0, 5, FX_MIN, -(18 << 16)], x=0, red=Reduce.SUM_Y),
        _beat(LaneOp.EXP_SUB, [FX_MAX, FX_MIN, 0, -1], x=FX_MAX, red=Reduce.SUM_Y),
        _beat(LaneOp.EXP_SUB, [-(12 << 16) - 77, -(17 << 16), -(11 << 16) - 3000, -1], x=0),
        _beat(LaneOp.MUL, [FX_MIN, FX_MIN, FX_MAX, 3 << 15], [FX_MIN, FX_MAX, FX_MAX, 1]),
        _beat(LaneOp.MUL, [1 << 15, 3 << 15, -(1 << 15), -(3 << 15)], [1, 1, 1, 1]),
        _beat(LaneOp.REQUANT, [FX_MIN, FX_MAX, 3, -3], [0xFFFF, 0xFFFF, 1, 1], sh=1),
        _beat(LaneOp.REQUANT, [FX_MIN, 1, 3, -3], [0xFFFF, 1, 1, 1], sh=-14),
        _beat(LaneOp.REQUANT, [384, -384, 896, 256 + 1], [1, 1, 1, 1], sh=9),   # the last bits shifted out decide
        _beat(LaneOp.SCALE, [384, -384, 896, 256 + 1], m=1, sh=13),
        _beat(LaneOp.REQUANT, [FX_MIN, FX_MAX, 3, -3], [0xFFFF, 0xFFFF, 1, 1], sh=63),
        # REQUANT_ROW: the largest products (|a| (2**16 - 1)**2 < 2**63) at the shift range's ends
        # and around the window; m and b beyond 16 bits are cut to their low 16 bits
        *[_beat(LaneOp.REQUANT_ROW, [FX_MIN, FX_MAX, 3, -3], [0xFFFF, -1, 1, 0x1FFFF], m=(1 << 24) - 1, sh=sh)
          for sh in (-64, -33, -32, -31, -1, 0, 1, 16, 31, 32, 33, 47, 48, 61, 62, 63)],
        _beat(LaneOp.REQUANT_ROW, [FX_MIN, FX_MAX, -(1 << 30), (1 << 30) + 1], [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF],
              m=0xFFFF, sh=62, red=Reduce.AMAX_Y),
        _beat(LaneOp.REQUANT_ROW, [384, -384, 896, 257], [1, 1, 1, FX_MIN], m=1, sh=9),   # ties; b's low bits 0
        _beat(LaneOp.REQUANT_ROW, [FX_MIN, FX_MAX, 1, -1], [0xFFFF, 0xFFFF, 1, 1], m=1 << 16, sh=-64),  # m16 = 0
        _beat(LaneOp.SCALE, [FX_MIN, FX_MAX, 5, -5], m=(1 << 24) - 1, sh=-7),
        # left shifts whose int64 product would wrap: the true value saturates
        _beat(LaneOp.REQUANT, [FX_MIN, FX_MAX, 1, -1], [0xFFFF, 0xFFFF, 1, 1], sh=-64),
        _beat(LaneOp.REQUANT, [1 << 20, -(1 << 20), 1, -1], [0xFFFF, 0xFFFF, 1, 1], sh=-31),
        _beat(LaneOp.SCALE, [FX_MIN, FX_MAX, 1, -1], m=(1 << 24) - 1, sh=-40),
        _beat(LaneOp.SCALE_MUL, [FX_MIN, 3, 1, -1], [FX_ONE, FX_ONE, FX_ONE, -FX_ONE], m=1, sh=-31),
        _beat(LaneOp.QDIV, [FX_MIN, FX_MAX, 1, -1], m=1, sh=63, q=127),
        _beat(LaneOp.QDIV, [FX_MIN, FX_MAX, 1, -1], m=(1 << 24) - 1, sh=-64, q=127),
        _beat(LaneOp.QDIV, [FX_MIN, FX_MAX, 1, -1], m=(1 << 23) + 1, sh=32, q=255),
        _beat(LaneOp.SCALE, [FX_MIN, FX_MAX, 5, -5], m=(1 << 24) - 1, sh=40),
        _beat(LaneOp.SCALE_MUL, [FX_MIN, FX_MAX, 5, -5], [FX_MIN, FX_MIN, FX_MAX, FX_MIN], m=(1 << 24) - 1, sh=2),
        _beat(LaneOp.ROPE, [FX_MIN, FX_MIN, FX_MAX, FX_MIN], [FX_MIN, FX_MIN, FX_MAX, FX_MIN]),
        _beat(LaneOp.ROPE, [FX_MIN, FX_MAX, FX_MAX, FX_MIN], [FX_MAX, FX_MIN, FX_MIN, FX_MAX]),
        _beat(LaneOp.QDIV, [FX_MIN, FX_MAX, 3, -3], m=1, sh=30, q=127),
        _beat(LaneOp.QDIV, [FX_MIN, FX_MAX, 3, -3], m=0, sh=0, q=127),
        _beat(LaneOp.QDIV, [FX_MIN, FX_MAX, 5, -5], m=(1 << 24) - 1, sh=-30, q=127),
        _beat(LaneOp.QDIV, [255, -255, 257, -257], m=2, sh=0, q=255),
        _beat(LaneOp.QDIV, [5, -5, 7, -7], m=2, sh=0, q=127),        # ties 2.5, 3.5
        _beat(LaneOp.QDIV, [253, -253, 254, -254], m=2, sh=0, q=127),
        _beat(LaneOp.QDIV, [11, -11, 13, -9], m=1, sh=-2, q=127),      # 2.75: the bits shifted out round up
        _beat(LaneOp.QDIV, [10, -10, 6, -6], m=1, sh=-2, q=127),       # 2.5 and 1.5: ties to even
        _beat(LaneOp.QDIV, [3 << 20, -(3 << 20), 1, -1], m=3, sh=-13, q=127),
        _beat(LaneOp.ADD, [FX_MIN, FX_MAX, 1, -1], [FX_MIN, FX_MAX, 2, -2], red=Reduce.SUM_Y),
        _beat(LaneOp.SUB, [FX_MIN, FX_MAX, 0, 0], x=FX_MIN, red=Reduce.AMAX_Y),
        _beat(LaneOp.PASS, [FX_MIN, FX_MIN, FX_MIN, FX_MIN], red=Reduce.AMAX),
        _beat(LaneOp.PASS, [FX_MIN, FX_MIN, FX_MIN, FX_MIN], red=Reduce.SUM),
        _beat(LaneOp.PASS, [FX_MIN, FX_MAX, 1 << 17, -(1 << 17)], red=Reduce.SUMSQ, sh=14),
        _beat(LaneOp.PASS, [5, 6, 7, 8], red=Reduce.MAX, keep=[False] * 4),
        _beat(LaneOp.PASS, [5, 6, 7, 8], red=Reduce.AMAX, keep=[False] * 4),
        _beat(LaneOp.ADD, [5, 6, 7, 8], red=Reduce.AMAX_Y, keep=[False, True, False, False]),
    ]
    check(4, schedule)


def test_register_delays_are_the_same_circuit():
    """``ram_delays=False`` (flip-flop delays) gives the same outputs in the same cycles."""
    rng = np.random.default_rng(11)
    schedule = [_beat(op, rng.integers(-(1 << 20), 1 << 20, 2), rng.integers(0, 1 << 16, 2), red=red, x=-77,
                      m=12345, sh=3, q=100) for op, red in USED if red != Reduce.SUMSQ]
    check(2, schedule[::2] + [None] + schedule[1::2], ram_delays=False)


def test_latency_is_lane_latency():
    """One beat after idle cycles: o_valid rises exactly LANE_LATENCY cycles after i_valid."""
    beat = _beat(LaneOp.ADD, [1, 2], [3, 4], red=Reduce.SUM_Y)
    seen = run(2, [None, None, beat])
    assert [c for c, (v, _, _) in enumerate(seen) if v] == [2 + LANE_LATENCY - 1]
    assert seen[2 + LANE_LATENCY - 1][1:] == ([4, 6], 10)


@settings(max_examples=2, **SIM)
@given(data=st.data())
def test_eight_lanes(data):
    check(8, data.draw(st.lists(beats(8), min_size=4, max_size=8)))


def _mult18x18d_model(m, name, *, a, b, p):
    """Amaranth model of the signed, registered MULT18X18D of :func:`sparsa.hdl.sfu.lanes._mult18x18d`."""
    from amaranth.hdl import Signal, signed

    a_reg, b_reg = Signal(signed(18), name=f"{name}_a"), Signal(signed(18), name=f"{name}_b")
    p_reg = Signal(signed(36), name=f"{name}_p")
    m.d.sync += [a_reg.eq(a), b_reg.eq(b), p_reg.eq(a_reg * b_reg)]
    m.d.comb += p.eq(p_reg)


def test_ecp5_dsp_variant(monkeypatch):
    """On ECP5 every product is a MULT18X18D with its own input and output registers (modelled
    here): the same outputs in the same cycles."""
    from sparsa.hdl.sfu import lanes as lanes_module

    assert not lanes_module.uses_ecp5_dsps(None)
    monkeypatch.setattr(lanes_module, "uses_ecp5_dsps", lambda platform: True)
    monkeypatch.setattr(lanes_module, "_mult18x18d", _mult18x18d_model)
    rng = np.random.default_rng(3)
    schedule = []
    for op in LaneOp:
        a, b = (int(v) for v in rng.integers(FX_MIN, FX_MAX, 2))
        red = Reduce.SUMSQ if op == LaneOp.PASS else Reduce.SUM_Y
        bb = [b & 0xFFFF, 0xFFFF] if op == LaneOp.REQUANT else [b, FX_MIN]
        schedule.append(_beat(op, [a, FX_MIN], bb, red=red,
                              x=a - (3 << 16), m=(1 << 20) + 3, sh=30 if op == LaneOp.PASS else -3, q=127))
    schedule += [_beat(LaneOp.SILU, [-(3 << 16) - 5, 7 << 15]), _beat(LaneOp.EXP_SUB, [-(2 << 16) - 999, 0])]
    check(2, schedule)


def test_bad_lane_counts():
    for bad in (0, 3, 34, 2.0, True):
        expect_error(ValueError, "lanes must be an even int in \\[2, 32\\]", lambda: SfuLanes(bad))
    expect_error(TypeError, "ram_delays must be a bool, not 1", lambda: SfuLanes(2, ram_delays=1))


def test_exports_and_lints(tmp_path):
    dut = SfuLanes(2)
    path = write_verilog(dut, "sfu_lanes", tmp_path)
    text = path.read_text()
    widths = lanes_signature_widths(2)
    for name, width in widths.items():
        direction = "input" if name in ("i_valid", "op", "reduce", "a", "b", "keep", "x", "m", "sh", "q") else "output"
        decl = f"{direction} " + (f"[{width - 1}:0] " if width > 1 else "") + f"{name};"
        assert decl in text, decl
    from sparsa.hdl.verilator import lint_verilog
    from sparsa.sim.backends.verilator_backend import unavailable_reason
    problem = unavailable_reason()
    if problem and "verilator" in problem:
        pytest.skip(problem)
    assert lint_verilog(path) == ""


def _exp_inputs(rng) -> np.ndarray:
    """``a - x`` values whose ``2**-f`` fraction is a rounding tie of the interpolation: every
    table segment at ``n = 0``, and random ``n <= 17``; plus random values in ``[-18, 0]``."""
    dn = -np.arange(0, 18 << 16, dtype=np.int64)
    u = rne_shift(-dn * LOG2E_FX, FX_FRAC)
    tie = (u & ((1 << EXP2_FRAC_BITS) - 1)) == 1 << (EXP2_FRAC_BITS - 1)
    ties = dn[tie]
    n = (u >> FX_FRAC)[tie]
    picked = np.concatenate([ties[n == 0], rng.choice(ties[n > 0], 24, replace=False),
                             rng.integers(-(18 << 16), 1, 32), [0, -1, -(17 << 16), -(18 << 16)]])
    return picked.astype(np.int64)


def test_tables_sweep():
    """SiLU and GELU at a rounding tie of every table segment (frac = 2**11, the slope times it
    a half) and at a random fraction in it; EXP_SUB at interpolation and final-shift ties."""
    rng = np.random.default_rng(7)
    lanes = 8
    segments = np.arange(ACT_SEGMENTS, dtype=np.int64) * (1 << ACT_FRAC_BITS) - ACT_RANGE * FX_ONE
    gate_a = np.concatenate([segments + (1 << (ACT_FRAC_BITS - 1)),
                             segments + rng.integers(0, 1 << ACT_FRAC_BITS, ACT_SEGMENTS)])
    exp_a = _exp_inputs(rng)
    exp_a = np.concatenate([exp_a, np.zeros(-len(exp_a) % lanes, np.int64)])
    schedule = []
    for op, values in ((LaneOp.SILU, gate_a), (LaneOp.GELU, gate_a), (LaneOp.EXP_SUB, exp_a)):
        for row in values.reshape(-1, lanes):
            schedule.append(_beat(op, row, red=Reduce.SUM_Y))
    check(lanes, schedule)


def test_table_edges_are_interpolated_exactly():
    """The gate index at the table's upper edge (x = 16 - 2**-16) reads the last segment."""
    a = [ACT_RANGE * FX_ONE - 1, -ACT_RANGE * FX_ONE, 7, -7]
    check(4, [_beat(LaneOp.SILU, a), _beat(LaneOp.GELU, a)])
