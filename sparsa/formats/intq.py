"""Symmetric integer and flint quantization (bit-exact NumPy reference).

Layouts and grids are specified in ``docs/formats/int.md``.  Summary:

* **intN** (N = 2..16): symmetric, zero point 0.  ``code = clip(rint(x / scale), lo, hi)`` with
  round-half-to-even.  ``narrow=True`` (default) uses ``[-(2**(N-1) - 1), 2**(N-1) - 1]`` (int4:
  ``[-7, 7]``, int8: ``[-127, 127]``), so the grid is symmetric and the most negative two's-complement
  code (int4 ``1000``, int8 ``0x80``) stays free; OVP uses exactly that code as its victim
  identifier.  ``narrow=False`` uses the full ``[-2**(N-1), 2**(N-1) - 1]`` range.
* **flint4** (OliVe / ANT "flint", signed): sign-magnitude, 1 sign bit + 3-bit magnitude index,
  magnitudes ``(0, 1, 2, 3, 4, 6, 8, 16)`` in flint units.  Code ``1000`` (negative zero) is never
  produced by :func:`quantize_flint4`.  Rounding goes to the nearest magnitude, ties to the even
  magnitude index (the flint analogue of round-half-to-even).
* **Scales** are float32 and strictly positive.  Granularity ``"tensor"`` (one scale),
  ``"row"`` (one per output channel, i.e. per index of all axes but the last) or ``"group"``
  (one per ``group_size`` consecutive values along the last axis).  An all-zero row / group gets
  scale 1.0 (its codes are all 0 whatever the scale, so any positive value is exact).
* **MSE scale search**: :func:`mse_search_scale` tries candidate scales and keeps, per
  tensor / row / group, the one with the lowest squared error; ties keep the earlier candidate,
  so putting the max-abs scale first makes the search never worse than max-abs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from sparsa.errors import FormatError, ShapeError

__all__ = [
    "FLINT4_MAGNITUDES",
    "Granularity",
    "int_range",
    "check_finite",
    "check_scale",
    "quantize_int",
    "dequantize_int",
    "fake_quant_int",
    "quantize_flint4",
    "decode_flint4",
    "dequantize_flint4",
    "fake_quant_flint4",
    "nearest_index",
    "scale_shape",
    "expand_scale",
    "absmax",
    "absmax_scale",
    "mse_per_unit",
    "mse_search_scale",
    "search_int_scale",
]

Granularity = Literal["tensor", "row", "group"]

#: flint4 magnitudes, indexed by the 3-bit magnitude field (in flint units).
FLINT4_MAGNITUDES: tuple[int, ...] = (0, 1, 2, 3, 4, 6, 8, 16)
_FLINT4_MAG = np.array(FLINT4_MAGNITUDES, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def int_range(bits: int, *, narrow: bool = True) -> tuple[int, int]:
    """Smallest and largest code of a symmetric signed integer format.

    Parameters
    ----------
    bits : int
        Width, 2..16.
    narrow : bool
        ``True``: ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``; ``False``: full two's complement.

    Returns
    -------
    tuple of int
        ``(lo, hi)``.
    """
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise FormatError(f"integer width must be an int in 2..16, not {bits!r}")
    hi = (1 << (int(bits) - 1)) - 1
    return (-hi if narrow else -hi - 1), hi


def check_finite(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as float32, raising :class:`FormatError` on NaN/inf (naming ``name``)."""
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise FormatError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise FormatError(f"{name}: non-finite value {float(arr[tuple(bad)])!r} at index {tuple(int(i) for i in bad)}")
    return arr


def check_scale(scale: np.ndarray | float, name: str) -> np.ndarray:
    """Return ``scale`` as float32, raising :class:`FormatError` unless every entry is finite and > 0."""
    s = np.asarray(scale, dtype=np.float32)
    if not np.all(np.isfinite(s)) or not np.all(s > 0):
        bad = s[~(np.isfinite(s) & (s > 0))].ravel()[0]
        raise FormatError(f"{name}: scales must be finite and > 0, got {float(bad)!r}")
    return s


# --------------------------------------------------------------------------------------------
# integer grid
# --------------------------------------------------------------------------------------------


def quantize_int(
    x: np.ndarray, scale: np.ndarray | float, bits: int, *, narrow: bool = True, name: str = "tensor"
) -> np.ndarray:
    """Quantize to symmetric signed integer codes.

    Parameters
    ----------
    x : np.ndarray
        Float tensor (finite).
    scale : array_like
        Positive scale(s) broadcastable to ``x`` (see :func:`expand_scale` for groups).
    bits : int
        Code width.
    narrow : bool
        Use the symmetric range without the most negative code (see :func:`int_range`).
    name : str
        Tensor name used in error messages.

    Returns
    -------
    np.ndarray
        Integer codes (int8 for ``bits <= 8``, else int16), round-half-to-even then clipped.
    """
    lo, hi = int_range(bits, narrow=narrow)
    xf = check_finite(x, name)
    s = check_scale(scale, name)
    q = np.clip(np.rint(xf / s), lo, hi)
    return q.astype(np.int8 if bits <= 8 else np.int16)


def dequantize_int(codes: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """Float32 values ``codes * scale``."""
    return np.asarray(codes).astype(np.float32) * np.asarray(scale, dtype=np.float32)


def fake_quant_int(x: np.ndarray, scale: np.ndarray, bits: int, *, narrow: bool = True) -> np.ndarray:
    """``dequantize_int(quantize_int(x, scale))`` without argument checks (hot loop of scale search)."""
    lo, hi = int_range(bits, narrow=narrow)
    return np.clip(np.rint(x / scale), lo, hi) * scale


# --------------------------------------------------------------------------------------------
# nearest point of an arbitrary magnitude grid (used by flint4 and OVP)
# --------------------------------------------------------------------------------------------


def nearest_index(magnitude: np.ndarray, grid: np.ndarray, *, even_offset: int = 0) -> np.ndarray:
    """Index of the nearest point of a sorted magnitude grid.

    Parameters
    ----------
    magnitude : np.ndarray
        Non-negative float32 values.
    grid : np.ndarray
        Strictly increasing float32 grid points.  Values beyond the ends saturate.
    even_offset : int
        Ties (a value exactly half-way between two points) go to the point whose
        ``index + even_offset`` is even.  With ``index`` equal to the code's magnitude field this is
        round-half-to-even on the code.

    Returns
    -------
    np.ndarray
        int64 indices into ``grid``.
    """
    mids = ((grid[1:] + grid[:-1]) * np.float32(0.5)).astype(np.float32)
    lo = np.searchsorted(mids, magnitude, side="left")
    if mids.size:
        at = np.minimum(lo, mids.size - 1)
        tie = (lo < mids.size) & (magnitude == mids[at])
        if np.any(tie):
            # candidates lo (lower) and lo + 1 (upper): take the one with even (index + offset)
            lo = np.where(tie & ((lo + even_offset) % 2 == 1), lo + 1, lo)
    return lo


# --------------------------------------------------------------------------------------------
# flint4
# --------------------------------------------------------------------------------------------


def quantize_flint4(x: np.ndarray, scale: np.ndarray | float, *, name: str = "tensor") -> np.ndarray:
    """Quantize to flint4 codes (uint8 holding 4 bits: ``sign << 3 | magnitude_index``).

    Zero is always code ``0000``; ``1000`` is never produced.
    """
    xf = check_finite(x, name)
    s = check_scale(scale, name)
    v = xf / s
    idx = nearest_index(np.abs(v), _FLINT4_MAG).astype(np.uint8)
    sign = ((v < 0) & (idx > 0)).astype(np.uint8)
    return (sign << 3) | idx


def decode_flint4(codes: np.ndarray) -> np.ndarray:
    """Integer values (flint units, int32) of flint4 codes; ``1000`` decodes to 0."""
    c = np.asarray(codes)
    if c.size and (c.min() < 0 or c.max() > 15):
        raise FormatError(f"flint4 codes must be 0..15, got {int(c.max()) if c.max() > 15 else int(c.min())}")
    c = c.astype(np.uint8)
    mag = np.array(FLINT4_MAGNITUDES, dtype=np.int32)[c & 7]
    return np.where(c & 8, -mag, mag).astype(np.int32)


def dequantize_flint4(codes: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """Float32 values of flint4 codes times ``scale``."""
    return decode_flint4(codes).astype(np.float32) * np.asarray(scale, dtype=np.float32)


def fake_quant_flint4(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Quantize-dequantize on the flint4 grid without argument checks."""
    v = x / scale
    mag = _FLINT4_MAG[nearest_index(np.abs(v), _FLINT4_MAG)]
    return np.copysign(mag, v) * scale


# --------------------------------------------------------------------------------------------
# granularity and scales
# --------------------------------------------------------------------------------------------


def _check_granularity(x: np.ndarray, granularity: str, group_size: int | None) -> None:
    if granularity not in ("tensor", "row", "group"):
        raise FormatError(f"granularity must be 'tensor', 'row' or 'group', not {granularity!r}")
    if granularity != "tensor" and x.ndim < 1:
        raise ShapeError(f"{granularity} scales need at least a 1-D tensor, got shape {x.shape}")
    if granularity == "group":
        if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 1:
            raise FormatError(f"group_size must be a positive int, not {group_size!r}")
        if x.shape[-1] % group_size:
            raise ShapeError(f"last axis {x.shape[-1]} is not a multiple of group_size {group_size}")


def scale_shape(shape: tuple[int, ...], granularity: Granularity, group_size: int | None = None) -> tuple[int, ...]:
    """Compact shape of the scale array: ``()``, ``shape[:-1] + (1,)`` or ``shape[:-1] + (K // g,)``."""
    if granularity == "tensor":
        return ()
    if granularity == "row":
        return tuple(shape[:-1]) + (1,)
    assert group_size is not None
    return tuple(shape[:-1]) + (shape[-1] // group_size,)


def expand_scale(scale: np.ndarray, granularity: Granularity, group_size: int | None = None) -> np.ndarray:
    """Make a compact scale array broadcastable to the tensor (repeats group scales ``group_size`` times)."""
    s = np.asarray(scale, dtype=np.float32)
    if granularity == "group":
        return np.repeat(s, group_size, axis=-1)
    return s


def _units(x: np.ndarray, granularity: Granularity, group_size: int | None) -> np.ndarray:
    """View ``x`` so that reducing the last axis gives one value per scale (compact shape)."""
    if granularity == "tensor":
        return x.reshape(1, -1)
    if granularity == "row":
        return x
    return x.reshape(x.shape[:-1] + (x.shape[-1] // group_size, group_size))


def _reduce(vals: np.ndarray, granularity: Granularity, op: Callable[..., np.ndarray]) -> np.ndarray:
    r = op(vals, axis=-1, keepdims=granularity == "row")
    return r.reshape(()) if granularity == "tensor" else r


def absmax(x: np.ndarray, granularity: Granularity = "row", group_size: int | None = None) -> np.ndarray:
    """Max |x| per scale unit, in the compact scale shape."""
    xf = np.asarray(x, dtype=np.float32)
    _check_granularity(xf, granularity, group_size)
    return _reduce(np.abs(_units(xf, granularity, group_size)), granularity, np.max).astype(np.float32)


def absmax_scale(
    x: np.ndarray, qmax: float, granularity: Granularity = "row", group_size: int | None = None
) -> np.ndarray:
    """Scale mapping max |x| of each unit to ``qmax``; all-zero units get 1.0.

    Scales are clamped to at least the smallest normal float32 (1.18e-38).

    Parameters
    ----------
    x : np.ndarray
        Tensor to be quantized.
    qmax : float
        Largest grid magnitude (7 for int4, 127 for int8, 16 for flint4).
    granularity, group_size
        See module docstring.

    Returns
    -------
    np.ndarray
        float32 scales in the compact shape (:func:`scale_shape`).
    """
    if not qmax > 0:
        raise FormatError(f"qmax must be > 0, not {qmax!r}")
    m = absmax(x, granularity, group_size)
    s = np.where(m > 0, m / np.float32(qmax), np.float32(1.0))
    return np.maximum(s, np.finfo(np.float32).tiny).astype(np.float32)


def mse_per_unit(
    a: np.ndarray, b: np.ndarray, granularity: Granularity, group_size: int | None = None
) -> np.ndarray:
    """Mean squared difference per scale unit (compact shape), squared and accumulated in float64.

    The difference of the float32 inputs is exact in float64, and squaring there keeps the error of
    tiny tensors (|x| ~ 1e-23: squares below float32's smallest subnormal) from flushing to 0, which
    would make every candidate scale tie.
    """
    d = np.asarray(a, dtype=np.float32).astype(np.float64)
    d -= np.asarray(b, dtype=np.float32)
    np.square(d, out=d)
    u = _units(d, granularity, group_size)
    total = u.sum(axis=-1, keepdims=granularity == "row", dtype=np.float64) / u.shape[-1]
    return total.reshape(()) if granularity == "tensor" else total


def mse_search_scale(
    x: np.ndarray,
    fake_quant: Callable[[np.ndarray, np.ndarray], np.ndarray],
    candidates: Sequence[np.ndarray],
    granularity: Granularity = "row",
    group_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick, per scale unit, the candidate scale with the lowest quantization MSE.

    Parameters
    ----------
    x : np.ndarray
        Finite float tensor.
    fake_quant : callable
        ``fake_quant(x, expanded_scale) -> x_hat`` (quantize then dequantize).
    candidates : sequence of np.ndarray
        Scales in the compact shape; every entry must be > 0.  Earlier candidates win ties.
    granularity, group_size
        See module docstring.

    Returns
    -------
    (np.ndarray, np.ndarray)
        The best scales (compact shape, float32) and their MSE (float64).
    """
    xf = np.asarray(x, dtype=np.float32)
    _check_granularity(xf, granularity, group_size)
    if not candidates:
        raise FormatError("mse_search_scale needs at least one candidate scale")
    best = best_err = None
    for cand in candidates:
        c = np.broadcast_to(np.asarray(cand, dtype=np.float32), scale_shape(xf.shape, granularity, group_size))
        err = mse_per_unit(fake_quant(xf, expand_scale(c, granularity, group_size)), xf, granularity, group_size)
        if best is None:
            best, best_err = c.copy(), err
        else:
            better = err < best_err
            best = np.where(better, c, best)
            best_err = np.where(better, err, best_err)
    return np.asarray(best, dtype=np.float32), np.asarray(best_err)


def search_int_scale(
    x: np.ndarray,
    bits: int,
    granularity: Granularity = "row",
    group_size: int | None = None,
    *,
    narrow: bool = True,
    factors: Sequence[float] | None = None,
) -> np.ndarray:
    """MSE clipping search for a symmetric intN scale.

    Candidates are ``f * absmax_scale`` for ``f`` in ``factors`` (default: 1.0 first, then
    0.30..0.98 in steps of 0.02); the max-abs scale comes first, so the result is never worse than
    max-abs in MSE.

    Returns
    -------
    np.ndarray
        float32 scales in the compact shape.
    """
    lo, hi = int_range(bits, narrow=narrow)
    xf = check_finite(x, "search_int_scale input")
    base = absmax_scale(xf, hi, granularity, group_size)
    if factors is None:
        factors = [1.0] + [round(0.30 + 0.02 * i, 2) for i in range(35)]
    for f in factors:
        if not (isinstance(f, (int, float)) and f > 0):
            raise FormatError(f"scale search factors must be positive numbers, got {f!r}")
    cands = [base * np.float32(f) for f in factors]
    best, _ = mse_search_scale(xf, lambda a, s: fake_quant_int(a, s, bits, narrow=narrow), cands, granularity, group_size)
    return best
