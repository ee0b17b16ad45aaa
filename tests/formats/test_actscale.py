"""Activation-scale granularity (sparsa.formats.actscale): dynamic fixed-point scales."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import intq
from sparsa.formats.actscale import (ActScaleSpec, ScaledActivations, dequantize_output,
                                            quantize_activations_dynamic, scaled_accumulate,
                                            scaled_accumulator_bits, scaled_gemm_reference)

floats = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
# activations with a wide dynamic range per token (LLM-style outliers next to tiny values)
wide = st.one_of(floats, st.floats(-0.0009765625, 0.0009765625, allow_nan=False, width=32), st.just(0.0))
specs = st.one_of(
    st.builds(ActScaleSpec, st.just("token"), st.none(), st.sampled_from([2, 4, 8, 12, 16, 24])),
    st.builds(ActScaleSpec, st.just("group"), st.integers(1, 20), st.sampled_from([2, 4, 8, 12, 16, 24])),
)
activations = hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 40)), elements=wide)


def per_element_scale(q: ScaledActivations) -> np.ndarray:
    """float64 ``s_hat[t, k]`` of every code."""
    k = q.codes.shape[1]
    if q.spec.granularity == "group":
        return np.repeat(q.scale, q.spec.group, axis=1)[:, :k]
    return np.broadcast_to(q.scale, q.codes.shape)


def per_element_mantissa(q: ScaledActivations) -> np.ndarray:
    """int64 ``m[t, k]`` of every code."""
    k = q.codes.shape[1]
    if q.spec.granularity == "group":
        return np.repeat(q.mantissa, q.spec.group, axis=1)[:, :k]
    return np.broadcast_to(q.mantissa, q.codes.shape)


@settings(max_examples=150, deadline=None)
@given(x=activations, spec=specs, bits=st.sampled_from([4, 8]))
def test_codes_in_range_never_clipped_half_step_error(x: np.ndarray, spec: ActScaleSpec, bits: int) -> None:
    q = quantize_activations_dynamic(x, spec, bits)
    t, k = x.shape
    lo, qmax = intq.int_range(bits)
    assert q.codes.shape == (t, k) and q.codes.dtype == np.int64
    assert q.mantissa.shape == (t, spec.groups(k)) and q.mantissa.dtype == np.int64
    assert q.codes.min() >= lo and q.codes.max() <= qmax
    assert q.mantissa.min() >= 0 and q.mantissa.max() < 2**spec.mantissa_bits
    s = per_element_scale(q)
    x64 = x.astype(np.float64)
    # s_hat is rounded up: no element lies beyond the largest code (never clipped)
    assert np.all(np.abs(x64) <= s * qmax)
    # so the dequantized error is at most half a step everywhere
    assert np.all(np.abs(q.codes * s - x64) <= s / 2)
    # the largest scale uses the mantissa's range: the exponent is as large as it can be
    if q.mantissa.max() > 0:
        assert q.mantissa.max() > (2**spec.mantissa_bits - 1) // 2
    # an all-zero unit has mantissa 0 and codes 0; a nonzero unit a nonzero mantissa
    units_zero = np.all(x64 == 0, axis=1) if spec.granularity == "token" else None
    if units_zero is not None:
        assert np.array_equal(q.mantissa[:, 0] == 0, units_zero)
    assert q.scale_bytes == t * spec.groups(k) * -(-spec.mantissa_bits // 8)


@settings(max_examples=100, deadline=None)
@given(x=activations, spec=specs, bits=st.sampled_from([4, 8]), seed=st.integers(0, 2**16),
       n=st.integers(1, 5))
def test_scaled_gemm_is_the_exact_dequantized_product(x: np.ndarray, spec: ActScaleSpec, bits: int, seed: int,
                                                      n: int) -> None:
    q = quantize_activations_dynamic(x, spec, bits)
    w = np.random.default_rng(seed).integers(-127, 128, size=(n, x.shape[1]))
    acc = scaled_gemm_reference(q, w)
    # integer identity: acc[t, n] = sum_k codes[t, k] * m[t, g(k)] * w[n, k]
    expect = (q.codes.astype(object) * per_element_mantissa(q).astype(object)) @ w.T.astype(object)
    assert np.array_equal(np.asarray(acc, dtype=object), expect)
    # exact rationals: acc * 2**-e == sum_k codes * w * s_hat (s_hat = m * 2**-e)
    e = Fraction(2) ** -q.exponent
    m = per_element_mantissa(q)
    for ti in range(x.shape[0]):
        for ni in range(n):
            exact = sum(Fraction(int(q.codes[ti, ki]) * int(w[ni, ki])) * int(m[ti, ki]) * e
                        for ki in range(x.shape[1]))
            assert Fraction(int(acc[ti, ni])) * e == exact
    # float output: dequantize_output = (codes * s_hat) @ (w * ws).T (to float64 rounding)
    ws = np.linspace(0.5, 2.0, n)
    y = dequantize_output(acc, q, ws)
    ref = (q.codes * per_element_scale(q)) @ (w * ws[:, None]).T
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(x=activations, extra=st.integers(0, 7), bits=st.sampled_from([4, 8]), mb=st.sampled_from([4, 16]))
def test_token_equals_group_wider_than_k(x: np.ndarray, extra: int, bits: int, mb: int) -> None:
    tok = quantize_activations_dynamic(x, ActScaleSpec("token", mantissa_bits=mb), bits)
    grp = quantize_activations_dynamic(x, ActScaleSpec("group", group=x.shape[1] + extra, mantissa_bits=mb), bits)
    assert np.array_equal(tok.codes, grp.codes) and np.array_equal(tok.mantissa, grp.mantissa)
    assert tok.exponent == grp.exponent
    w = np.arange(3 * x.shape[1]).reshape(3, -1) % 15 - 7
    assert np.array_equal(scaled_gemm_reference(tok, w), scaled_gemm_reference(grp, w))


@pytest.mark.parametrize("spec", [ActScaleSpec("token"), ActScaleSpec("group", group=4)])
def test_zero_rows_and_zero_tensors(spec: ActScaleSpec) -> None:
    x = np.zeros((3, 10), np.float32)
    x[1, 2] = -5.0
    q = quantize_activations_dynamic(x, spec, 8)
    assert not q.codes[0].any() and not q.codes[2].any() and q.codes[1, 2] == -127
    assert not q.mantissa[0].any() and not q.mantissa[2].any()
    z = quantize_activations_dynamic(np.zeros((2, 10), np.float32), spec, 4)
    assert not z.codes.any() and not z.mantissa.any() and z.exponent == 0
    assert not np.any(scaled_gemm_reference(z, np.ones((2, 10), np.int64)))
    empty = quantize_activations_dynamic(np.zeros((0, 10), np.float32), spec, 8)
    assert empty.codes.shape == (0, 10) and empty.exponent == 0


def test_group_padding_and_known_values() -> None:
    x = np.array([[1.0, -2.0, 0.5, 100.0, 3.0]], np.float32)
    q = quantize_activations_dynamic(x, ActScaleSpec("group", group=2, mantissa_bits=8), 8)
    assert q.mantissa.shape == (1, 3)                    # groups [0,1] [2,3] [4] (last one short)
    # group [2,3] has the largest scale 100/127: e is the largest with ceil(s * 2**e) <= 255
    assert q.exponent == 8 and q.mantissa[0, 1] == int(np.ceil(100 / 127 * 256))
    assert q.codes[0, 3] == 127 - (0 if q.mantissa[0, 1] * 127 / 256 <= 100.5 else 1)
    # the small groups share that exponent: their 8-bit mantissas are short and rounded up, so their
    # codes do not reach 127 (the precision cost of one shared exponent with few mantissa bits)
    assert q.mantissa[0].tolist() == [5, 202, 7]        # ceil(2/127*256), ceil(100/127*256), ceil(3/127*256)
    assert q.codes[0].tolist() == [51, -102, 1, 127, 110]


def test_huge_and_tiny_scales_in_one_tensor() -> None:
    # one token's scale is 2**-30 of another's: its mantissa underflows to the minimum 1, it is still
    # quantized with that (larger) scale and never clipped
    x = np.array([[1e6, -3e5], [1e-3, 2e-3]], np.float32)
    q = quantize_activations_dynamic(x, ActScaleSpec("token", mantissa_bits=8), 8)
    assert q.mantissa[1, 0] == 1 and q.codes[1].tolist() == [0, 0]
    assert np.all(np.abs(q.codes * q.scale - x) <= q.scale / 2)


def test_scaled_accumulator_bits_is_a_tight_bound() -> None:
    assert scaled_accumulator_bits(24, ActScaleSpec("tensor"), 5) == 24
    for acc_bits, mb, groups in ((24, 16, 1), (20, 8, 12), (32, 24, 3)):
        spec = ActScaleSpec("token", mantissa_bits=mb) if groups == 1 else ActScaleSpec("group", 4, mb)
        bits = scaled_accumulator_bits(acc_bits, spec, groups)
        worst = -(2 ** (acc_bits - 1)) * (2**mb - 1) * groups          # most negative sum
        assert -(2 ** (bits - 1)) <= worst and not -(2 ** (bits - 2)) <= worst
        best = (2 ** (acc_bits - 1) - 1) * (2**mb - 1) * groups
        assert best <= 2 ** (bits - 1) - 1


def test_scaled_accumulate_falls_back_to_python_ints() -> None:
    p = np.full((2, 1, 1), 2**40, dtype=np.int64)
    m = np.full((1, 2), 2**23, dtype=np.int64)
    out = scaled_accumulate(p, m)
    assert out.dtype == object and int(out[0, 0]) == 2**64


@pytest.mark.parametrize("kwargs,message", [
    (dict(granularity="channel"), "granularity must be one of tensor, token, group, not 'channel'"),
    (dict(granularity="group"), "needs a positive int group, not None"),
    (dict(granularity="group", group=0), "needs a positive int group, not 0"),
    (dict(granularity="group", group=True), "needs a positive int group, not True"),
    (dict(granularity="token", group=8), "group=8 is only used with granularity 'group', not 'token'"),
    (dict(granularity="token", mantissa_bits=1), "mantissa_bits must be an int in 2..24, not 1"),
    (dict(granularity="token", mantissa_bits=25), "mantissa_bits must be an int in 2..24, not 25"),
    (dict(granularity="token", mantissa_bits=16.0), "mantissa_bits must be an int in 2..24, not 16.0"),
])
def test_bad_specs_are_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(FormatError) as info:
        ActScaleSpec(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_arguments_are_one_line() -> None:
    tok = ActScaleSpec("token")
    cases = [
        (lambda: quantize_activations_dynamic(np.ones((2, 3)), ActScaleSpec("tensor"), 8), FormatError,
         "granularity 'tensor' uses a static calibrated scale"),
        (lambda: quantize_activations_dynamic(np.ones(3), tok, 8), ShapeError, "not shape (3,)"),
        (lambda: quantize_activations_dynamic(np.array([[1.0, np.nan]]), tok, 8, name="fc input"), FormatError,
         "fc input: non-finite value nan at index (0, 1)"),
        (lambda: quantize_activations_dynamic(np.ones((2, 3)), tok, 1), FormatError, "not 1"),
        (lambda: scaled_gemm_reference(quantize_activations_dynamic(np.ones((2, 3)), tok, 8), np.ones((4, 5))),
         ShapeError, "weights [N, K] (4, 5) do not match activations [T, K] (2, 3)"),
        (lambda: scaled_accumulate(np.ones((2, 3, 4)), np.ones((3, 3))), ShapeError,
         "partials [G, T, N] (2, 3, 4) do not match mantissas [T, G] (3, 3)"),
    ]
    for fn, exc, message in cases:
        with pytest.raises(exc) as info:
            fn()
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
