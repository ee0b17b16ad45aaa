"""The SFU lane ops and beat reductions against the operations they implement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsa.errors import FormatError
from sparsa.formats.actscale import ActScaleSpec
from sparsa.sfu import lane, ops
from fractions import Fraction

from sparsa.sfu.fixed import FX_MAX, FX_MIN, to_fx
from sparsa.sfu.lane import LaneOp, Reduce

lanes = st.sampled_from([2, 4, 8, 16])


def fx(n, lo=-(1 << 24), hi=1 << 24):
    return arrays(np.int64, n, elements=st.integers(lo, hi))


@given(st.integers(FX_MIN, FX_MAX), st.integers(0, (1 << lane.MANT_FIELD_BITS) - 1), st.integers(-64, 63),
       st.integers(0, 255))
def test_qdiv_divides_the_true_value_for_every_shift(a, m, sh, q):
    """``clip(rne(a 2**sh / m), -q, q)`` exactly, including shifts whose int64 operands would wrap."""
    got = int(lane.lane_op(LaneOp.QDIV, np.array([a, 0]), np.zeros(2, np.int64), np.ones(2, bool), m=m, sh=sh,
                           q=q)[0])
    want = 0 if m == 0 else max(-q, min(q, round(Fraction(a) * Fraction(2) ** sh / m)))
    assert got == want


def test_sumsq_refuses_operands_outside_the_squarers_domain():
    a = np.array([1 << 17, 0])
    with pytest.raises(FormatError, match="SUMSQ"):
        lane.reduce_beat(Reduce.SUMSQ, a, a, np.ones(2, bool), sh=0)
    assert int(lane.reduce_beat(Reduce.SUMSQ, a, a, np.ones(2, bool), sh=1)) == 1 << 32


@settings(max_examples=40)
@given(lanes, st.integers(1, 6), st.sampled_from([8, 4]), st.data())
def test_qdiv_gives_the_quantizer_codes(L, groups, bits, data):
    k = groups * L
    x = data.draw(fx((3, k), -(1 << 28), 1 << 28))
    spec = ActScaleSpec("group", group=L)
    want = ops.quantize(x, spec, bits)
    qmax = (1 << (bits - 1)) - 1
    for t in range(3):
        for g in range(groups):
            unit = x[t, g * L:(g + 1) * L]
            got = lane.lane_op(LaneOp.QDIV, unit, unit, np.ones(L, bool), m=int(want.mantissa[t, g]),
                               sh=want.exponent - 16, q=qmax)
            assert np.array_equal(got, want.codes[t, g * L:(g + 1) * L])


@settings(max_examples=40)
@given(lanes, st.data())
def test_elementwise_lane_ops_equal_the_operations(L, data):
    a = data.draw(fx(L, FX_MIN, FX_MAX))
    b = data.draw(fx(L, FX_MIN, FX_MAX))
    keep = np.ones(L, bool)
    assert np.array_equal(lane.lane_op(LaneOp.ADD, a, b, keep), ops.add(a, b))
    assert np.array_equal(lane.lane_op(LaneOp.MUL, a, b, keep), ops.mul(a, b))
    assert np.array_equal(lane.lane_op(LaneOp.SILU, a, b, keep), ops.activation(a, "silu"))
    assert np.array_equal(lane.lane_op(LaneOp.GELU, a, b, keep), ops.activation(a, "gelu"))
    mant = b & 0xFFFF
    assert np.array_equal(lane.lane_op(LaneOp.REQUANT, a, mant, keep, sh=9), ops.requantize(a[None], mant, 9)[0])
    ang = data.draw(arrays(np.float64, L // 2, elements=st.floats(-10, 10)))
    cs = np.empty(L, np.int64)
    cs[0::2], cs[1::2] = to_fx(np.cos(ang)), to_fx(np.sin(ang))
    want = ops.rope(a[None], cs[0::2][None], cs[1::2][None], "adjacent")[0]
    assert np.array_equal(lane.lane_op(LaneOp.ROPE, a, cs, keep), want)


def test_dropped_lanes_output_zero_and_leave_reductions():
    a = np.array([5, -7, 3, 9])
    keep = np.array([True, True, True, False])
    assert lane.lane_op(LaneOp.ADD, a, a, keep).tolist() == [10, -14, 6, 0]
    assert int(lane.reduce_beat(Reduce.MAX, a, a, keep)) == 5
    assert int(lane.reduce_beat(Reduce.AMAX, a, a, keep)) == 7
    assert int(lane.reduce_beat(Reduce.SUM, a, a, keep)) == 1
    assert int(lane.reduce_beat(Reduce.SUMSQ, a, a, keep, sh=1)) == 4 + 16 + 1


def test_lane_mantissa_field_is_checked():
    with pytest.raises(FormatError, match="lane m must be in"):
        lane.lane_op(LaneOp.SCALE, np.zeros(2), np.zeros(2), np.ones(2, bool), m=1 << 24)
