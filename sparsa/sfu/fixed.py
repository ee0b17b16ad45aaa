"""The special-function unit's number format and its integer primitives.

Every value the SFU reads or writes between its operations is an **fx** number: a signed
``FX_BITS``-bit two's-complement integer with ``FX_FRAC`` fraction bits, so the integer ``v``
stands for the real ``v * 2**-FX_FRAC`` (range ``[-32768, 32768)``, step ``2**-16`` ~ 1.5e-5).
Operations compose four primitives, each defined on exact integers:

* :func:`rne_shift` - divide by ``2**s`` and round to nearest, ties to even (``s < 0`` shifts left);
* :func:`saturate` - clip to a signed width;
* :func:`rne_div` - exact rounding division of integers (ties to even);
* :func:`floor_sqrt` - the integer square root ``floor(sqrt(n))``.

The NumPy functions take and return ``int64`` arrays; every intermediate value of every SFU
operation is bounded below ``2**62`` (each operation's docstring says why), so ``int64`` is exact.
The scalar functions take Python ints (one per row: reciprocals and square roots).
"""

from __future__ import annotations

import math

import numpy as np

from sparsa.errors import FormatError

__all__ = [
    "FX_BITS",
    "FX_FRAC",
    "FX_ONE",
    "FX_MIN",
    "FX_MAX",
    "MANT_BITS",
    "rne_shift",
    "saturate",
    "saturate_fx",
    "shift_saturate_fx",
    "as_fx",
    "rne_div",
    "floor_sqrt",
    "to_fx",
    "from_fx",
    "normalized_reciprocal",
    "normalized_rsqrt",
    "scale_mantissa",
    "scale_exponent",
]

#: Width of an fx value.
FX_BITS = 32
#: Fraction bits of an fx value.
FX_FRAC = 16
#: The fx code of 1.0.
FX_ONE = 1 << FX_FRAC
#: Smallest and largest fx codes.
FX_MIN = -(1 << (FX_BITS - 1))
FX_MAX = (1 << (FX_BITS - 1)) - 1
#: Width of a normalised mantissa from the scalar unit: ``2**(MANT_BITS-1) <= m < 2**MANT_BITS``.
MANT_BITS = 16


def rne_shift(x: np.ndarray | int, s: int | np.ndarray) -> np.ndarray:
    """``x / 2**s`` rounded to the nearest integer, ties to even; ``s <= 0`` is an exact left shift.

    ``floor((x + 2**(s-1) - 1 + q0) / 2**s)`` with ``q0`` the lowest bit of ``floor(x / 2**s)``
    (the hardware adds ``2**(s-1) - 1`` plus that bit and shifts).

    Parameters
    ----------
    x : array of int64
        Values to shift.
    s : int or array of int
        Shift, broadcast against ``x``.
    """
    xa = np.asarray(x, dtype=np.int64)
    sa = np.asarray(s, dtype=np.int64)
    right = np.maximum(sa, 0)
    left = np.maximum(-sa, 0)
    half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
    lsb = np.right_shift(xa, right) & 1
    shifted = np.right_shift(xa + half - 1 + lsb, right)
    rounded = np.where(right > 0, shifted, xa)
    return np.left_shift(rounded, left)


def saturate(x: np.ndarray, bits: int) -> np.ndarray:
    """Clip to the signed ``bits``-bit range ``[-2**(bits-1), 2**(bits-1) - 1]``."""
    return np.clip(np.asarray(x, dtype=np.int64), -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def saturate_fx(x: np.ndarray) -> np.ndarray:
    """Clip to the fx range."""
    return saturate(x, FX_BITS)


def as_fx(x: np.ndarray | int, name: str) -> np.ndarray:
    """``x`` as int64 fx codes, refused (:class:`~sparsa.errors.FormatError` naming ``name``) when
    not integers or outside the fx range ``[FX_MIN, FX_MAX]``."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise FormatError(f"{name}: fx codes must be integers, not dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < FX_MIN or a.max() > FX_MAX):
        raise FormatError(f"{name}: fx codes must be in [{FX_MIN}, {FX_MAX}] (fit {FX_BITS} bits), got "
                          f"[{a.min()}, {a.max()}]")
    return a


def shift_saturate_fx(x: np.ndarray | int, s: int | np.ndarray) -> np.ndarray:
    """``saturate_fx(rne_shift(x, s))`` of the true value, for every shift the lanes take.

    :func:`rne_shift` computes in int64, so a left shift (``s < 0``) of a large ``x`` would wrap
    before it saturates; the lanes saturate the true value.  A left shift saturates as soon as
    ``|x| >= 2**31`` or, for ``x != 0``, by 31 places or more, so ``x`` is clipped to
    ``+-2**31`` and the shift to 31 places first: the same result, and no int64 can wrap.

    A right shift rounds from ``h = floor(x / 2**(s-1))`` (the kept bits and the half bit) and
    whether any lower bit is set, so no addition can wrap either: ``x`` may take every value of
    an int64 but ``-2**63`` (REQUANT_ROW's product of an fx value and two 16-bit mantissas,
    ``|x| < 2**63``).

    Parameters
    ----------
    x : array of int64
        Values, ``|x| < 2**63``.
    s : int or array of int
        Shift in ``[-64, 63]``, broadcast against ``x``.
    """
    xa = np.asarray(x, dtype=np.int64)
    sa = np.asarray(s, dtype=np.int64)
    left = np.minimum(np.maximum(-sa, 0), FX_BITS - 1)
    clipped = np.clip(xa, FX_MIN, -FX_MIN)
    right = np.maximum(sa, 1)
    h = np.right_shift(xa, right - 1)                           # floor(x / 2**(s-1))
    sticky = (xa & (np.left_shift(np.int64(1), right - 1) - 1)) != 0
    q = h >> 1
    rounded = q + ((h & 1) & (sticky | (q & 1)))
    return saturate_fx(np.where(sa < 0, np.left_shift(clipped, left), np.where(sa == 0, xa, rounded)))


def rne_div(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``n / d`` rounded to the nearest integer, ties to even (``d > 0``), exact.

    The hardware runs a restoring division (quotient and remainder) and rounds up when twice
    the remainder exceeds ``d``, or equals it with an odd quotient.
    """
    na = np.asarray(n, dtype=np.int64)
    da = np.asarray(d, dtype=np.int64)
    if np.any(da <= 0):
        raise FormatError(f"rne_div: divisors must be positive, got {da[da <= 0].ravel()[:3].tolist()}")
    q, r = np.divmod(na, da)                      # floor division: 0 <= r < d
    up = (2 * r > da) | ((2 * r == da) & (q & 1 == 1))
    return q + up


def floor_sqrt(n: int) -> int:
    """``floor(sqrt(n))`` of a non-negative integer (the hardware's digit-by-digit square root)."""
    if n < 0:
        raise FormatError(f"floor_sqrt of a negative number {n}")
    return math.isqrt(n)


def to_fx(x: np.ndarray | float) -> np.ndarray:
    """Float64 -> fx codes: ``round_half_even(x * 2**16)``, saturated (host-side, for tables and inputs)."""
    xf = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(xf)):
        raise FormatError("to_fx: values must be finite")
    scaled = np.clip(np.rint(np.ldexp(xf, FX_FRAC)), FX_MIN, FX_MAX)
    return scaled.astype(np.int64)


def from_fx(v: np.ndarray) -> np.ndarray:
    """fx codes -> float64 (exact)."""
    return np.ldexp(np.asarray(v, dtype=np.float64), -FX_FRAC)


def _normalize(value_of_e, e: int) -> tuple[int, int]:
    """Step ``e`` until ``value_of_e(e)`` is a normalised mantissa (monotone in ``e``)."""
    lo, hi = 1 << (MANT_BITS - 1), 1 << MANT_BITS
    for _ in range(256):
        m = value_of_e(e)
        if m >= hi:
            e -= 1
        elif m < lo:
            e += 1
        else:
            return m, e
    raise AssertionError("normalisation did not converge")  # pragma: no cover - monotone, converges


def normalized_reciprocal(d: int) -> tuple[int, int]:
    """``(m, e)`` with ``m = floor(2**e / d)`` in ``[2**15, 2**16)``: ``m * 2**-e`` ~ ``1/d``.

    ``m * 2**-e <= 1/d < (m + 1) * 2**-e``, so the relative error is below ``2**-15``.

    Parameters
    ----------
    d : int
        Positive integer.
    """
    if d <= 0:
        raise FormatError(f"normalized_reciprocal of a non-positive number {d}")
    return _normalize(lambda e: ((1 << e) // d) if e >= 0 else 0, d.bit_length() + MANT_BITS - 1)


def normalized_rsqrt(d: int, n: int = 1) -> tuple[int, int]:
    """``(m, e)`` with ``m = floor(sqrt(floor(n * 2**(2e) / d)))`` in ``[2**15, 2**16)``:
    ``m * 2**-e`` ~ ``sqrt(n / d)``.

    ``floor(sqrt(floor(a))) == floor(sqrt(a))`` for ``a >= 0``, so ``m`` is ``sqrt(n/d) * 2**e``
    rounded down: relative error below ``2**-15``.  The hardware divides (restoring, bit-serial)
    and takes the digit-by-digit square root of the quotient.

    Parameters
    ----------
    d : int
        Positive integer.
    n : int
        Positive integer numerator (a norm's element count).
    """
    if d <= 0 or n <= 0:
        raise FormatError(f"normalized_rsqrt needs positive integers, got d={d}, n={n}")
    def mantissa(e: int) -> int:
        return floor_sqrt((n << (2 * e)) // d if e >= 0 else n // (d << (-2 * e)))

    return _normalize(mantissa, (d.bit_length() - n.bit_length()) // 2 + MANT_BITS)


def scale_mantissa(amax: int, e: int, qmax: int) -> int:
    """``ceil(amax * 2**(e-16) / qmax)``, exact: an activation-scale mantissa for a unit whose
    largest magnitude is the fx code ``amax`` (the scale ``m * 2**-e`` never clips a code)."""
    if amax < 0 or qmax <= 0:
        raise FormatError(f"scale_mantissa needs amax >= 0 and qmax > 0, got {amax}, {qmax}")
    if e >= FX_FRAC:
        return -(-(amax << (e - FX_FRAC)) // qmax)
    return -(-amax // (qmax << (FX_FRAC - e)))


def scale_exponent(top: int, qmax: int, mantissa_bits: int) -> int:
    """The shared exponent of a tensor whose largest magnitude is ``top``: the largest ``e`` with
    ``scale_mantissa(top, e, qmax) < 2**mantissa_bits`` (0 for an all-zero tensor)."""
    if top < 0 or qmax <= 0 or mantissa_bits < 1:
        raise FormatError(f"scale_exponent needs top >= 0, qmax > 0, mantissa_bits >= 1, "
                          f"got {top}, {qmax}, {mantissa_bits}")
    if top == 0:
        return 0
    mmax = (1 << mantissa_bits) - 1
    e = FX_FRAC + mmax.bit_length() - (-(-top // qmax)).bit_length()
    while scale_mantissa(top, e, qmax) > mmax:
        e -= 1
    while scale_mantissa(top, e + 1, qmax) <= mmax:
        e += 1
    return e
