"""The special-function unit's operations: the NumPy definition of every output bit.

Each function takes and returns ``int64`` arrays of fx codes (:mod:`sparsa.sfu.fixed`) unless it
says otherwise; rows are the leading axes, a row's elements the last axis.  The ISA interpreter,
the cycle model and the RTL must equal these functions bit for bit; docs/sfu.md explains the
choices and tests/sfu/ bounds each one's error against float64.

Element-wise operations (the vector lanes, one element per lane per cycle):

========================  ==================================================================
:func:`requantize`        accumulator sums -> fx with per-channel weight-scale mantissas
:func:`requantize_rows`   raw dot products -> fx with a per-row and a per-channel mantissa and a
                          per-row exponent (one rounding)
:func:`add`, :func:`mul`  residual add, element-wise product (SwiGLU gate, norm gain)
:func:`activation`        SiLU and GELU: ``x * g(x)``, ``g`` from a table with interpolation
:func:`exp_nonpositive`   ``e**x`` for ``x <= 0`` via ``2**-f`` tables
:func:`rope`              rotate pairs by fx cos/sin tables
========================  ==================================================================

Row operations (a reduction, one scalar step per row, then an element-wise pass):

========================  ==================================================================
:func:`quantize`          dynamic per-token / per-group activation scales and int codes
:func:`quantize_rows`     the same with one exponent per row (each row quantized alone)
:func:`softmax`           row max, exponentials, sum, reciprocal, product; masks
:func:`rmsnorm`           mean square, reciprocal square root, gain
:func:`layernorm`         mean, centring, then as rmsnorm plus a bias
========================  ==================================================================
"""

from __future__ import annotations

import numpy as np

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import intq
from sparsa.formats.actscale import ActScaleSpec, ScaledActivations, scale_units
from sparsa.sfu.fixed import (
    FX_FRAC,
    FX_ONE,
    as_fx,
    normalized_reciprocal,
    normalized_rsqrt,
    rne_div,
    rne_shift,
    saturate_fx,
    scale_exponent,
    shift_saturate_fx,
    scale_mantissa,
)
from sparsa.sfu.tables import (
    ACT_FRAC_BITS,
    ACT_RANGE,
    ACT_SEGMENTS,
    EXP2_FRAC_BITS,
    EXP2_SEGMENTS,
    GATES,
    LOG2E_FX,
    exp2_table,
    gate_table,
    interpolate,
)

__all__ = [
    "REQUANT_ACC_BITS",
    "SCALE_MANT_BITS",
    "ROW_MANT_BITS",
    "ROW_SHIFT_RANGE",
    "requantize",
    "requantize_rows",
    "quantize",
    "quantize_rows",
    "quantize_static",
    "add",
    "mul",
    "activation",
    "exp_nonpositive",
    "softmax",
    "causal_mask",
    "block_mask",
    "rmsnorm",
    "rmsnorm_code",
    "layernorm",
    "layernorm_code",
    "rope",
    "norm_eps_code",
    "presum_shift",
]

#: Widest accumulator sum :func:`requantize` accepts (the product with a 16-bit mantissa stays
#: below ``2**62``).
REQUANT_ACC_BITS = 46
#: Width of a weight-scale mantissa (unsigned).
SCALE_MANT_BITS = 16
#: Width of :func:`requantize_rows`' row and column mantissas (unsigned): their product is
#: exact in 32 bits, its product with an fx value below ``2**63``.
ROW_MANT_BITS = 16
#: The shifts :func:`requantize_rows` applies: ``shift + e[t]`` is clamped into this range.
ROW_SHIFT_RANGE = (-64, 63)


_fx = as_fx


def requantize(acc: np.ndarray, mantissa: np.ndarray, shift: int, bias: np.ndarray | None = None) -> np.ndarray:
    """Accumulator sums -> fx: ``sat(rne_shift(acc * mantissa[n], shift) + bias[n])``.

    The weight scales' hardware format is the activation scales' (:mod:`sparsa.formats.actscale`):
    an unsigned ``SCALE_MANT_BITS``-bit mantissa per output channel and one exponent per tensor,
    ``w_scale[n] ~ mantissa[n] * 2**-e_w``.  With activations at ``m * 2**-e_a`` already applied
    in the accumulator, ``real = acc * 2**-e_a * w_scale[n]``, so ``shift = e_a + e_w - 16``
    (negative: a left shift).  The sum is rounded once, before the (saturating) bias add.

    Parameters
    ----------
    acc : int64 array ``[..., N]``
        Integer sums, ``|acc| < 2**REQUANT_ACC_BITS``.
    mantissa : int array ``[N]``
        Per-channel mantissas in ``[0, 2**16)``.
    shift : int
        Right shift applied after the product.
    bias : int64 array ``[N]``, optional
        fx bias added after rounding (saturating).
    """
    a = np.asarray(acc, dtype=np.int64)
    m = np.asarray(mantissa, dtype=np.int64)
    if m.ndim != 1 or m.shape[0] != a.shape[-1]:
        raise ShapeError(f"requantize: mantissas {m.shape} do not match the sums' last axis {a.shape}")
    if m.size and (m.min() < 0 or m.max() >= 1 << SCALE_MANT_BITS):
        raise FormatError(f"requantize: mantissas must be in [0, 2**{SCALE_MANT_BITS}), got "
                          f"[{m.min()}, {m.max()}]")
    if a.size and np.abs(a).max() >= 1 << REQUANT_ACC_BITS:
        raise FormatError(f"requantize: sums must be below 2**{REQUANT_ACC_BITS} in magnitude")
    y = shift_saturate_fx(a * m, int(shift))
    if bias is not None:
        y = saturate_fx(y + _fx(bias, "requantize bias"))
    return y


def requantize_rows(acc: np.ndarray, row_mant: np.ndarray, row_exp: np.ndarray, mantissa: np.ndarray,
                    shift: int) -> np.ndarray:
    """Raw dot products -> fx with a per-row scale: ``shift_saturate_fx(acc[t, o] * (row_mant[t] *
    mantissa[o]), clamp(shift + row_exp[t], -64, 63))``.

    A linear layer whose activations are quantized per token (:func:`quantize_rows`: mantissa
    ``m[t]``, exponent ``e[t]``) and whose weights have per-channel mantissas ``w[o]`` and one
    exponent ``e_w`` gives ``requantize(m[t] * dot[t], w, e[t] + e_w - 16)`` per row; the integer
    product ``dot * (m * w)`` is the same, so this is that result bit for bit with
    ``acc = dot`` (raw sums, 32 bits) and ``shift = e_w - 16``, rounded once.  Every shift in
    ``[-64, 63]`` is the true value of the rounded, saturated quotient; a shift below ``-64``
    is the value at ``-64`` (also the true one: every nonzero product saturates); a shift
    above 63 is the value at 63 (where the true quotient of a product above ``2**62`` would
    round to 0, this gives ``+-1``).

    Parameters
    ----------
    acc : int64 array ``[T, N]``
        Raw integer sums, 32-bit (``-2**31 <= acc < 2**31``).
    row_mant : int array ``[T]``
        Per-row mantissas in ``[0, 2**ROW_MANT_BITS)``.
    row_exp : int array ``[T]``
        Per-row exponents (32-bit).
    mantissa : int array ``[N]``
        Per-channel mantissas in ``[0, 2**ROW_MANT_BITS)``.
    shift : int
        Added to each row's exponent (``e_w - 16``).
    """
    a = _fx(acc, "requantize_rows sums")
    if a.ndim != 2:
        raise ShapeError(f"requantize_rows: sums must be [rows, n], not shape {a.shape}")
    rm, re_ = np.asarray(row_mant, dtype=np.int64), np.asarray(row_exp, dtype=np.int64)
    cm = np.asarray(mantissa, dtype=np.int64)
    if rm.shape != a.shape[:1] or re_.shape != a.shape[:1] or cm.shape != a.shape[1:]:
        raise ShapeError(f"requantize_rows: sums {a.shape} need row mantissas and exponents [{a.shape[0]}] and "
                         f"channel mantissas [{a.shape[1]}], not {rm.shape}, {re_.shape}, {cm.shape}")
    for name, v in (("row", rm), ("channel", cm)):
        if v.size and (v.min() < 0 or v.max() >= 1 << ROW_MANT_BITS):
            raise FormatError(f"requantize_rows: {name} mantissas must be in [0, 2**{ROW_MANT_BITS}), got "
                              f"[{v.min()}, {v.max()}]")
    if re_.size and (re_.min() < -(1 << 31) or re_.max() >= 1 << 31):
        raise FormatError(f"requantize_rows: row exponents must be 32-bit, got [{re_.min()}, {re_.max()}]")
    s = np.clip(int(shift) + re_, *ROW_SHIFT_RANGE)
    return shift_saturate_fx(a * (rm[:, None] * cm[None, :]), s[:, None])


def _divide_codes(x: np.ndarray, per_elem_mant: np.ndarray, e: int, qmax: int) -> np.ndarray:
    """``clip(rne(x / (m * 2**(16-e))), -qmax, qmax)``; 0 where ``m`` is 0."""
    safe = np.where(per_elem_mant > 0, per_elem_mant, 1)
    if e >= FX_FRAC:
        q = rne_div(x << (e - FX_FRAC), safe)
    else:
        q = rne_div(x, safe << (FX_FRAC - e))
    return np.where(per_elem_mant > 0, np.clip(q, -qmax, qmax), 0)


def quantize(x: np.ndarray, spec: ActScaleSpec, bits: int) -> ScaledActivations:
    """fx activations -> int codes with dynamic per-token or per-group fixed-point scales, on chip.

    For every scale unit (a row, or ``spec.group`` elements of a row) ``amax = max |x|``; the
    shared exponent ``e`` is the largest integer with
    ``ceil(max(amax) * 2**(e-16) / qmax) < 2**mantissa_bits``; each unit's mantissa is
    ``m = ceil(amax * 2**(e-16) / qmax)`` (rounded *up*: no code clips), and each code is
    ``rne(x / (m * 2**(16-e)))`` - an exact rounding division.  The real scale is ``m * 2**-e``,
    the format of :class:`~sparsa.formats.actscale.ScaledActivations`.

    Parameters
    ----------
    x : int64 array ``[T, K]``
        fx activations.
    spec : ActScaleSpec
        ``token`` or ``group`` granularity (``tensor`` scales are static: :func:`quantize_static`).
    bits : int
        Code width (8 or 4): codes in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``.
    """
    if not spec.dynamic:
        raise FormatError("quantize: granularity 'tensor' is a static scale; use quantize_static")
    xa = _fx(x, "quantize input")
    if xa.ndim != 2:
        raise ShapeError(f"quantize: activations must be [tokens, k], not shape {xa.shape}")
    _, qmax = intq.int_range(bits)
    units = scale_units(xa, spec)
    amax = np.abs(units).max(axis=-1)                                    # [T, G]
    e = scale_exponent(int(amax.max()) if amax.size else 0, qmax, spec.mantissa_bits)
    mant = np.vectorize(lambda a: scale_mantissa(int(a), e, qmax), otypes=[np.int64])(amax)
    per_elem = np.repeat(mant, units.shape[-1], axis=-1)[..., : xa.shape[-1]]
    codes = _divide_codes(xa, per_elem, e, qmax)
    return ScaledActivations(codes.astype(np.int64), mant.astype(np.int64), e, spec)


def quantize_rows(x: np.ndarray, spec: ActScaleSpec, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`quantize` of each row alone: every row its own exponent, so row ``t``'s codes,
    mantissas and exponent are a function of row ``t`` only.

    Parameters
    ----------
    x : int64 array ``[T, K]``
        fx activations.
    spec : ActScaleSpec
        ``token`` or ``group`` granularity.
    bits : int
        Code width (8 or 4).

    Returns
    -------
    (codes ``[T, K]``, mantissas ``[T, G]``, exponents ``[T]``), int64.
    """
    if not spec.dynamic:
        raise FormatError("quantize_rows: granularity 'tensor' is a static scale; use quantize_static")
    xa = _fx(x, "quantize input")
    if xa.ndim != 2:
        raise ShapeError(f"quantize_rows: activations must be [tokens, k], not shape {xa.shape}")
    parts = [quantize(xa[t:t + 1], spec, bits) for t in range(xa.shape[0])]
    codes = np.zeros(xa.shape, dtype=np.int64)
    mant = np.zeros((xa.shape[0], spec.groups(xa.shape[1])), dtype=np.int64)
    for t, q in enumerate(parts):
        codes[t], mant[t] = q.codes[0], q.mantissa[0]
    return codes, mant, np.array([q.exponent for q in parts], dtype=np.int64)


def quantize_static(x: np.ndarray, mantissa: int, exponent: int, bits: int, qmax: "int | None" = None) -> np.ndarray:
    """fx -> int codes with one static scale ``mantissa * 2**-exponent``: ``clip(rne(x / scale))``.

    Parameters
    ----------
    x : int64 array
        fx values.
    mantissa : int
        Positive scale mantissa (below ``2**24``).
    exponent : int
        Scale exponent.
    bits : int
        Code width; codes saturate at ``+-(2**(bits-1) - 1)``.
    qmax : int, optional
        A smaller saturation bound ``1 .. 2**(bits-1) - 1`` (None: the width's).
    """
    if not 0 < mantissa < 1 << 24:
        raise FormatError(f"quantize_static: mantissa must be in [1, 2**24), not {mantissa!r}")
    xa = _fx(x, "quantize input")
    _, top = intq.int_range(bits)
    if qmax is not None and (isinstance(qmax, bool) or not isinstance(qmax, (int, np.integer)) or not 1 <= qmax <= top):
        raise FormatError(f"quantize_static: qmax must be an int in 1..{top} for {bits}-bit codes, not {qmax!r}")
    return _divide_codes(xa, np.full(xa.shape, mantissa, dtype=np.int64), int(exponent), top if qmax is None else int(qmax))


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Saturating fx sum (the residual add)."""
    return saturate_fx(_fx(a, "add a") + _fx(b, "add b"))


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """fx product ``sat(rne_shift(a * b, 16))`` (``|a * b| < 2**62``)."""
    return saturate_fx(rne_shift(_fx(a, "mul a") * _fx(b, "mul b"), FX_FRAC))


def activation(x: np.ndarray, kind: str) -> np.ndarray:
    """SiLU (``kind='silu'``) or erf-GELU (``'gelu'``): ``sat(rne_shift(x * g(x), 16))``.

    ``g`` is read from :func:`~sparsa.sfu.tables.gate_table` with linear interpolation for
    ``-16 <= x < 16``, and is 0 below and ``FX_ONE`` above.
    """
    if kind not in GATES:
        raise FormatError(f"activation kind must be one of {', '.join(GATES)}, not {kind!r}")
    xa = _fx(x, f"{kind} input")
    lo, hi = -ACT_RANGE * FX_ONE, ACT_RANGE * FX_ONE
    pos = np.clip(xa, lo, hi - 1) - lo
    index = pos >> ACT_FRAC_BITS
    frac = pos & ((1 << ACT_FRAC_BITS) - 1)
    g = interpolate(gate_table(kind), index, frac, ACT_FRAC_BITS)
    g = np.where(xa < lo, 0, np.where(xa >= hi, FX_ONE, g))
    assert int(index.max(initial=0)) < ACT_SEGMENTS
    return saturate_fx(rne_shift(xa * g, FX_FRAC))


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """``e**x`` for fx ``x <= 0`` (positive inputs are clamped to 0), fx in ``[0, FX_ONE]``.

    ``u = rne_shift(-x * LOG2E_FX, 16)`` is ``-x * log2(e)`` in fx; with ``n = u >> 16`` and
    ``f = u mod 2**16``, ``e**x = 2**-n * 2**-(f/2**16)``: the second factor interpolated from
    :func:`~sparsa.sfu.tables.exp2_table`, then ``rne_shift(..., n)`` (0 for ``n > 17``).
    """
    xa = np.minimum(_fx(x, "exp input"), 0)
    u = rne_shift(-xa * LOG2E_FX, FX_FRAC)
    n = u >> FX_FRAC
    f = u & (FX_ONE - 1)
    v = interpolate(exp2_table(), f >> EXP2_FRAC_BITS, f & ((1 << EXP2_FRAC_BITS) - 1), EXP2_FRAC_BITS)
    assert EXP2_SEGMENTS == 1 << (FX_FRAC - EXP2_FRAC_BITS)
    return np.where(n > FX_FRAC + 1, 0, rne_shift(v, np.minimum(n, FX_FRAC + 1)))


def causal_mask(rows: int, cols: int, offset: int = 0) -> np.ndarray:
    """Keep-mask ``[rows, cols]`` of causal attention: query ``t`` (position ``offset + t``) sees
    keys ``0 .. offset + t``."""
    if rows < 0 or cols < 0 or offset < 0:
        raise ShapeError(f"causal_mask: rows, cols and offset must be >= 0, got {rows}, {cols}, {offset}")
    return np.arange(cols)[None, :] <= offset + np.arange(rows)[:, None]


def block_mask(keep_blocks: np.ndarray, block: int, rows: int, cols: int) -> np.ndarray:
    """Element keep-mask ``[rows, cols]`` from a block keep-map ``[ceil(rows/block), ceil(cols/block)]``."""
    kb = np.asarray(keep_blocks, dtype=bool)
    want = (-(-rows // block), -(-cols // block))
    if kb.shape != want:
        raise ShapeError(f"block_mask: a {rows}x{cols} score matrix in {block}x{block} blocks needs a "
                         f"{want[0]}x{want[1]} block map, not {kb.shape}")
    return np.repeat(np.repeat(kb, block, axis=0), block, axis=1)[:rows, :cols]


def softmax(x: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Row softmax of fx scores, fx probabilities in ``[0, FX_ONE]``.

    Per row: ``m = max`` over kept elements; ``p_i = exp_nonpositive(sat(x_i - m))`` (0 where
    masked); ``S = sum p_i`` (``>= FX_ONE``); ``(r, e) = normalized_reciprocal(S)``; output
    ``rne_shift(p_i * r, e - 16)``.  A row with nothing kept is all zeros.

    Parameters
    ----------
    x : int64 array ``[..., J]``
        fx scores.
    keep : bool array broadcastable to ``x``, optional
        Elements that take part (causal and block masks: :func:`causal_mask`, :func:`block_mask`).
    """
    xa = _fx(x, "softmax input")
    if xa.shape[-1] >= 1 << FX_FRAC:
        raise ShapeError(f"softmax: rows of at most {(1 << FX_FRAC) - 1} elements, not {xa.shape[-1]}")
    kp = np.ones(xa.shape, dtype=bool) if keep is None else np.broadcast_to(np.asarray(keep, dtype=bool), xa.shape)
    masked = np.where(kp, xa, np.iinfo(np.int64).min)
    rowmax = masked.max(axis=-1, keepdims=True)
    e = np.where(kp, exp_nonpositive(saturate_fx(xa - np.where(kp.any(axis=-1, keepdims=True), rowmax, 0))), 0)
    total = e.sum(axis=-1)
    flat_e = e.reshape(-1, e.shape[-1])
    out = np.zeros_like(flat_e)
    for i, s in enumerate(total.reshape(-1).tolist()):
        if s:
            r, sh = normalized_reciprocal(int(s))
            out[i] = rne_shift(flat_e[i] * r, sh - FX_FRAC)
    return out.reshape(xa.shape)


def norm_eps_code(eps: float, n: int) -> int:
    """The host-side constant ``round_half_even(eps * n * 2**32)`` a norm of ``n`` elements adds
    to its sum of squares (in the units of a row that needed no pre-shift)."""
    if not (eps >= 0 and np.isfinite(eps)):
        raise FormatError(f"norm eps must be a finite non-negative number, not {eps!r}")
    return int(np.rint(np.float64(eps) * n * float(1 << (2 * FX_FRAC))))


def presum_shift(amax: int) -> int:
    """A norm's pre-shift ``max(0, bit_length(amax) - 15)``: squares of ``x >> s`` fit 30 bits."""
    return max(0, int(amax).bit_length() - 15)


def _row_rsqrt_scale(x: np.ndarray, eps_code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: pre-shift ``s``, and ``(m, e)`` with ``m * 2**-e ~ sqrt(n / D)``."""
    n = x.shape[-1]
    amax = np.abs(x).max(axis=-1)
    shifts = np.vectorize(presum_shift, otypes=[np.int64])(amax)
    xn = x >> shifts[..., None]                                       # |xn| < 2**15
    sumsq = (xn * xn).sum(axis=-1)                                    # < n * 2**30
    flat_s, flat_q = shifts.reshape(-1).tolist(), sumsq.reshape(-1).tolist()
    mant = np.empty(len(flat_s), dtype=np.int64)
    expo = np.empty(len(flat_s), dtype=np.int64)
    for i, (s, q) in enumerate(zip(flat_s, flat_q)):
        d = q + int(rne_shift(eps_code, 2 * s))
        mant[i], expo[i] = normalized_rsqrt(d, n) if d > 0 else (0, 0)
    return shifts, mant.reshape(shifts.shape), expo.reshape(shifts.shape)


def rmsnorm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    """RMSNorm ``x / sqrt(mean(x**2) + eps) * gain``, fx.

    Per row of ``n`` elements: ``s = max(0, bit_length(max|x|) - 15)``; ``xn = x >> s`` (floor);
    ``D = sum xn**2 + rne_shift(norm_eps_code(eps, n), 2s)``; ``(m, e) = normalized_rsqrt(D, n)``
    (``m * 2**-e ~ sqrt(n / D)``, and ``1/rms = m * 2**-e * 2**(16-s)``); then
    ``z = sat(rne_shift(x * m, e + s - 16))`` and ``y = mul(z, gain)``.  A zero row with
    ``eps = 0`` gives zeros.

    Parameters
    ----------
    x : int64 array ``[..., n]``
        fx inputs.
    gain : int64 array ``[n]``
        fx gains.
    eps : float
        The model's epsilon (made an integer constant by :func:`norm_eps_code`).
    """
    return rmsnorm_code(x, gain, norm_eps_code(eps, np.shape(x)[-1]))


def rmsnorm_code(x: np.ndarray, gain: np.ndarray, eps_code: int) -> np.ndarray:
    """:func:`rmsnorm` with the epsilon already the integer the hardware adds (``norm_eps_code``)."""
    xa = _fx(x, "rmsnorm input")
    g = _fx(gain, "rmsnorm gain")
    if g.shape != xa.shape[-1:]:
        raise ShapeError(f"rmsnorm: gain {g.shape} does not match rows of {xa.shape[-1]}")
    shifts, m, e = _row_rsqrt_scale(xa, int(eps_code))
    z = shift_saturate_fx(xa * m[..., None], (e + shifts - FX_FRAC)[..., None])
    return mul(z, g)


def layernorm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm ``(x - mean) / sqrt(var + eps) * gain + bias``, fx.

    ``mean = rne_div(sum x, n)``; ``c = sat(x - mean)``; then :func:`rmsnorm`'s steps on ``c``
    and a saturating add of ``bias``.
    """
    b = _fx(bias, "layernorm bias")
    if b.shape != np.shape(x)[-1:]:
        raise ShapeError(f"layernorm: bias {b.shape} does not match rows of {np.shape(x)[-1]}")
    return add(layernorm_code(x, gain, norm_eps_code(eps, np.shape(x)[-1])), b)


def layernorm_code(x: np.ndarray, gain: np.ndarray, eps_code: int) -> np.ndarray:
    """LayerNorm without its bias, with the integer epsilon: centre, then :func:`rmsnorm_code`."""
    xa = _fx(x, "layernorm input")
    mean = rne_div(xa.sum(axis=-1, keepdims=True), np.int64(xa.shape[-1]))
    return rmsnorm_code(saturate_fx(xa - mean), gain, eps_code)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, pairs: str = "adjacent") -> np.ndarray:
    """Rotate pairs of ``x [..., T, hd]`` by fx tables ``cos, sin [T, hd/2]``.

    ``y_a = sat(rne_shift(a*c - b*s, 16))``, ``y_b = sat(rne_shift(a*s + b*c, 16))`` with pairs
    ``(x[2i], x[2i+1])`` (``pairs='adjacent'``, GGUF LLaMA) or ``(x[i], x[i + hd/2])`` (``'half'``,
    Hugging Face ``rotate_half``).  The tables are the host's ``to_fx(cos(pos * theta_i))``.
    """
    xa = _fx(x, "rope input")
    c, s = _fx(cos, "rope cos"), _fx(sin, "rope sin")
    hd = xa.shape[-1]
    if hd % 2 or c.shape != s.shape or c.shape != (xa.shape[-2], hd // 2):
        raise ShapeError(f"rope: x [..., T, hd] {xa.shape} needs even hd and cos/sin [T, hd/2], "
                         f"got {c.shape} and {s.shape}")
    if pairs == "adjacent":
        a, b = xa[..., 0::2], xa[..., 1::2]
    elif pairs == "half":
        a, b = xa[..., : hd // 2], xa[..., hd // 2:]
    else:
        raise FormatError(f"rope pairs must be 'adjacent' or 'half', not {pairs!r}")
    ya = saturate_fx(rne_shift(a * c - b * s, FX_FRAC))
    yb = saturate_fx(rne_shift(a * s + b * c, FX_FRAC))
    out = np.empty_like(xa)
    if pairs == "adjacent":
        out[..., 0::2], out[..., 1::2] = ya, yb
    else:
        out[..., : hd // 2], out[..., hd // 2:] = ya, yb
    return out
