"""Symmetric intN, flint4, granularities and MSE scale search."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import intq

floats = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


def test_int_ranges() -> None:
    assert intq.int_range(4) == (-7, 7)
    assert intq.int_range(4, narrow=False) == (-8, 7)
    assert intq.int_range(8) == (-127, 127)
    assert intq.int_range(8, narrow=False) == (-128, 127)
    for bad in (1, 17, 4.0, True, "4"):
        with pytest.raises(FormatError, match="integer width must be an int in 2..16"):
            intq.int_range(bad)  # type: ignore[arg-type]


def test_round_half_to_even_and_clip() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 6.5, 7.6, -9.0], np.float32)
    assert intq.quantize_int(x, 1.0, 4).tolist() == [0, 2, 2, 0, -2, 6, 7, -7]
    assert intq.quantize_int(x, 1.0, 4, narrow=False).tolist() == [0, 2, 2, 0, -2, 6, 7, -8]
    assert intq.quantize_int(x, 1.0, 4).dtype == np.int8
    assert intq.quantize_int(x, 1.0, 12).dtype == np.int16


@settings(max_examples=100, deadline=None)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=floats),
    bits=st.sampled_from([2, 3, 4, 8]),
    narrow=st.booleans(),
)
def test_codes_in_range_and_dequant_consistent(x: np.ndarray, bits: int, narrow: bool) -> None:
    s = intq.absmax_scale(x, intq.int_range(bits, narrow=narrow)[1], "row")
    codes = intq.quantize_int(x, s, bits, narrow=narrow)
    lo, hi = intq.int_range(bits, narrow=narrow)
    assert codes.min() >= lo and codes.max() <= hi
    deq = intq.dequantize_int(codes, s)
    assert np.array_equal(deq, intq.fake_quant_int(x, s, bits, narrow=narrow))
    # max-abs scaling never clips: the error is at most half a step
    assert np.all(np.abs(deq - x) <= s * 0.5 * (1 + 1e-5) + 1e-30)


def test_flint4_grid_codes_and_ties() -> None:
    assert intq.FLINT4_MAGNITUDES == (0, 1, 2, 3, 4, 6, 8, 16)
    grid = np.array([0, 1, 2, 3, 4, 6, 8, 16], np.float32)
    codes = intq.quantize_flint4(np.concatenate([grid, -grid[1:]]), 1.0)
    assert codes.tolist() == list(range(8)) + [9, 10, 11, 12, 13, 14, 15]
    assert 8 not in intq.quantize_flint4(np.linspace(-20, 20, 401, dtype=np.float32), 1.0)
    assert intq.decode_flint4(np.arange(16)).tolist() == [0, 1, 2, 3, 4, 6, 8, 16, 0, -1, -2, -3, -4, -6, -8, -16]
    ties = np.array([0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 12.0, 40.0], np.float32)
    assert intq.decode_flint4(intq.quantize_flint4(ties, 1.0)).tolist() == [0, 2, 2, 4, 4, 8, 8, 16]
    x = np.array([0.3, -5.2, 11.0], np.float32)
    assert np.array_equal(intq.fake_quant_flint4(x, np.float32(0.5)), intq.dequantize_flint4(intq.quantize_flint4(x, 0.5), 0.5))
    with pytest.raises(FormatError, match="flint4 codes must be 0..15"):
        intq.decode_flint4(np.array([16]))


@settings(max_examples=100, deadline=None)
@given(x=hnp.arrays(np.float32, (3, 8), elements=floats), scale=st.floats(0.01, 50))
def test_flint4_is_nearest_grid_point(x: np.ndarray, scale: float) -> None:
    s = np.float32(scale)
    vals = intq.decode_flint4(intq.quantize_flint4(x, s))
    grid = np.array([-16, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 16], np.float64)
    v = (x / s).astype(np.float64)
    best = np.min(np.abs(v[..., None] - grid), axis=-1)
    assert np.allclose(np.abs(v - vals), best, atol=1e-4)


def test_granularities() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 12) - 5
    assert intq.absmax_scale(x, 7, "tensor").shape == ()
    assert intq.absmax_scale(x, 7, "row").shape == (2, 1)
    g = intq.absmax_scale(x, 7, "group", 4)
    assert g.shape == (2, 3)
    assert np.allclose(g[0], [5 / 7, 2 / 7, 6 / 7])
    full = intq.expand_scale(g, "group", 4)
    assert full.shape == (2, 12)
    assert intq.scale_shape((2, 12), "group", 4) == (2, 3)
    with pytest.raises(ShapeError, match="not a multiple of group_size 5"):
        intq.absmax_scale(x, 7, "group", 5)
    with pytest.raises(FormatError, match="group_size must be a positive int"):
        intq.absmax_scale(x, 7, "group", 0)
    with pytest.raises(FormatError, match="granularity must be"):
        intq.absmax_scale(x, 7, "channel")  # type: ignore[arg-type]


def test_zero_rows_get_unit_scale() -> None:
    x = np.zeros((2, 4), np.float32)
    x[1, 1] = 3.5
    s = intq.absmax_scale(x, 7)
    assert s[0, 0] == 1.0 and s[1, 0] == 0.5
    assert np.all(intq.quantize_int(x, s, 4)[0] == 0)
    assert intq.search_int_scale(x, 4)[0, 0] == 1.0


@settings(max_examples=80, deadline=None)
@given(
    x=hnp.arrays(np.float32, (3, 16), elements=floats),
    bits=st.sampled_from([4, 8]),
    gran=st.sampled_from(["tensor", "row", "group"]),
)
def test_search_never_worse_than_max_abs(x: np.ndarray, bits: int, gran: str) -> None:
    gs = 4 if gran == "group" else None
    best = intq.search_int_scale(x, bits, gran, gs)  # type: ignore[arg-type]
    ref = intq.absmax_scale(x, intq.int_range(bits)[1], gran, gs)  # type: ignore[arg-type]

    def mse(s: np.ndarray) -> np.ndarray:
        y = intq.fake_quant_int(x, intq.expand_scale(s, gran, gs), bits)  # type: ignore[arg-type]
        return intq.mse_per_unit(y, x, gran, gs)  # type: ignore[arg-type]

    assert np.all(mse(best) <= mse(ref))


def test_search_clips_outliers_when_it_pays() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 4096)).astype(np.float32)  # max ~3.7 sigma; MSE-optimal int4 clip ~2.5 sigma
    best = intq.search_int_scale(x, 4)
    assert np.all(best < intq.absmax_scale(x, 7))


def test_errors_quote_bad_values() -> None:
    with pytest.raises(FormatError, match=r"w0: non-finite value nan at index \(0, 1\)"):
        intq.quantize_int(np.array([[1.0, np.nan]], np.float32), 1.0, 4, name="w0")
    with pytest.raises(FormatError, match="scales must be finite and > 0, got -2.0"):
        intq.quantize_int(np.ones(3, np.float32), -2.0, 4)
    with pytest.raises(FormatError, match="expected a real numeric array"):
        intq.check_finite(np.array(["a"]), "t")
    with pytest.raises(FormatError, match="positive numbers"):
        intq.search_int_scale(np.ones((1, 4), np.float32), 4, factors=[-1.0])
    with pytest.raises(FormatError, match="at least one candidate"):
        intq.mse_search_scale(np.ones((1, 4), np.float32), lambda a, s: a, [])
    with pytest.raises(FormatError, match="qmax must be > 0"):
        intq.absmax_scale(np.ones(4, np.float32), 0)
