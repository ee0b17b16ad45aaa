"""The SFU's integer primitives against exact rational arithmetic."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsa.errors import FormatError
from sparsa.sfu import fixed, tables
from sparsa.sfu.fixed import (
    FX_MAX,
    FX_MIN,
    from_fx,
    normalized_reciprocal,
    normalized_rsqrt,
    rne_div,
    rne_shift,
    shift_saturate_fx,
    to_fx,
)

big = st.integers(min_value=-(1 << 61), max_value=(1 << 61))


@given(big, st.integers(min_value=-8, max_value=40))
def test_rne_shift_is_round_half_even(x, s):
    if s < 0 and abs(x) >= 1 << (62 + s):
        x >>= -s
    assert int(rne_shift(np.int64(x), s)) == round(Fraction(x, 1 << s) if s >= 0 else Fraction(x << -s))


@given(st.integers(min_value=-(1 << 55), max_value=1 << 55), st.integers(min_value=-64, max_value=63))
def test_shift_saturate_is_the_saturated_true_value(x, s):
    """Every shift the lanes take, products up to 55 bits: no int64 wrap on the left shifts."""
    true = round(Fraction(x, 1 << s)) if s >= 0 else x << -s
    assert int(shift_saturate_fx(np.int64(x), s)) == min(max(true, FX_MIN), FX_MAX)


def test_rne_shift_ties_go_to_even():
    xs = np.array([1, 3, 5, 7, -1, -3, -5, -7, 2, -2])
    assert rne_shift(xs, 1).tolist() == [0, 2, 2, 4, 0, -2, -2, -4, 1, -1]


@given(big, st.integers(min_value=1, max_value=(1 << 40)))
def test_rne_div_is_round_half_even(n, d):
    assert int(rne_div(np.int64(n), np.int64(d))) == round(Fraction(n, d))


def test_rne_div_refuses_a_non_positive_divisor():
    with pytest.raises(FormatError, match="divisors must be positive"):
        rne_div(np.array([1]), np.array([0]))


@given(st.integers(min_value=1, max_value=1 << 60))
def test_normalized_reciprocal_brackets_one_over_d(d):
    m, e = normalized_reciprocal(d)
    assert 1 << 15 <= m < 1 << 16
    assert m * d <= 1 << e < (m + 1) * d


@given(st.integers(min_value=1, max_value=1 << 70), st.integers(min_value=1, max_value=1 << 17))
def test_normalized_rsqrt_brackets_sqrt_n_over_d(d, n):
    m, e = normalized_rsqrt(d, n)
    assert 1 << 15 <= m < 1 << 16
    lhs, rhs = (n << (2 * e), d) if e >= 0 else (n, d << (-2 * e))
    assert m * m * rhs <= lhs < (m + 1) * (m + 1) * rhs


@given(st.floats(min_value=-40000, max_value=40000, allow_nan=False))
def test_to_fx_rounds_half_even_and_saturates(x):
    v = int(to_fx(x))
    assert v == min(max(round(Fraction(x) * 65536), FX_MIN), FX_MAX)
    assert float(from_fx(v)) == v / 65536


def test_to_fx_refuses_non_finite_values():
    with pytest.raises(FormatError, match="finite"):
        to_fx(np.array([1.0, np.nan]))


# SHA-256 of the little-endian int64 tables.  A libm that rounds a table entry differently
# changes a bit of every rung's output; this makes such a platform fail here first.
TABLE_SHA256 = {
    "silu": "5884510bf7b3dfae6aeed20b0197785432b249c226edff54b0a6800d94ebcb11",
    "gelu": "7496646e93b7bc64614e7d36d6f2c49a7e31ede30c09d11114f4d794c6eca165",
    "exp2": "8a2439f77c59d370aeef25a78fccab12e016c0d047baa908e6eb077e1ae6e15b",
}


@pytest.mark.parametrize("name", sorted(TABLE_SHA256))
def test_tables_are_pinned(name):
    table = tables.exp2_table() if name == "exp2" else tables.gate_table(name)
    assert hashlib.sha256(table.astype("<i8").tobytes()).hexdigest() == TABLE_SHA256[name]


def test_table_geometry():
    assert tables.gate_table("silu").shape == (tables.ACT_SEGMENTS + 1,)
    assert tables.exp2_table()[0] == fixed.FX_ONE and tables.exp2_table()[-1] == fixed.FX_ONE // 2
    assert tables.LOG2E_FX == round(math.log2(math.e) * 65536)
    assert (tables.ACT_FRAC_BITS, tables.EXP2_FRAC_BITS) == (12, 10)


@given(st.integers(0, (1 << 31) - 1), st.sampled_from([7, 127]), st.integers(2, 24))
def test_scale_exponent_is_the_largest_that_fits(top, qmax, mbits):
    e = fixed.scale_exponent(top, qmax, mbits)
    if top:
        assert fixed.scale_mantissa(top, e, qmax) < 1 << mbits <= fixed.scale_mantissa(top, e + 1, qmax)
        m = fixed.scale_mantissa(top, e, qmax)
        assert Fraction(m, 1) >= Fraction(top, qmax) * Fraction(2) ** (e - 16) > m - 1
    else:
        assert e == 0
