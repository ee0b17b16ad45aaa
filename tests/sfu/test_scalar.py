"""The scalar unit's contract: scalar_reference is the fixed.py functions on the documented domains,
refuses operands outside them in one line, and SCALAR_CYCLES covers every operation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsa.errors import FormatError
from sparsa.sfu.fixed import normalized_reciprocal, normalized_rsqrt, rne_div, scale_exponent, scale_mantissa
from sparsa.sfu.fixed import FX_MIN
from sparsa.sfu.ops import rmsnorm
from sparsa.sfu.scalar import (
    DIV_NUM_RANGE,
    MANTISSA_BITS_RANGE,
    QMANT_M_LIMIT,
    QMAX_RANGE,
    RECIP_D_RANGE,
    ROW_N_RANGE,
    RSQRT_D_RANGE,
    SCALE_E_RANGE,
    SCALE_TOP_RANGE,
    ScalarOp,
    ScalarResult,
    scalar_reference,
)
from sparsa.sfu.timing import SCALAR_CYCLES


def ints(bounds):
    lo, hi = bounds
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))


@given(ints(RECIP_D_RANGE))
def test_recip_is_normalized_reciprocal(d):
    assert scalar_reference(ScalarOp.RECIP, d=d) == ScalarResult(*normalized_reciprocal(d), 0)


@given(ints((1, RSQRT_D_RANGE[1])), ints(ROW_N_RANGE))
def test_rsqrt_is_normalized_rsqrt(d, n):
    m, e = normalized_rsqrt(d, n)
    assert scalar_reference(ScalarOp.RSQRT, d=d, n=n) == (m, e, 0)
    assert 7 <= e <= 39                     # the exponents the gateware's fixed quotient covers


def test_rsqrt_of_zero_is_zero_as_the_norms_take_it():
    assert RSQRT_D_RANGE[0] == 0
    assert scalar_reference(ScalarOp.RSQRT, d=0, n=768) == (0, 0, 0)
    # a zero row with eps = 0: rmsnorm gives zeros
    assert not rmsnorm(np.zeros((1, 8), dtype=np.int64), np.full(8, 1 << 16), 0.0).any()


@given(ints(DIV_NUM_RANGE), ints(ROW_N_RANGE))
def test_div_is_rne_div(num, n):
    assert scalar_reference(ScalarOp.DIV, d=num, n=n) == (0, 0, int(rne_div(np.int64(num), np.int64(n))))


@given(ints(SCALE_TOP_RANGE), ints(QMAX_RANGE), ints(MANTISSA_BITS_RANGE))
def test_expo_is_scale_exponent_within_the_qmant_range(top, qmax, mb):
    e = scale_exponent(top, qmax, mb)
    assert scalar_reference(ScalarOp.EXPO, d=top, qmax=qmax, mantissa_bits=mb) == (0, e, 0)
    assert SCALE_E_RANGE[0] <= e <= SCALE_E_RANGE[1]
    # and QMANT of that exponent takes every unit maximum up to top
    assert scalar_reference(ScalarOp.QMANT, d=top, e=e, qmax=qmax).m == scale_mantissa(top, e, qmax) < 1 << mb


def test_scale_e_range_is_what_expo_returns():
    assert scale_exponent(1 << 31, 1, 2) == SCALE_E_RANGE[0]
    # |FX_MIN| is a tensor maximum quantize can see
    assert SCALE_TOP_RANGE[1] == -FX_MIN
    assert scale_exponent(1, 127, 24) == SCALE_E_RANGE[1]


@given(ints(SCALE_TOP_RANGE), ints(SCALE_E_RANGE), ints(QMAX_RANGE))
def test_qmant_is_scale_mantissa(amax, e, qmax):
    m = scale_mantissa(amax, e, qmax)
    if m < QMANT_M_LIMIT:
        assert scalar_reference(ScalarOp.QMANT, d=amax, e=e, qmax=qmax) == (m, 0, 0)
    else:
        with pytest.raises(FormatError, match=rf"^scalar QMANT: m={m} \(d={amax}, e={e}, qmax={qmax}\) "
                                              rf"is outside \[0, {QMANT_M_LIMIT - 1}\]$"):
            scalar_reference(ScalarOp.QMANT, d=amax, e=e, qmax=qmax)


def test_ops_ignore_operands_they_do_not_read():
    assert scalar_reference(ScalarOp.RECIP, d=3, n=0, qmax=0, mantissa_bits=0, e=999) == \
        scalar_reference(ScalarOp.RECIP, d=3)
    assert scalar_reference(ScalarOp.DIV, d=-7, n=2, qmax=0) == (0, 0, -4)
    assert scalar_reference(int(ScalarOp.EXPO), d=0, qmax=7, mantissa_bits=8) == (0, 0, 0)


@pytest.mark.parametrize("op,operands,name,value,bounds", [
    (ScalarOp.RECIP, {"d": 0}, "d", 0, RECIP_D_RANGE),
    (ScalarOp.RECIP, {"d": 1 << 40}, "d", 1 << 40, RECIP_D_RANGE),
    (ScalarOp.RSQRT, {"d": 1 << 48, "n": 1}, "d", 1 << 48, RSQRT_D_RANGE),
    (ScalarOp.RSQRT, {"d": -1, "n": 1}, "d", -1, RSQRT_D_RANGE),
    (ScalarOp.RSQRT, {"d": 5, "n": 0}, "n", 0, ROW_N_RANGE),
    (ScalarOp.RSQRT, {"d": 5, "n": (1 << 16) + 1}, "n", (1 << 16) + 1, ROW_N_RANGE),
    (ScalarOp.DIV, {"d": 1 << 48, "n": 3}, "d", 1 << 48, DIV_NUM_RANGE),
    (ScalarOp.DIV, {"d": -(1 << 48) - 1, "n": 3}, "d", -(1 << 48) - 1, DIV_NUM_RANGE),
    (ScalarOp.DIV, {"d": 5, "n": 0}, "n", 0, ROW_N_RANGE),
    (ScalarOp.EXPO, {"d": -1}, "d", -1, SCALE_TOP_RANGE),
    (ScalarOp.EXPO, {"d": (1 << 31) + 1}, "d", (1 << 31) + 1, SCALE_TOP_RANGE),
    (ScalarOp.EXPO, {"d": 5, "qmax": 0}, "qmax", 0, QMAX_RANGE),
    (ScalarOp.EXPO, {"d": 5, "qmax": 128}, "qmax", 128, QMAX_RANGE),
    (ScalarOp.EXPO, {"d": 5, "mantissa_bits": 1}, "mantissa_bits", 1, MANTISSA_BITS_RANGE),
    (ScalarOp.EXPO, {"d": 5, "mantissa_bits": 25}, "mantissa_bits", 25, MANTISSA_BITS_RANGE),
    (ScalarOp.QMANT, {"d": 5, "e": 47}, "e", 47, SCALE_E_RANGE),
    (ScalarOp.QMANT, {"d": 5, "e": -15}, "e", -15, SCALE_E_RANGE),
    (ScalarOp.QMANT, {"d": 5, "qmax": 0}, "qmax", 0, QMAX_RANGE),
])
def test_refusals_name_operand_value_and_range(op, operands, name, value, bounds):
    with pytest.raises(FormatError) as info:
        scalar_reference(op, **operands)
    message = str(info.value)
    assert message == f"scalar {op.name}: {name}={value} is outside [{bounds[0]}, {bounds[1]}]"
    assert "\n" not in message


def test_bad_op_and_operand_types():
    with pytest.raises(FormatError, match=r"^scalar op must be one of \['RECIP', .*'QMANT'\], not 9$"):
        scalar_reference(9, d=1)
    with pytest.raises(FormatError, match=r"^scalar operand d must be an integer, not 1\.5$"):
        scalar_reference(ScalarOp.RECIP, d=1.5)
    with pytest.raises(FormatError, match="operand n must be an integer, not True"):
        scalar_reference(ScalarOp.RSQRT, d=1, n=True)
    assert scalar_reference(ScalarOp.RECIP, d=np.int64(3)) == scalar_reference(ScalarOp.RECIP, d=3)


def test_scalar_cycles_cover_every_op():
    assert set(SCALAR_CYCLES) == set(ScalarOp)
    assert all(isinstance(c, int) and c > 0 for c in SCALAR_CYCLES.values())
    assert [int(op) for op in ScalarOp] == list(range(5))
