"""Per-row scales on the SFU: ``quantize_rows`` (one exponent per row) and ``requantize_rows``
(a per-row mantissa and exponent, one rounding) against the block reference's row-by-row steps
(:func:`sparsa.models.block.reference.quantize_rows` and ``_requant_rows``) and against exact
Python-integer arithmetic over the whole shift range, and the REQUANT_ROW lane op."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.formats.actscale import ActScaleSpec
from sparsa.models.block.reference import _requant_rows, quantize_rows, scaled_dot
from sparsa.sfu import lane, ops
from sparsa.sfu.command import SfuCommand, SfuOp
from sparsa.sfu.fixed import FX_MAX, FX_MIN, shift_saturate_fx
from sparsa.sfu.lane import LaneOp

MANT = (1 << ops.ROW_MANT_BITS) - 1


def exact(x: int, s: int) -> int:
    """``sat(rne(x / 2**s))`` on Python integers (the definition, no int64)."""
    q = Fraction(x, 1) / Fraction(2) ** s
    f = q.numerator // q.denominator
    r = q - f
    v = f + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and f % 2) else 0)
    return max(FX_MIN, min(FX_MAX, v))


@settings(max_examples=300, deadline=None)
@given(st.integers(-(1 << 63) + 1, (1 << 63) - 1) | st.integers(-(1 << 40), 1 << 40), st.integers(-64, 63))
def test_shift_saturate_is_the_true_value_below_2_63(x, s):
    """The rounding helper is exact for every int64 but ``-2**63`` and every shift the lanes take."""
    assert int(shift_saturate_fx(np.int64(x), s)) == exact(x, s)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.sampled_from([4, 8]), st.integers(2, 24), st.booleans(), st.data())
def test_quantize_rows_is_quantize_of_each_row_alone(rows, k, bits, mbits, grouped, data):
    x = data.draw(arrays(np.int64, (rows, k), elements=st.integers(FX_MIN, FX_MAX)
                         | st.integers(-(1 << 12), 1 << 12)))
    group = data.draw(st.integers(1, k)) if grouped else None
    spec = ActScaleSpec("group", group=group, mantissa_bits=mbits) if grouped else ActScaleSpec("token", mantissa_bits=mbits)
    codes, mant, expo = ops.quantize_rows(x, spec, bits)
    for t in range(rows):
        q = ops.quantize(x[t:t + 1], spec, bits)
        assert np.array_equal(codes[t], q.codes[0]) and np.array_equal(mant[t], q.mantissa[0])
        assert expo[t] == q.exponent
    if mbits == 16 and bits == 8:
        for got, want in zip((codes, mant, expo), quantize_rows(x, bits, group)):
            assert np.array_equal(got, want)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 64), st.integers(1, 12), st.integers(-30, 40), st.data())
def test_requantize_rows_is_the_block_references_requantization(rows, k, n_out, w_exp, data):
    """QUANTIZE per row -> raw dot -> requantize_rows equals ``_requant_rows(m * dot)``: the same
    integer product, one rounding (including saturating sums and shifts)."""
    x = data.draw(arrays(np.int64, (rows, k), elements=st.integers(-(1 << 26), 1 << 26)))
    w = data.draw(arrays(np.int64, (n_out, k), elements=st.sampled_from([-127, 127, 0]) | st.integers(-127, 127)))
    wm = data.draw(arrays(np.int64, n_out, elements=st.sampled_from([0, 1, MANT]) | st.integers(0, MANT)))
    codes, mant, expo = quantize_rows(x)
    dot = codes @ w.T
    got = ops.requantize_rows(dot, mant[:, 0], expo, wm, w_exp - 16)
    assert np.array_equal(got, _requant_rows(scaled_dot(codes, mant, w), expo, wm, w_exp))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([FX_MIN, FX_MAX, 0, 1, -1]) | st.integers(FX_MIN, FX_MAX),
       st.sampled_from([0, 1, MANT]) | st.integers(0, MANT), st.sampled_from([0, 1, MANT]) | st.integers(0, MANT),
       st.integers(-63, 63), st.sampled_from([-(1 << 31), (1 << 31) - 1]) | st.integers(-140, 140))
def test_requantize_rows_on_its_whole_domain(a, m, b, shift, e):
    """Exact for every shift ``shift + e`` in [-64, 63]; outside it the clamped shift's value
    (below -64 the true value; above 63 the value at 63, nonzero only for a product above 2**62)."""
    got = int(ops.requantize_rows(np.array([[a]]), np.array([m]), np.array([e]), np.array([b]), shift)[0, 0])
    s, p = shift + e, a * m * b
    assert got == exact(p, min(max(s, -64), 63))
    if -64 <= s <= 63:
        assert got == exact(p, s)
    elif s < -64:                    # the true value: any nonzero product saturates
        assert got == (0 if p == 0 else FX_MAX if p > 0 else FX_MIN)
    else:
        assert abs(got) <= 1 and (got == 0) == (abs(p) <= 1 << 62)


def test_requantize_rows_above_63_is_the_value_at_63():
    """The clamp's one inexact case, pinned: |P| > 2**62 at a shift of 64 or more gives +-1."""
    a, m = FX_MIN, MANT
    got = ops.requantize_rows(np.array([[a, FX_MAX, 7]]), np.array([m]), np.array([70]), np.array([MANT, MANT, MANT]), 0)
    assert got.tolist() == [[-1, 1, 0]]


@pytest.mark.parametrize("kw, error, message", [
    (dict(acc=[[1 << 31]]), FormatError, r"requantize_rows sums: fx codes must .*32 bits"),
    (dict(row_mant=[1 << 16]), FormatError, r"row mantissas must be in \[0, 2\*\*16\), got \[65536, 65536\]"),
    (dict(mantissa=[-1]), FormatError, r"channel mantissas must be in \[0, 2\*\*16\), got \[-1, -1\]"),
    (dict(row_exp=[1 << 31]), FormatError, "row exponents must be 32-bit"),
    (dict(row_exp=[1, 2]), ShapeError, r"need row mantissas and exponents \[1\]"),
    (dict(acc=[1, 2]), ShapeError, r"sums must be \[rows, n\], not shape \(2,\)"),
])
def test_requantize_rows_refuses_operands_outside_its_domain(kw, error, message):
    args = dict(acc=[[1]], row_mant=[1], row_exp=[0], mantissa=[1], shift=0)
    args.update(kw)
    with pytest.raises(error, match=message):
        ops.requantize_rows(np.array(args["acc"]), np.array(args["row_mant"]), np.array(args["row_exp"]),
                            np.array(args["mantissa"]), args["shift"])


def test_quantize_rows_refuses_static_scales():
    with pytest.raises(FormatError, match="quantize_rows: granularity 'tensor' is a static scale"):
        ops.quantize_rows(np.zeros((1, 4), np.int64), ActScaleSpec("tensor"), 8)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([FX_MIN, FX_MAX]) | st.integers(FX_MIN, FX_MAX),
       st.integers(0, (1 << lane.MANT_FIELD_BITS) - 1), st.integers(FX_MIN, FX_MAX), st.integers(-64, 63))
def test_requant_row_lane_op_takes_the_low_16_bits(a, m, b, sh):
    """REQUANT_ROW multiplies by the low 16 bits of ``m`` and ``b`` (unsigned), exactly."""
    y = lane.lane_op(LaneOp.REQUANT_ROW, np.array([a, a]), np.array([b, b]), np.array([True, False]), m=m, sh=sh)
    assert y.tolist() == [exact(a * (m & MANT) * (b & MANT), sh), 0]


def test_row_exponent_and_unit_checks():
    with pytest.raises(FormatError, match="row_exponent belongs to QUANTIZE, not ADD"):
        SfuCommand(SfuOp.ADD, 1, 4, dst=0, a=0, row_exponent=True)
    with pytest.raises(FormatError, match="row_exponent must be a bool, not 1"):
        SfuCommand(SfuOp.QUANTIZE, 1, 4, dst=0, a=0, unit=4, row_exponent=1)
    # a per-token unit may be any row length: the tail lanes are padding
    SfuCommand(SfuOp.QUANTIZE, 2, 10, dst=0, a=0, unit=10, scale_dst=20, row_exponent=True, exp_dst=21).check(4, 32)
    cmd = SfuCommand(SfuOp.QUANTIZE, 5, 8, dst=0, a=10, unit=8, scale_dst=20, row_exponent=True, exp_dst=21)
    with pytest.raises(ConfigError, match="exp_dst words 21..22 overlap scale_dst"):
        cmd.check(4, 64)
    cmd = SfuCommand(SfuOp.REQUANT_ROW, 4, 8, dst=0, a=10, b=30, scale_src=1, exp_src=40)
    with pytest.raises(ConfigError, match="dst words 0..7 overlap scale_src words 1..1"):
        cmd.check(4, 64)
