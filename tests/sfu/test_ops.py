"""Every SFU operation against float64: error bounds that follow from the arithmetic.

An *ulp* here is one fx step, ``2**-16``.  Each bound is derived in its test's docstring (and in
docs/sfu.md); a change of a table, a rounding or a width that loosens an operation crosses it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsa.errors import FormatError, ShapeError
from sparsa.formats.actscale import ActScaleSpec, quantize_activations_dynamic
from sparsa.sfu import ops
from sparsa.sfu.fixed import FX_MAX, FX_MIN, FX_ONE, from_fx, to_fx

ULP = 2.0 ** -16


def fx_arrays(shape, lo=-(1 << 22), hi=1 << 22):
    return arrays(np.int64, shape, elements=st.integers(min_value=lo, max_value=hi))


rows = st.tuples(st.integers(1, 4), st.integers(1, 96))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gate(kind, x):
    if kind == "silu":
        return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    return 0.5 * (1 + _erf(x / math.sqrt(2)))


# Gate error in ulps: interpolation h**2/8 * max|g''| (h = 1/16; sigmoid'' <= 0.0962 -> 3.08,
# Phi'' <= 0.242 -> 7.7) plus the table entry's and the interpolation's roundings (0.5 each).
GATE_ULPS = {"silu": 3.08 + 1.0, "gelu": 7.7 + 1.0}


@pytest.mark.parametrize("kind", ["silu", "gelu"])
def test_activation_on_a_dense_grid(kind):
    """|y - x*g(x)| <= 0.5 ulp (final rounding) + |x| * gate error, over [-20, 20] every 7 codes."""
    xs = np.arange(-20 * FX_ONE, 20 * FX_ONE, 7, dtype=np.int64)
    x = from_fx(xs)
    err = np.abs(from_fx(ops.activation(xs, kind)) - x * gate(kind, x)) / ULP
    assert np.all(err <= 0.5 + np.abs(x) * GATE_ULPS[kind])


@settings(max_examples=60)
@given(fx_arrays(st.integers(1, 64), lo=FX_MIN, hi=FX_MAX), st.sampled_from(["silu", "gelu"]))
def test_activation_anywhere_in_range(xs, kind):
    x = from_fx(xs)
    exact = np.clip(x * gate(kind, x), from_fx(FX_MIN), from_fx(FX_MAX))
    err = np.abs(from_fx(ops.activation(xs, kind)) - exact) / ULP
    assert np.all(err <= 0.5 + np.abs(x) * GATE_ULPS[kind] + 1e-9)


def test_exp_on_a_dense_grid():
    """|exp - e**x| <= 2 ulps: the 2**-f table's interpolation (1.1 ulp) and roundings."""
    xs = np.arange(-40 * FX_ONE, 1, 3, dtype=np.int64)
    assert np.abs(from_fx(ops.exp_nonpositive(xs)) - np.exp(from_fx(xs))).max() / ULP <= 2.0
    assert ops.exp_nonpositive(np.array([0, 5 * FX_ONE])).tolist() == [FX_ONE, FX_ONE]


def _softmax_bound_ulps(x, keep):
    """Error bound of :func:`ops.softmax` in ulps.  With ``S`` = sum of ``e**(x - max)`` (>= 1)
    and ``n`` kept elements: each exponential is within 2 ulps, so ``p_i``'s numerator is off by
    2 ulps and the sum by ``2n`` ulps (a relative ``2n * 2**-16 / S``, times ``p_i``); the
    reciprocal mantissa's floor adds ``p_i * 2**-15`` (2 ulps times ``p_i``), the product's
    rounding 0.5 ulp."""
    xm = np.where(keep, x, -np.inf)
    e = np.exp(xm - xm.max(-1, keepdims=True))
    s = e.sum(-1, keepdims=True)
    p = e / s
    n = keep.sum(-1, keepdims=True)
    return p, 0.5 + (2 + 2 * n * p) / s + 2 * p + 1e-9


@settings(max_examples=80)
@given(st.integers(1, 3), st.integers(1, 200), st.data())
def test_softmax_is_a_distribution_close_to_float(t, n, data):
    """Within the derived bound of float softmax; probabilities sum to 1 within n + 2 ulps."""
    xs = data.draw(fx_arrays((t, n), lo=-(30 << 16), hi=30 << 16))
    p = ops.softmax(xs)
    ref, bound = _softmax_bound_ulps(from_fx(xs), np.ones(xs.shape, bool))
    assert np.all(np.abs(from_fx(p) - ref) / ULP <= bound)
    assert np.all(np.abs(p.sum(-1) - FX_ONE) <= n + 2)
    assert p.min() >= 0 and p.max() <= FX_ONE


@given(st.integers(1, 40), st.integers(0, 30), st.data())
def test_softmax_masks_drop_elements(t, offset, data):
    cols = offset + t
    xs = data.draw(fx_arrays((t, cols), lo=-(8 << 16), hi=8 << 16))
    keep = ops.causal_mask(t, cols, offset)
    p = ops.softmax(xs, keep)
    assert np.all(p[~keep] == 0)
    ref, bound = _softmax_bound_ulps(from_fx(xs), keep)
    assert np.all(np.abs(from_fx(p) - ref) / ULP <= bound)


def test_softmax_of_a_fully_masked_row_is_zero():
    p = ops.softmax(np.array([[1, 2], [3, 4]]), np.array([[False, False], [True, False]]))
    assert p.tolist() == [[0, 0], [FX_ONE, 0]]


def test_block_mask_expands_blocks_and_checks_the_map():
    m = ops.block_mask(np.array([[True, False], [False, True]]), 2, 3, 4)
    assert m.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]]
    with pytest.raises(ShapeError, match="needs a 2x2 block map"):
        ops.block_mask(np.ones((1, 2), bool), 2, 3, 4)


def _eps_units(xs, eps):
    """Sum of squares plus eps per row, in units of 2**-32 (the hardware's integer ``D``)."""
    return ((xs.astype(np.float64) ** 2).sum(-1, keepdims=True) + eps * xs.shape[-1] * 2.0 ** 32)


def _rms_ref(x, g, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * g


@settings(max_examples=80)
@given(rows, st.sampled_from([1e-5, 1e-6, 1e-12]), st.integers(-6, 9), st.data())
def test_rmsnorm_relative_error(shape, eps, mag, data):
    """|y - ref| <= |ref| * (2**-12 + 1/D) + |g| * 2 ulps + 1 ulp.  z's relative error: the
    reciprocal square root's floor (2**-15), the pre-shift's floor on the sum of squares (2**-14
    of the largest element's square), rounding of z (0.5 ulp); the gain product adds 0.5 ulp.
    ``D`` is the sum of squares plus eps in units of ``2**-32``: eps is an integer there, so it
    is off by up to half a unit (relative ``0.5 / D`` on the mean square, ``1 / D`` as a safe
    bound on 1/rms) - large only for rows a few ulps from zero."""
    t, n = shape
    xs = data.draw(fx_arrays((t, n), lo=-(1 << (16 + mag)), hi=1 << (16 + mag)))
    gs = data.draw(fx_arrays((n,), lo=-(4 << 16), hi=4 << 16))
    x, g = from_fx(xs), from_fx(gs)
    ref = _rms_ref(x, g, eps)
    err = np.abs(from_fx(ops.rmsnorm(xs, gs, eps)) - ref)
    assert np.all(err <= np.abs(ref) * (2.0 ** -12 + 1 / _eps_units(xs, eps)) + (np.abs(g) * 2 + 1) * ULP)


@settings(max_examples=80)
@given(rows, st.integers(-4, 8), st.data())
def test_layernorm_relative_error(shape, mag, data):
    """As rmsnorm on the centred row, plus the mean's rounding (0.5 ulp, times 1/std) and the
    bias add's saturation-free exact sum."""
    t, n = shape
    xs = data.draw(fx_arrays((t, n), lo=-(1 << (16 + mag)), hi=1 << (16 + mag)))
    gs = data.draw(fx_arrays((n,), lo=-(4 << 16), hi=4 << 16))
    bs = data.draw(fx_arrays((n,), lo=-(4 << 16), hi=4 << 16))
    x, g, b = from_fx(xs), from_fx(gs), from_fx(bs)
    c = x - x.mean(-1, keepdims=True)
    std = np.sqrt((c ** 2).mean(-1, keepdims=True) + 1e-5)
    ref = c / std * g + b
    err = np.abs(from_fx(ops.layernorm(xs, gs, bs, 1e-5)) - ref)
    cs = xs - np.round(xs.mean(-1, keepdims=True))
    assert np.all(err <= np.abs(ref - b) * (2.0 ** -12 + 1 / _eps_units(cs, 1e-5)) + (np.abs(g) * (2 + 0.5 / std) + 1) * ULP)


def test_rmsnorm_of_zeros_is_zero():
    assert ops.rmsnorm(np.zeros((2, 8), np.int64), np.full(8, FX_ONE), 1e-5).tolist() == [[0] * 8] * 2
    assert ops.rmsnorm(np.zeros((1, 8), np.int64), np.full(8, FX_ONE), 0.0).tolist() == [[0] * 8]


@settings(max_examples=60)
@given(st.integers(1, 4), st.integers(1, 5), st.sampled_from(["adjacent", "half"]), st.data())
def test_rope_rotates_pairs(t, half, pairs, data):
    """Each output is one rounding (0.5 ulp) from the rotation by the *tabled* angles; the table
    itself is within 0.5 ulp of cos/sin, adding |x| * 2**-16 per product."""
    hd = 2 * half
    xs = data.draw(fx_arrays((2, t, hd)))
    ang = data.draw(arrays(np.float64, (t, half), elements=st.floats(-100, 100)))
    c, s = to_fx(np.cos(ang)), to_fx(np.sin(ang))
    y = ops.rope(xs, c, s, pairs)
    x = from_fx(xs)
    a, b = (x[..., 0::2], x[..., 1::2]) if pairs == "adjacent" else (x[..., :half], x[..., half:])
    ya, yb = a * np.cos(ang) - b * np.sin(ang), a * np.sin(ang) + b * np.cos(ang)
    got_a, got_b = (y[..., 0::2], y[..., 1::2]) if pairs == "adjacent" else (y[..., :half], y[..., half:])
    bound = 0.5 * ULP + (np.abs(a) + np.abs(b)) * 0.5 * ULP + 1e-12
    assert np.all(np.abs(from_fx(got_a) - ya) <= bound) and np.all(np.abs(from_fx(got_b) - yb) <= bound)


@settings(max_examples=80)
@given(rows, st.sampled_from([8, 4]), st.sampled_from([("token", None), ("group", 4), ("group", 16)]),
       st.sampled_from([16, 8]), st.data())
def test_quantize_matches_the_host_quantizer(shape, bits, gran, mbits, data):
    """On chip, integer arithmetic reproduces the host's float quantizer (same exponent, same
    mantissas, codes within one step) - so compiled GEMMs see the format they were built for."""
    t, k = shape
    xs = data.draw(fx_arrays((t, k), lo=-(1 << 26), hi=1 << 26))
    spec = ActScaleSpec(gran[0], group=gran[1], mantissa_bits=mbits)
    got = ops.quantize(xs, spec, bits)
    host = quantize_activations_dynamic(from_fx(xs), spec, bits)
    qmax = (1 << (bits - 1)) - 1
    assert np.abs(got.codes).max(initial=0) <= qmax
    assert got.exponent == host.exponent and np.array_equal(got.mantissa, host.mantissa)
    assert np.abs(got.codes - host.codes).max(initial=0) <= 1
    # and the codes are the exact rounding of x / scale
    scale = np.repeat(got.scale, spec.group or k, axis=1)[:, :k]
    exact = np.where(scale > 0, from_fx(xs) / np.where(scale > 0, scale, 1), 0)
    assert np.all(np.abs(got.codes - exact) <= 0.5 + 1e-9)


def test_requantize_rounds_once_then_adds_the_bias():
    acc = np.array([[3, -3, 1000]])
    y = ops.requantize(acc, np.array([1, 1, 3]), 1, bias=np.array([0, 0, FX_MAX]))
    assert y.tolist() == [[2, -2, FX_MAX]]
    with pytest.raises(FormatError, match="mantissas must be in"):
        ops.requantize(acc, np.array([1, 1, 1 << 16]), 0)
    with pytest.raises(ShapeError, match="do not match"):
        ops.requantize(acc, np.array([1, 1]), 0)


@given(fx_arrays(st.integers(1, 32), lo=FX_MIN, hi=FX_MAX), st.data())
def test_add_and_mul_saturate(a, data):
    b = data.draw(fx_arrays(a.shape, lo=FX_MIN, hi=FX_MAX))
    assert np.array_equal(ops.add(a, b), np.clip(a + b, FX_MIN, FX_MAX))
    exact = np.array([round(x * y / 65536) for x, y in zip(a.tolist(), b.tolist())])
    assert np.array_equal(ops.mul(a, b), np.clip(exact, FX_MIN, FX_MAX))


def test_operations_refuse_non_fx_inputs():
    with pytest.raises(FormatError, match="must be integers"):
        ops.add(np.array([0.5]), np.array([1]))
    with pytest.raises(FormatError, match=r"must be in \[-2147483648, 2147483647\] \(fit 32 bits\)"):
        ops.mul(np.array([1 << 31]), np.array([1]))
    with pytest.raises(FormatError, match="activation kind must be one of silu, gelu, not 'relu'"):
        ops.activation(np.array([1]), "relu")
