"""Activation-scale granularity: one format for the compiler, the references and the RTL.

An integer GEMM ``Y = X @ W.T`` with int8/int4 activations needs a scale for ``X``.  Three
granularities are supported (config ``act_scale.granularity``):

``tensor``
    One static scale per tensor, calibrated offline (the accelerator computes plain integer
    sums; the host multiplies ``Y_int * act_scale * weight_scale[n]``).  No hardware cost.
``token``
    One *dynamic* scale per token (row of ``X``), from that token's max ``|x|``.  The scale is
    constant along the reduction, so it factors out of the sum; the accelerator multiplies each
    token's sums by its scale mantissa in the accumulator's scaling stage.
``group``
    One dynamic scale per token and per ``group`` consecutive reduction elements (dense ``k``).
    The scale changes along the reduction, so every group's partial sum must be scaled
    *before* it is added: ``acc[t, n] = sum_g m[t, g] * (X_g[t] . W_g[n])``.

**Fixed-point scales.**  The hardware multiplies by an unsigned ``mantissa_bits``-bit integer
mantissa ``m[t, g]``; all mantissas of one tensor share one exponent ``e``, so the real scale
is ``s_hat = m * 2**-e``.  The quantizer picks ``e`` so the largest mantissa fits, rounds every
mantissa *up* (``s_hat >= s``: no code is clipped), and quantizes ``x`` with ``s_hat`` itself, so
the reference, the compiler and the RTL use exactly the same numbers and the float output is
``acc * 2**-e * weight_scale[n]`` (:func:`dequantize_output`).  An all-zero unit gets mantissa 0
and codes 0.

>>> spec = ActScaleSpec("group", group=64, mantissa_bits=16)             # doctest: +SKIP
>>> q = quantize_activations_dynamic(x, spec, bits=8)                     # doctest: +SKIP
>>> acc = scaled_gemm_reference(q, w_int, spec)                           # doctest: +SKIP
>>> y = dequantize_output(acc, q, weight_scale)                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import intq

__all__ = [
    "GRANULARITIES",
    "Granularity",
    "ActScaleSpec",
    "ScaledActivations",
    "scale_units",
    "quantize_activations_dynamic",
    "scaled_gemm_reference",
    "scaled_accumulate",
    "dequantize_output",
    "scaled_accumulator_bits",
]

Granularity = Literal["tensor", "token", "group"]
#: The activation-scale granularities, cheapest first.
GRANULARITIES: tuple[str, ...] = ("tensor", "token", "group")


@dataclass(frozen=True)
class ActScaleSpec:
    """How activations are scaled.

    Parameters
    ----------
    granularity : {"tensor", "token", "group"}
        See the module docstring.
    group : int or None
        ``group`` only: dense reduction elements per scale (>= 1).
    mantissa_bits : int
        Width of the unsigned scale mantissa the hardware multiplies by (2..24).
    """

    granularity: str = "tensor"
    group: int | None = None
    mantissa_bits: int = 16

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise FormatError(f"activation-scale granularity must be one of {', '.join(GRANULARITIES)}, "
                              f"not {self.granularity!r}")
        if self.granularity == "group":
            if not isinstance(self.group, (int, np.integer)) or isinstance(self.group, bool) or self.group < 1:
                raise FormatError(f"activation-scale granularity 'group' needs a positive int group, "
                                  f"not {self.group!r}")
        elif self.group is not None:
            raise FormatError(f"activation-scale group={self.group!r} is only used with granularity 'group', "
                              f"not {self.granularity!r}")
        mb = self.mantissa_bits
        if not isinstance(mb, (int, np.integer)) or isinstance(mb, bool) or not 2 <= mb <= 24:
            raise FormatError(f"activation-scale mantissa_bits must be an int in 2..24, not {mb!r}")

    @property
    def dynamic(self) -> bool:
        """True for per-token and per-group scales (computed from each input at run time)."""
        return self.granularity != "tensor"

    def groups(self, k: int) -> int:
        """Scale units along a reduction of ``k`` dense elements (1 for tensor and token)."""
        if self.granularity != "group":
            return 1
        assert self.group is not None
        return -(-int(k) // self.group)


@dataclass(frozen=True)
class ScaledActivations:
    """Integer activations with dynamic fixed-point scales.

    Attributes
    ----------
    codes : np.ndarray
        int64 ``[T, K]`` activation codes.
    mantissa : np.ndarray
        int64 ``[T, G]`` unsigned scale mantissas (``G`` = 1 for per-token scales).
    exponent : int
        Shared exponent: the scale of unit ``(t, g)`` is ``mantissa[t, g] * 2**-exponent``.
    spec : ActScaleSpec
        The granularity they were made for.
    """

    codes: np.ndarray
    mantissa: np.ndarray
    exponent: int
    spec: ActScaleSpec

    @property
    def scale(self) -> np.ndarray:
        """float64 ``[T, G]`` real scales ``mantissa * 2**-exponent``."""
        return np.ldexp(self.mantissa.astype(np.float64), -self.exponent)

    @property
    def scale_bytes(self) -> int:
        """Bytes of the mantissas when they are streamed to the accelerator (whole bytes per value)."""
        return int(self.mantissa.size) * -(-self.spec.mantissa_bits // 8)


def scale_units(x: np.ndarray, spec: ActScaleSpec) -> np.ndarray:
    """``x[T, K]`` viewed as ``[T, G, unit]``: the elements of each scale unit (the last group
    zero-padded; one unit of all ``K`` for per-token scales)."""
    t, k = x.shape
    if spec.granularity == "token":
        return x[:, None, :]
    g = spec.groups(k)
    assert spec.group is not None
    pad = g * spec.group - k
    if pad:
        x = np.concatenate([x, np.zeros((t, pad), dtype=x.dtype)], axis=1)
    return x.reshape(t, g, spec.group)


def quantize_activations_dynamic(x: np.ndarray, spec: ActScaleSpec, bits: int, *,
                                 name: str = "activations") -> ScaledActivations:
    """Quantize ``x[T, K]`` with dynamic per-token or per-group fixed-point scales.

    Parameters
    ----------
    x : np.ndarray
        Float activations ``[T, K]`` (finite).
    spec : ActScaleSpec
        ``token`` or ``group`` granularity.
    bits : int
        Integer code width (8 or 4); codes are symmetric (``-(2**(bits-1)-1) .. 2**(bits-1)-1``).
    name : str
        Tensor name for error messages.

    Returns
    -------
    ScaledActivations
    """
    if not spec.dynamic:
        raise FormatError(f"{name}: granularity 'tensor' uses a static calibrated scale, not dynamic scales")
    xf = intq.check_finite(x, name)
    if xf.ndim != 2:
        raise ShapeError(f"{name}: activations must be [tokens, k], not shape {xf.shape}")
    lo, qmax = intq.int_range(bits)
    amax = np.abs(scale_units(xf, spec)).max(axis=-1).astype(np.float64)       # [T, G]
    s = amax / qmax
    top = float(s.max()) if s.size else 0.0
    mmax = (1 << spec.mantissa_bits) - 1
    if top == 0.0:
        exponent = 0
    else:
        # Largest e with ceil(top * 2**e) <= mmax.
        exponent = int(np.floor(np.log2(mmax / top)))
        while np.ceil(top * 2.0 ** exponent) > mmax:
            exponent -= 1
    mant = np.ceil(np.ldexp(s, exponent)).astype(np.int64)
    mant[(amax > 0) & (mant == 0)] = 1
    mant[amax == 0] = 0
    s_hat = np.ldexp(mant.astype(np.float64), -exponent)
    per_elem = np.repeat(s_hat, spec.group, axis=1)[:, : xf.shape[1]] if spec.granularity == "group" \
        else np.broadcast_to(s_hat, xf.shape)
    safe = np.where(per_elem > 0, per_elem, 1.0)
    codes = np.clip(np.rint(xf.astype(np.float64) / safe), lo, qmax).astype(np.int64)
    codes[per_elem == 0] = 0
    return ScaledActivations(codes, mant, exponent, spec)


def scaled_accumulate(partials: np.ndarray, mantissa: np.ndarray) -> np.ndarray:
    """``sum_g mantissa[t, g] * partials[g, t, n]`` in exact integers (int64 or Python ints).

    Parameters
    ----------
    partials : np.ndarray
        Integer partial sums ``[G, T, N]``, one per scale group.
    mantissa : np.ndarray
        Mantissas ``[T, G]``.
    """
    p = np.asarray(partials)
    m = np.asarray(mantissa)
    if p.ndim != 3 or m.shape != (p.shape[1], p.shape[0]):
        raise ShapeError(f"partials [G, T, N] {p.shape} do not match mantissas [T, G] {m.shape}")
    out = np.zeros(p.shape[1:], dtype=object)
    for g in range(p.shape[0]):
        out = out + m[:, g].astype(object)[:, None] * p[g].astype(object)
    try:
        return out.astype(np.int64)
    except OverflowError:
        return out


def scaled_gemm_reference(act: ScaledActivations, w: np.ndarray, spec: ActScaleSpec | None = None) -> np.ndarray:
    """Reference scaled integer GEMM ``acc[t, n] = sum_g m[t, g] * X_g[t] . W_g[n]``.

    Parameters
    ----------
    act : ScaledActivations
        From :func:`quantize_activations_dynamic`.
    w : np.ndarray
        Integer weights ``[N, K]`` (dense layout; pruned entries are zero).
    spec : ActScaleSpec, optional
        Defaults to ``act.spec``.

    Returns
    -------
    np.ndarray
        Exact integer sums ``[T, N]`` (int64 when they fit, else an object array).
    """
    spec = spec or act.spec
    x = np.asarray(act.codes, dtype=np.int64)
    wi = np.asarray(w, dtype=np.int64)
    if wi.ndim != 2 or wi.shape[1] != x.shape[1]:
        raise ShapeError(f"weights [N, K] {wi.shape} do not match activations [T, K] {x.shape}")
    k = x.shape[1]
    g = spec.groups(k)
    size = spec.group if spec.granularity == "group" else k
    partials = np.stack([x[:, i * size:(i + 1) * size] @ wi[:, i * size:(i + 1) * size].T for i in range(g)])
    return scaled_accumulate(partials, act.mantissa)


def dequantize_output(acc: np.ndarray, act: ScaledActivations, weight_scale: np.ndarray) -> np.ndarray:
    """Float64 ``acc[t, n] * 2**-exponent * weight_scale[n]``."""
    a = np.asarray(acc, dtype=np.float64)
    return np.ldexp(a, -act.exponent) * np.asarray(weight_scale, dtype=np.float64)[None, :]


def scaled_accumulator_bits(accumulator_bits: int, spec: ActScaleSpec, groups: int) -> int:
    """Bits a two's-complement register needs for ``sum_g m * acc_g`` of ``groups`` sums of
    ``accumulator_bits`` bits with ``spec.mantissa_bits``-bit unsigned mantissas (exact bound)."""
    if not spec.dynamic:
        return accumulator_bits
    worst = (1 << (accumulator_bits - 1)) * ((1 << spec.mantissa_bits) - 1) * max(1, int(groups))
    return worst.bit_length() + 1
