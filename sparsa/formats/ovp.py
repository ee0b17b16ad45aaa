"""Outlier-victim pair (OVP) quantization, OliVe style: bit-exact NumPy reference.

Size: one format's whole bit-exact specification (grids, pair rules, encode/decode, scale search,
calibration); every part is the normative reference of docs/formats/ovp.md and used by the others.

The normative description (bit layouts, grids, pair and tie rules) is ``docs/formats/ovp.md``;
the hardware decoders mirror :func:`decode_to_exp_int`.  Summary:

* Elements ``(2k, 2k+1)`` along the **last axis** (the reduction axis of a weight row ``[out, in]``)
  form a pair.  An odd last axis is a :class:`~sparsa.errors.FormatError` (pad a zero column).
* Each element is rounded to the nearest point of ``normal grid U outlier grid``; a tie between a
  normal and an outlier point goes to the normal point.  An element that lands on an outlier point
  is an outlier; its partner becomes the *victim* (stored as the victim code, value 0).
  **Both outliers:** the element with the larger ``|x|`` stays, ties keep the even element; the
  other becomes the victim.
* Formats (codes are ``bits`` wide, victim code ``1 << (bits-1)``, i.e. ``1000`` / ``0x80``):

  ========== ======== =================================== =========================================
  name       bits     normal (value = magnitude)           outlier ``sign | exp | mant``
  ========== ======== =================================== =========================================
  ovp4-int4  4        int4 two's complement, [-7, 7]       E2M1, ``(2 + m) << (e + 2)``
  ovp4-flint4 4       flint4 sign-magnitude, 0..16         E2M1, ``(2 + m) << (e + 3)``
  ovp8       8        int8 two's complement, [-127, 127]   E3M4, ``(16 + m) << (e + 3)``
  ========== ======== =================================== =========================================

  The outlier field ``e = 0, m = 0`` is **reserved** in every format (it would be ``+-8`` /
  ``+-16`` / ``+-128``; its negative form would make the pair ``victim|victim`` ambiguous).
* OVP-4 packs a pair in one byte: **even element in the low nibble** (bits 3:0), odd element in the
  high nibble.  OVP-8 stores one byte per element in element order.
* Values are integers in *units* of the scale (int4 / flint / int8 steps):
  ``x ~= decode(codes) * scale``; the hardware view is ``value = integer << exponent``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sparsa.errors import FormatError, ShapeError

from .intq import FLINT4_MAGNITUDES, Granularity, absmax, check_finite, check_scale, mse_search_scale

__all__ = [
    "OVPFormat",
    "OVP4_INT4",
    "OVP4_FLINT4",
    "OVP8",
    "FORMATS",
    "DEFAULT_FACTORS",
    "get_format",
    "quantize_values",
    "fake_quant",
    "encode",
    "decode",
    "dequantize",
    "decode_to_exp_int",
    "exp_int_tables",
    "ExpIntTables",
    "reserved_pair_codes",
    "is_outlier",
    "search_scale",
    "choose_format",
    "OVPTensor",
    "quantize_weight",
    "calibrate_activation",
]

#: Scale-search factors applied to ``max(|mean +- 3 std|) / normal_max``: 0.75, 0.80, ..., 2.50.
DEFAULT_FACTORS: tuple[float, ...] = tuple(round(0.75 + 0.05 * i, 2) for i in range(36))

# (exponent, integer) of the flint4 magnitudes 0, 1, 2, 3, 4, 6, 8, 16 (integer magnitude <= 3).
_FLINT4_EXP_INT: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (3, 2))


@dataclass(frozen=True)
class OVPFormat:
    """One OVP number format (immutable; use the module constants).

    Attributes
    ----------
    name : str
        ``"ovp4-int4"``, ``"ovp4-flint4"`` or ``"ovp8"``.
    bits : int
        Code width per element (4 or 8).
    normal : str
        ``"int"`` (two's complement, narrow range) or ``"flint4"`` (sign-magnitude).
    exp_bits, mant_bits, bias : int
        Outlier abfloat: magnitude ``((1 << mant_bits) + m) << (e + bias)``.
    """

    name: str
    bits: int
    normal: str
    exp_bits: int
    mant_bits: int
    bias: int

    @property
    def victim_code(self) -> int:
        """The victim identifier: the most negative two's-complement code (``1000`` / ``0x80``)."""
        return 1 << (self.bits - 1)

    @property
    def code_mask(self) -> int:
        """All ones over one element's code."""
        return (1 << self.bits) - 1

    @cached_property
    def normal_magnitudes(self) -> np.ndarray:
        """Normal grid magnitudes (float32), index = magnitude field for flint4, = value for int."""
        if self.normal == "flint4":
            return np.array(FLINT4_MAGNITUDES, dtype=np.float32)
        return np.arange(self.victim_code, dtype=np.float32)

    @property
    def normal_max(self) -> int:
        """Largest normal magnitude (7, 16 or 127)."""
        return int(self.normal_magnitudes[-1])

    @cached_property
    def outlier_magnitudes(self) -> np.ndarray:
        """Outlier magnitudes (float32) for outlier fields ``k = e << mant_bits | m = 1, 2, ...``."""
        k = np.arange(1, 1 << (self.exp_bits + self.mant_bits))
        e, m = k >> self.mant_bits, k & ((1 << self.mant_bits) - 1)
        return (((1 << self.mant_bits) + m) << (e + self.bias)).astype(np.float32)

    @property
    def outlier_max(self) -> int:
        """Largest outlier magnitude (96, 192 or 31744)."""
        return int(self.outlier_magnitudes[-1])

    @property
    def pair_bytes(self) -> int:
        """Bytes per pair (1 for OVP-4, 2 for OVP-8)."""
        return self.bits // 4


OVP4_INT4 = OVPFormat("ovp4-int4", bits=4, normal="int", exp_bits=2, mant_bits=1, bias=2)
OVP4_FLINT4 = OVPFormat("ovp4-flint4", bits=4, normal="flint4", exp_bits=2, mant_bits=1, bias=3)
OVP8 = OVPFormat("ovp8", bits=8, normal="int", exp_bits=3, mant_bits=4, bias=3)
FORMATS: dict[str, OVPFormat] = {f.name: f for f in (OVP4_INT4, OVP4_FLINT4, OVP8)}


def get_format(fmt: OVPFormat | str) -> OVPFormat:
    """Return the :class:`OVPFormat` for a format or its name (FormatError for unknown names)."""
    if isinstance(fmt, OVPFormat):
        return fmt
    if isinstance(fmt, str) and fmt in FORMATS:
        return FORMATS[fmt]
    raise FormatError(f"unknown OVP format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------
# quantization to fields
# --------------------------------------------------------------------------------------------


def _pairs(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[:-1] + (a.shape[-1] // 2, 2))


_CHUNK = 1 << 16  # elements per block: keeps the per-element temporaries in cache


@dataclass(frozen=True)
class _Grid:
    """Rounding thresholds of one format, with the tie rules folded in (see :func:`_grid`)."""

    int_top: int  # normal magnitudes 0..int_top are consecutive integers (rint, ties to even)
    extra_points: tuple[float, ...]  # further normal magnitudes (flint4: 4, 6, 8, 16)
    extra_thresholds: tuple[float, ...]  # |v| >= threshold -> that point
    boundary: np.float32  # |v| >= boundary -> nearest point is an outlier point
    out_thresholds: np.ndarray  # outlier index = number of thresholds <= |v|
    out_mags: np.ndarray  # float32 outlier magnitudes (field k = index + 1)
    field_of_mag: np.ndarray  # uint8 normal magnitude field, indexed by the integer magnitude


_GRID_CACHE: dict[str, _Grid] = {}


def _threshold(lo: float, hi: float, to_upper: bool) -> np.float32:
    """Smallest |v| that rounds to ``hi``: the midpoint, or just above it when ties go to ``lo``."""
    mid = np.float32((lo + hi) / 2)
    return mid if to_upper else np.nextafter(mid, np.float32(np.inf))


def _grid(fm: OVPFormat) -> _Grid:
    """Thresholds of ``fm``, built once.

    Tie rules: between two normal points or two outlier points a tie goes to the point whose
    magnitude field is even (round-half-to-even on the code); between the largest normal point
    and the smallest outlier point a tie goes to the normal point.
    """
    if fm.name in _GRID_CACHE:
        return _GRID_CACHE[fm.name]
    nm = [float(m) for m in fm.normal_magnitudes]
    top = 0
    while top + 1 < len(nm) and nm[top + 1] == top + 1:
        top += 1
    extra_t = tuple(float(_threshold(nm[i - 1], nm[i], i % 2 == 0)) for i in range(top + 1, len(nm)))
    om = fm.outlier_magnitudes
    out_t = [_threshold(float(om[i]), float(om[i + 1]), (i + 2) % 2 == 0) for i in range(om.size - 1)]
    field_of_mag = np.zeros(int(nm[-1]) + 1, dtype=np.uint8)
    field_of_mag[np.array(nm, dtype=np.intp)] = np.arange(len(nm))
    g = _Grid(
        int_top=top,
        extra_points=tuple(nm[top + 1 :]),
        extra_thresholds=extra_t,
        boundary=_threshold(nm[-1], float(om[0]), False),
        out_thresholds=np.array(out_t, dtype=np.float32),
        out_mags=om,
        field_of_mag=field_of_mag,
    )
    _GRID_CACHE[fm.name] = g
    return g


def _quantize_chunk(
    x: np.ndarray, fm: OVPFormat, g: _Grid, want_codes: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Quantize one flat, pair-aligned chunk: (magnitudes, kept outlier positions, codes)."""
    a = np.abs(x)
    mag = np.rint(np.minimum(a, np.float32(g.int_top)))
    for point, t in zip(g.extra_points, g.extra_thresholds):
        mag[a >= t] = point
    is_cand = a >= g.boundary
    cand = np.flatnonzero(is_cand)
    keep = cand
    if cand.size:
        ac = a[cand]
        k = np.searchsorted(g.out_thresholds, ac, side="right")
        partner = cand ^ 1
        ap = a[partner]
        # both outliers: the larger |x| stays; equal magnitudes -> the even element stays
        lose = is_cand[partner] & ((ac < ap) | ((ac == ap) & (cand & 1 == 1)))
        keep, k = cand[~lose], k[~lose]
        normal_mag = mag  # normal codes are computed from these before outliers overwrite them
        if want_codes:
            normal_mag = mag.copy()
        mag[keep] = g.out_mags[k]
        mag[keep ^ 1] = 0
    else:
        normal_mag = mag
    code = None
    if want_codes:
        sign_bit = fm.victim_code
        neg = x < 0
        if fm.normal == "int":
            code = (np.where(neg, -normal_mag, normal_mag).astype(np.int16) & fm.code_mask).astype(np.uint8)
        else:
            code = g.field_of_mag[normal_mag.astype(np.intp)]
            code |= (neg & (normal_mag > 0)).astype(np.uint8) << (fm.bits - 1)
        if keep.size:
            code[keep] = (k + 1).astype(np.uint8) | (neg[keep].astype(np.uint8) << (fm.bits - 1))
            code[keep ^ 1] = sign_bit
    return mag, keep, code


def _quantize(v: np.ndarray, fm: OVPFormat, *, codes: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Round ``v = x / scale`` (even last axis) to OVP and apply the pair rule.

    Returns the signed values (float32, in units; victims 0), the outlier mask and, when
    ``codes`` is true, the per-element codes (uint8, element order, unpacked).
    """
    g = _grid(fm)
    flat = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
    val = np.empty(flat.shape, np.float32)
    out = np.zeros(flat.shape, bool)
    code = np.empty(flat.shape, np.uint8) if codes else None
    for lo in range(0, flat.size, _CHUNK):
        x = flat[lo : lo + _CHUNK]
        mag, keep, c = _quantize_chunk(x, fm, g, codes)
        np.copysign(mag, x, out=val[lo : lo + _CHUNK])
        out[lo + keep] = True
        if code is not None:
            code[lo : lo + _CHUNK] = c
    val += np.float32(0)  # -0.0 -> +0.0
    shape = np.shape(v)
    return val.reshape(shape), out.reshape(shape), None if code is None else code.reshape(shape)


def _prepare(x: np.ndarray, scale: np.ndarray | float, name: str) -> np.ndarray:
    xf = check_finite(x, name)
    if xf.ndim < 1:
        raise ShapeError(f"{name}: OVP needs at least a 1-D tensor, got a scalar")
    if xf.shape[-1] % 2:
        raise FormatError(
            f"{name}: OVP pairs need an even reduction (last-axis) length, got {xf.shape[-1]}; pad one zero column"
        )
    s = check_scale(scale, name)
    try:
        return xf / s
    except ValueError:
        raise ShapeError(f"{name}: scale shape {s.shape} does not broadcast to tensor shape {xf.shape}") from None


def quantize_values(
    x: np.ndarray, scale: np.ndarray | float, fmt: OVPFormat | str = OVP4_INT4, *, name: str = "tensor"
) -> np.ndarray:
    """OVP-quantized integer values in units of ``scale`` (int32); equals ``decode(encode(x, scale))``."""
    val, _, _ = _quantize(_prepare(x, scale, name), get_format(fmt), codes=False)
    return val.astype(np.int32)


def fake_quant(x: np.ndarray, scale: np.ndarray, fmt: OVPFormat | str = OVP4_INT4) -> np.ndarray:
    """Quantize-dequantize (float32) without argument checks (hot loop of the scale search)."""
    val, _, _ = _quantize(x / scale, get_format(fmt), codes=False)
    return val * scale


def is_outlier(x: np.ndarray, scale: np.ndarray | float, fmt: OVPFormat | str = OVP4_INT4) -> np.ndarray:
    """Boolean mask of the elements that :func:`encode` stores as outliers."""
    _, out, _ = _quantize(_prepare(x, scale, "tensor"), get_format(fmt), codes=False)
    return out


# --------------------------------------------------------------------------------------------
# codes
# --------------------------------------------------------------------------------------------


def encode(
    x: np.ndarray, scale: np.ndarray | float, fmt: OVPFormat | str = OVP4_INT4, *, name: str = "tensor"
) -> np.ndarray:
    """Encode a float tensor into packed OVP codes.

    Parameters
    ----------
    x : np.ndarray
        Float tensor, last axis = reduction axis, even length, finite.
    scale : array_like
        Positive scale(s) broadcastable to ``x`` (per row: shape ``(rows, 1)``).
    fmt : OVPFormat or str
        ``"ovp4-int4"`` (default), ``"ovp4-flint4"`` or ``"ovp8"``.
    name : str
        Tensor name for error messages.

    Returns
    -------
    np.ndarray
        uint8 codes: OVP-4 shape ``x.shape[:-1] + (K // 2,)`` (even element in the low nibble);
        OVP-8 shape ``x.shape`` (one byte per element).
    """
    fm = get_format(fmt)
    _, _, code = _quantize(_prepare(x, scale, name), fm, codes=True)
    if fm.bits == 8:
        return code
    p = _pairs(code)
    return p[..., 0] | (p[..., 1] << 4)


def _check_codes(codes: np.ndarray, fm: OVPFormat) -> np.ndarray:
    c = np.asarray(codes)
    if not np.issubdtype(c.dtype, np.integer) or (c.size and (c.min() < 0 or c.max() > 255)):
        raise FormatError(f"{fm.name}: codes must be uint8 bytes, got dtype {c.dtype}")
    if c.ndim < 1:
        raise ShapeError(f"{fm.name}: codes need at least a 1-D array, got a scalar")
    if fm.bits == 8 and c.shape[-1] % 2:
        raise FormatError(f"{fm.name}: codes need an even last axis (pairs of bytes), got {c.shape[-1]}")
    return c.astype(np.uint8, copy=False)


@dataclass(frozen=True)
class ExpIntTables:
    """Per-element decoder tables, indexed by an element's code (``2**bits`` entries each).

    ``normal_*`` apply when the partner's code is not the victim code (the victim code itself
    maps to ``(0, 0)``); ``outlier_*`` apply when the partner's code *is* the victim code.  The
    reserved outlier field (``e = m = 0``) keeps its natural abfloat value so a hardware decoder
    needs no special case; :func:`decode` rejects it.
    """

    normal_exp: np.ndarray
    normal_int: np.ndarray
    outlier_exp: np.ndarray
    outlier_int: np.ndarray


_TABLE_CACHE: dict[str, ExpIntTables] = {}


def exp_int_tables(fmt: OVPFormat | str = OVP4_INT4) -> ExpIntTables:
    """The per-element ``(exponent, integer)`` decoder tables of ``fmt`` (see :func:`decode_to_exp_int`)."""
    fm = get_format(fmt)
    if fm.name in _TABLE_CACHE:
        return _TABLE_CACHE[fm.name]
    n = 1 << fm.bits
    codes = np.arange(n)
    sign = codes >> (fm.bits - 1)
    low = codes & (fm.victim_code - 1)
    if fm.normal == "int":
        n_int = np.where(sign == 1, codes - n, codes)
        n_exp = np.zeros(n, dtype=np.int64)
    else:
        ei = np.array(_FLINT4_EXP_INT)
        n_exp = ei[low, 0]
        n_int = np.where(sign == 1, -ei[low, 1], ei[low, 1])
    n_int = np.where(codes == fm.victim_code, 0, n_int)
    e, m = low >> fm.mant_bits, low & ((1 << fm.mant_bits) - 1)
    o_exp = e + fm.bias
    o_int = np.where(sign == 1, -1, 1) * ((1 << fm.mant_bits) + m)
    t = ExpIntTables(n_exp.astype(np.uint8), n_int.astype(np.int8), o_exp.astype(np.uint8), o_int.astype(np.int8))
    _TABLE_CACHE[fm.name] = t
    return t


def _element_exp_int(code: np.ndarray, partner: np.ndarray, fm: OVPFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exponent, integer, reserved) of elements given their own and their partner's code."""
    t = exp_int_tables(fm)
    outlier = partner == fm.victim_code
    exp = np.where(outlier, t.outlier_exp[code], t.normal_exp[code])
    integer = np.where(outlier, t.outlier_int[code], t.normal_int[code])
    reserved = outlier & ((code & (fm.victim_code - 1)) == 0)  # includes victim|victim pairs
    return exp.astype(np.uint8), integer.astype(np.int8), reserved


@dataclass(frozen=True)
class _ByteTables:
    """OVP-4 decoding of every byte: (e0, i0, e1, i1) packed in a uint32, values, reserved flags."""

    exp_int: np.ndarray  # uint32: bytes e0, i0, e1, i1 (little-endian)
    values: np.ndarray  # uint64 holding two int32 values (even, odd)
    reserved: np.ndarray  # bool


_BYTE_CACHE: dict[str, _ByteTables] = {}


def _byte_tables(fm: OVPFormat) -> _ByteTables:
    if fm.name not in _BYTE_CACHE:
        b = np.arange(256)
        lo, hi = (b & 0xF).astype(np.uint8), (b >> 4).astype(np.uint8)
        e0, i0, r0 = _element_exp_int(lo, hi, fm)
        e1, i1, r1 = _element_exp_int(hi, lo, fm)
        packed = np.stack([e0, i0.view(np.uint8), e1, i1.view(np.uint8)], axis=-1).copy().view("<u4").reshape(256)
        vals = np.stack([i0.astype(np.int32) << e0, i1.astype(np.int32) << e1], axis=-1)
        _BYTE_CACHE[fm.name] = _ByteTables(packed, vals.copy().view("<u8").reshape(256), r0 | r1)
    return _BYTE_CACHE[fm.name]


def decode_to_exp_int(codes: np.ndarray, fmt: OVPFormat | str = OVP4_INT4) -> tuple[np.ndarray, np.ndarray]:
    """Hardware view: each element's code -> ``(exponent, integer)`` with value ``integer << exponent``.

    An element is an *outlier* when its partner's code is the victim code, else *normal*.
    Table for OVP-4 with int4 normals (``s`` = bit 3, outlier ``e`` = bits 2:1, ``m`` = bit 0)::

        code   normal (exp, int)      outlier (exp, int)
        0000   (0,  0)                (2,  2)  reserved (+8)
        0001   (0,  1)                (2,  3)  +12
        0010   (0,  2)                (3,  2)  +16
        0011   (0,  3)                (3,  3)  +24
        0100   (0,  4)                (4,  2)  +32
        0101   (0,  5)                (4,  3)  +48
        0110   (0,  6)                (5,  2)  +64
        0111   (0,  7)                (5,  3)  +96
        1000   (0,  0)  victim        (2, -2)  reserved (-8; only in pair 0x88)
        1001   (0, -7)                (2, -3)  -12
        1010   (0, -6)                (3, -2)  -16
        1011   (0, -5)                (3, -3)  -24
        1100   (0, -4)                (4, -2)  -32
        1101   (0, -3)                (4, -3)  -48
        1110   (0, -2)                (5, -2)  -64
        1111   (0, -1)                (5, -3)  -96

    ``ovp4-flint4``: normal ``s|idx`` with magnitudes 0, 1, 2, 3, 4, 6, 8, 16 ->
    (0,0) (0,1) (0,2) (0,3) (1,2) (1,3) (2,2) (3,2), sign from bit 3 (``1000`` = victim);
    outlier as above with exponent + 1 (bias 3).  ``ovp8``: normal (0, int8), victim ``0x80`` ->
    (0, 0); outlier ``s|eee|mmmm`` -> (e + 3, +-(16 + m)).  The tables themselves are
    :func:`exp_int_tables`.

    Parameters
    ----------
    codes : np.ndarray
        Packed codes as produced by :func:`encode`.
    fmt : OVPFormat or str
        The format.

    Returns
    -------
    (np.ndarray, np.ndarray)
        ``exponent`` (uint8) and ``integer`` (int8), one per element (last axis unpacked).
    """
    fm = get_format(fmt)
    c = _check_codes(codes, fm)
    if fm.bits == 4:
        quad = _byte_tables(fm).exp_int[c].view(np.uint8).reshape(c.shape[:-1] + (c.shape[-1], 2, 2))
        shape = c.shape[:-1] + (2 * c.shape[-1],)
        return quad[..., 0].reshape(shape), quad[..., 1].view(np.int8).reshape(shape)
    partner = _pairs(c)[..., ::-1].reshape(c.shape)
    exp, integer, _ = _element_exp_int(c, partner, fm)
    return exp, integer


def reserved_pair_codes(fmt: OVPFormat | str = OVP4_INT4) -> list[int]:
    """OVP-4 byte codes that :func:`encode` never emits (``0x08``, ``0x80``, ``0x88``)."""
    fm = get_format(fmt)
    if fm.bits != 4:
        raise FormatError(f"reserved byte codes are listed for OVP-4 only, not {fm.name!r}")
    return [int(b) for b in np.flatnonzero(_byte_tables(fm).reserved)]


def decode(codes: np.ndarray, fmt: OVPFormat | str = OVP4_INT4) -> np.ndarray:
    """Exact integer values (int32, in units of the scale) of packed OVP codes.

    Raises
    ------
    FormatError
        On a reserved code (outlier field ``e = m = 0``, or a victim|victim pair), naming the
        position of the first one.
    """
    fm = get_format(fmt)
    c = _check_codes(codes, fm)
    if fm.bits == 4:
        bt = _byte_tables(fm)
        bad = bt.reserved[c]
        if np.any(bad):
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise FormatError(f"{fm.name}: reserved pair code {int(c[pos]):#04x} at byte {pos}")
        return bt.values[c].view(np.int32).reshape(c.shape[:-1] + (2 * c.shape[-1],))
    partner = _pairs(c)[..., ::-1].reshape(c.shape)
    exp, integer, reserved = _element_exp_int(c, partner, fm)
    if np.any(reserved):
        pos = tuple(int(i) for i in np.argwhere(reserved)[0])
        raise FormatError(f"{fm.name}: reserved code {int(c[pos]):#04x} at element {pos}")
    return integer.astype(np.int32) << exp.astype(np.int32)


def dequantize(codes: np.ndarray, scale: np.ndarray | float, fmt: OVPFormat | str = OVP4_INT4) -> np.ndarray:
    """Float32 values ``decode(codes) * scale``."""
    return decode(codes, fmt).astype(np.float32) * np.asarray(scale, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# scales
# --------------------------------------------------------------------------------------------


def _candidates(
    x: np.ndarray, fm: OVPFormat, granularity: Granularity, factors: Sequence[float]
) -> list[np.ndarray]:
    """Max-abs scales first (normal_max and outlier_max), then ``f * max|mean +- 3 std| / normal_max``."""
    for f in factors:
        if not (isinstance(f, (int, float)) and f > 0):
            raise FormatError(f"scale search factors must be positive numbers, got {f!r}")
    amax = absmax(x, granularity)
    one = np.float32(1.0)
    if granularity == "tensor":
        mean, std = np.mean(x, dtype=np.float64), np.std(x, dtype=np.float64)
    else:
        mean, std = np.mean(x, axis=-1, keepdims=True, dtype=np.float64), np.std(x, axis=-1, keepdims=True, dtype=np.float64)
    alpha = np.maximum(np.abs(mean + 3 * std), np.abs(mean - 3 * std)).astype(np.float32)
    fallback = np.where(amax > 0, amax / np.float32(fm.normal_max), one)
    alpha_scale = np.where(alpha > 0, alpha / np.float32(fm.normal_max), fallback)
    cands = [fallback, np.where(amax > 0, amax / np.float32(fm.outlier_max), one)]
    cands += [(alpha_scale * np.float32(f)).astype(np.float32) for f in factors]
    return [np.maximum(c, np.float32(np.finfo(np.float32).tiny)) for c in cands]


def search_scale(
    x: np.ndarray,
    fmt: OVPFormat | str = OVP4_INT4,
    granularity: Granularity = "row",
    *,
    factors: Sequence[float] = DEFAULT_FACTORS,
    name: str = "tensor",
) -> tuple[np.ndarray, float]:
    """MSE search of OVP scales (per row for weights, per tensor for activations).

    Candidates, in order (earlier wins ties): ``max|x| / normal_max`` (no outliers, the plain
    int4-style scale), ``max|x| / outlier_max``, then ``f * max(|mean + 3 std|, |mean - 3 std|) /
    normal_max`` for each ``f`` in ``factors`` (default 0.75..2.50 step 0.05).  The result is never
    worse in MSE than either max-abs scale.  All-zero rows get scale 1.0; every candidate is
    clamped to at least the smallest normal float32 (1.18e-38), so "never worse" holds against the
    equally clamped max-abs scales.

    Returns
    -------
    (np.ndarray, float)
        float32 scales (``(rows..., 1)`` for ``"row"``, ``()`` for ``"tensor"``) and the total
        squared error summed over all elements.
    """
    fm = get_format(fmt)
    if granularity not in ("row", "tensor"):
        raise FormatError(f"OVP scales are per 'row' or per 'tensor', not {granularity!r}")
    xf = check_finite(x, name)
    if xf.ndim < 1 or xf.shape[-1] % 2:
        raise FormatError(f"{name}: OVP pairs need an even last-axis length, got shape {xf.shape}")
    cands = _candidates(xf, fm, granularity, factors)
    best, err = mse_search_scale(xf, lambda a, s: fake_quant(a, s, fm), cands, granularity)
    per_unit = xf.size if granularity == "tensor" else xf.shape[-1]
    return best, float(np.sum(err) * per_unit)


def choose_format(
    x: np.ndarray,
    bits: int = 4,
    granularity: Granularity = "row",
    *,
    factors: Sequence[float] = DEFAULT_FACTORS,
    name: str = "tensor",
) -> tuple[OVPFormat, np.ndarray]:
    """Pick the normal type per tensor by MSE (OVP-4: int4 vs flint4, ties -> int4) and its scales.

    Returns
    -------
    (OVPFormat, np.ndarray)
        The chosen format and its searched scales.
    """
    if bits == 8:
        s, _ = search_scale(x, OVP8, granularity, factors=factors, name=name)
        return OVP8, s
    if bits != 4:
        raise FormatError(f"OVP bits must be 4 or 8, not {bits!r}")
    s_int, e_int = search_scale(x, OVP4_INT4, granularity, factors=factors, name=name)
    s_fl, e_fl = search_scale(x, OVP4_FLINT4, granularity, factors=factors, name=name)
    return (OVP4_FLINT4, s_fl) if e_fl < e_int else (OVP4_INT4, s_int)


@dataclass(frozen=True)
class OVPTensor:
    """An encoded OVP tensor: packed codes, float32 scales and the format."""

    codes: np.ndarray
    scale: np.ndarray
    fmt: OVPFormat

    def values(self) -> np.ndarray:
        """Exact integer values (int32)."""
        return decode(self.codes, self.fmt)

    def dequantize(self) -> np.ndarray:
        """Float32 reconstruction."""
        return dequantize(self.codes, self.scale, self.fmt)

    @property
    def nbytes(self) -> int:
        """Storage: code bytes + 4 bytes per scale + 1 byte for the per-tensor format tag."""
        return int(self.codes.nbytes + 4 * np.asarray(self.scale).size + 1)


def quantize_weight(
    w: np.ndarray, bits: int = 4, *, factors: Sequence[float] = DEFAULT_FACTORS, name: str = "weight"
) -> OVPTensor:
    """Quantize a weight matrix ``[out, in]``: per-row MSE scales, normal type chosen per tensor."""
    wf = check_finite(w, name)
    if wf.ndim != 2:
        raise ShapeError(f"{name}: expected a 2-D weight [out, in], got shape {wf.shape}")
    fm, s = choose_format(wf, bits, "row", factors=factors, name=name)
    return OVPTensor(encode(wf, s, fm, name=name), s, fm)


def calibrate_activation(
    samples: np.ndarray, bits: int = 4, *, factors: Sequence[float] = DEFAULT_FACTORS, name: str = "activation"
) -> tuple[OVPFormat, float]:
    """Per-tensor activation format and scale from calibration samples ``[..., features]``."""
    fm, s = choose_format(samples, bits, "tensor", factors=factors, name=name)
    return fm, float(s)
