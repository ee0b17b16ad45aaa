"""Float block -> integer block: weight codes and scales, fx parameters, calibrated K/V scales.

* Weights: optional magnitude N:M pruning along ``in`` (:func:`sparsa.formats.nm.prune`), then
  per-output-channel symmetric int8 / int4 with the MSE scale search
  (:func:`sparsa.formats.intq.search_int_scale`, as the compiler's quantizer), and the float scales
  turned into 16-bit mantissas with one shared exponent (:func:`weight_scale_mantissas`).
* Norm gains and biases, linear biases and RoPE tables: :func:`sparsa.sfu.to_fx`.
* K and V cache scales: one static scale per KV head, ``amax / 127`` of the float block's K and V
  on calibration inputs (for K the largest RoPE pair norm, which bounds ``|k|`` at every position),
  rounded *up* to a 16-bit mantissa (calibrated values never clip); the scores' scale is
  ``k_scale / sqrt(head_dim)`` rounded to nearest.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sparsa.errors import FormatError
from sparsa.formats import intq, nm
from sparsa.sfu import to_fx
from sparsa.sfu.ops import SCALE_MANT_BITS

from .float_block import FloatBlock, float_block, rope_angles
from .reference import ACT_BITS
from .spec import BlockWeights, IntLinear, StaticScale

__all__ = ["weight_scale_mantissas", "static_scale", "quantize_weight", "quantize_block"]

_MMAX = (1 << SCALE_MANT_BITS) - 1


def weight_scale_mantissas(scale: np.ndarray, used: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Per-channel float scales -> ``(mantissa [out], exponent)`` with ``mantissa = rint(scale * 2**e)``
    and ``e`` the largest exponent whose largest mantissa fits 16 bits.

    Parameters
    ----------
    scale : np.ndarray
        Positive finite float scales ``[out]``.
    used : bool array ``[out]``, optional
        Channels whose scale matters.  An all-zero weight row's scale is arbitrary (the int
        quantizers give it 1.0, far above real weight scales): it gets mantissa 0 and takes no
        part in choosing the exponent, which would otherwise cost every other channel its
        mantissa's precision.
    """
    s = intq.check_scale(np.asarray(scale, dtype=np.float64).reshape(-1), "weight scale").astype(np.float64)
    keep = np.ones(s.shape, dtype=bool) if used is None else np.asarray(used, dtype=bool).reshape(-1)
    if keep.shape != s.shape:
        raise FormatError(f"weight scale: {keep.shape[0]} used flags for {s.shape[0]} channels")
    if not keep.any():
        return np.zeros(s.shape, dtype=np.int64), 0
    top = s[keep].max()
    e = int(np.floor(np.log2(_MMAX / top)))
    while np.rint(np.ldexp(top, e)) > _MMAX:
        e -= 1
    while np.rint(np.ldexp(top, e + 1)) <= _MMAX:
        e += 1
    return np.where(keep, np.rint(np.ldexp(s, e)), 0).astype(np.int64), e


def static_scale(values: np.ndarray, name: str, *, up: bool = True) -> StaticScale:
    """One scale per head for ``values [heads, ...]`` given as float scales ``[heads]``: mantissa in
    ``[2**15, 2**16)`` rounded up (``up``) or to nearest, each head its own exponent."""
    s = intq.check_scale(np.asarray(values, dtype=np.float64), name).astype(np.float64)
    mant, expo = [], []
    for v in s.tolist():
        e = SCALE_MANT_BITS - 1 - int(np.floor(np.log2(v)))            # 2**15 <= v * 2**e < 2**16
        m = int(np.ceil(np.ldexp(v, e))) if up else int(np.rint(np.ldexp(v, e)))
        if m > _MMAX:
            m, e = -(-m // 2), e - 1
        mant.append(m)
        expo.append(e)
    return StaticScale(np.array(mant, dtype=np.int64), np.array(expo, dtype=np.int64), name=name)


def _rotation_amax(k: np.ndarray, pairs: str | None) -> np.ndarray:
    """Per head, the largest ``|k|`` any RoPE position can produce: the largest pair norm
    ``sqrt(a**2 + b**2)`` (a rotation keeps it), or ``max |k|`` without RoPE."""
    if pairs is None:
        return np.abs(k).max(axis=(1, 2))
    hd = k.shape[-1]
    a, b = (k[..., 0::2], k[..., 1::2]) if pairs == "adjacent" else (k[..., : hd // 2], k[..., hd // 2:])
    return np.sqrt(a * a + b * b).max(axis=(1, 2))


def quantize_weight(weight: np.ndarray, bits: int, pattern: str | None = None, *, bias: np.ndarray | None = None,
                    name: str = "linear") -> IntLinear:
    """A float ``weight [out, in]`` (and bias) as an :class:`IntLinear`.

    Parameters
    ----------
    weight : np.ndarray
        Float ``[out, in]``.
    bits : int
        4 or 8.
    pattern : str, optional
        ``"N:M"`` magnitude pruning along ``in`` before quantizing (``"dense"`` or None: none).
    bias : np.ndarray, optional
        Float ``[out]`` (stored as fx).
    name : str
        Layer name for messages.
    """
    w = intq.check_finite(weight, f"{name} weight")
    if pattern is not None:
        try:
            parsed = nm.parse_nm(pattern)
        except FormatError as exc:
            raise FormatError(f"{name}: {exc}") from None
        if parsed is not None:                                   # None: "dense"
            w = nm.prune(w, *parsed, axis=1)
    scale = intq.search_int_scale(w, bits, "row")
    codes = intq.quantize_int(w, scale, bits, name=f"{name} weight").astype(np.int64)
    mant, expo = weight_scale_mantissas(scale, used=np.any(codes != 0, axis=1))
    return IntLinear(codes, mant, expo, bits=bits, bias=None if bias is None else to_fx(bias), name=name)


def quantize_block(fb: FloatBlock, calibration: np.ndarray, *, bits: int | Mapping[str, int] = 8,
                   patterns: Mapping[str, str] | None = None, max_positions: int = 256,
                   act_group: int | None = None, kv_qmax: int = 127) -> BlockWeights:
    """The integer block of ``fb``.

    Parameters
    ----------
    fb : FloatBlock
        Float weights.
    calibration : np.ndarray
        Float hidden states ``[T, hidden]`` entering the block (K/V scale calibration).
    bits : int or mapping
        Weight code width for every layer, or per layer name (default 8).
    patterns : mapping, optional
        ``name -> "N:M"`` pruning per layer (others dense).
    max_positions : int
        The block's context capacity (RoPE table length).
    act_group : int, optional
        Per-group activation scales of the linear layers (:attr:`BlockWeights.act_group`).
    kv_qmax : int
        Largest K/V code (:attr:`BlockWeights.kv_qmax`); the static scales map the calibration
        maxima to it.
    """
    s = fb.spec
    patterns = dict(patterns or {})
    linear = {}
    for name in s.linear_shapes():
        b = bits if isinstance(bits, int) else bits.get(name, 8)
        w, bias = fb.linear[name]
        linear[name] = quantize_weight(w, b, patterns.get(name), bias=bias, name=name)
    out = float_block(fb, calibration)
    kmax = _rotation_amax(out.k, s.rope)
    vmax = np.abs(out.v).max(axis=(1, 2))
    qmax = min(intq.int_range(ACT_BITS)[1], kv_qmax)
    k_scale = static_scale(np.maximum(kmax, 1e-6) / qmax, "k_scale")
    v_scale = static_scale(np.maximum(vmax, 1e-6) / qmax, "v_scale")
    score_scale = static_scale(k_scale.value / np.sqrt(s.head_dim), "score_scale", up=False)
    rope = {}
    if s.rope is not None:
        ang = rope_angles(max_positions, s.head_dim, fb.rope_base)
        rope = {"rope_cos": to_fx(np.cos(ang)), "rope_sin": to_fx(np.sin(ang))}
    biases = {}
    if s.norm == "layernorm":
        biases = {"norm1_bias": to_fx(fb.norm1_bias), "norm2_bias": to_fx(fb.norm2_bias)}
    return BlockWeights(spec=s, linear=linear, norm1=to_fx(fb.norm1), norm2=to_fx(fb.norm2), k_scale=k_scale,
                        v_scale=v_scale, score_scale=score_scale, max_positions=max_positions, act_group=act_group,
                        kv_qmax=kv_qmax, **biases, **rope)
