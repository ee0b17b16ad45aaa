"""NumPy golden references for the datapath's integer arithmetic.

With OVP operands every value is an integer in units of its scale (int4 units for OVP-4), i.e.
what ``sparsa.formats.ovp.decode`` returns; the golden GEMM is then the same exact
``A_decoded @ W_decoded``.  :func:`encode_ovp4_exact` is the strict (no rounding) encoder the
compiler and the program use to turn such values back into the codes the hardware streams.
"""

from __future__ import annotations

import numpy as np

from sparsa.errors import FormatError
from sparsa.formats import FORMATS

__all__ = ["wrap", "wrap_exact", "int_range", "check_int_range", "gemm_reference", "check_ovp4_range", "encode_ovp4_exact",
           "OVP4_MAX"]

#: Largest magnitude of an OVP-4 (int4 normals) value, in int4 units (its largest outlier, 96).
OVP4_MAX: int = FORMATS["ovp4"].max_magnitude


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Reduce integers to ``bits``-bit two's complement (what a wrapping accumulator holds)."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    half = np.int64(1) << np.int64(bits - 1)
    return ((x + half) & ((half << np.int64(1)) - 1)) - half


def wrap_exact(x: np.ndarray, bits: int) -> np.ndarray:
    """:func:`wrap` for exact integers that may exceed int64 (object arrays of Python ints)."""
    arr = np.asarray(x)
    if arr.dtype != object:
        return wrap(arr, bits)
    half = 1 << (bits - 1)
    return np.vectorize(lambda v: ((int(v) + half) % (half << 1)) - half, otypes=[np.int64])(arr)


def int_range(bits: int) -> tuple[int, int]:
    """The (min, max) of a signed ``bits``-bit integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def check_int_range(x: np.ndarray, bits: int, what: str) -> np.ndarray:
    """Return ``x`` as int64 after checking every value fits a signed ``bits``-bit integer.

    Raises
    ------
    FormatError
        Names ``what``, the first offending value and its position.
    """
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise FormatError(f"{what} contains NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise FormatError(f"{what} must hold integers (quantize first), got non-integer values")
    elif arr.dtype.kind not in "iub":
        raise FormatError(f"{what} must be an integer array, not dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = int_range(bits)
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FormatError(f"{what} value {int(arr[pos])} at {pos} is not int{bits}-representable ({lo}..{hi})")
    return arr


def gemm_reference(a: np.ndarray, w: np.ndarray, accumulator_bits: int) -> np.ndarray:
    """Exact ``a @ w`` in int64, wrapped to the accumulator width (wrap is mod 2^bits, so order-free)."""
    a = np.asarray(a, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if a.shape[1] != w.shape[0]:
        raise FormatError(f"GEMM shapes do not chain: A is {a.shape}, W is {w.shape}")
    if a.size == 0 or w.size == 0:
        return np.zeros((a.shape[0], w.shape[1]), dtype=np.int64)
    bound = int(np.abs(a).max()) * int(np.abs(w).max()) * a.shape[1]
    if bound < (1 << 53):
        # Every partial sum is an integer below 2^53, so float64 BLAS is exact (and 100x faster
        # than NumPy's integer matmul loop).
        exact = np.rint(a.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    else:
        exact = a @ w
    return wrap(exact, accumulator_bits)


def check_ovp4_range(x: np.ndarray, what: str) -> np.ndarray:
    """Return ``x`` as int64 after checking it holds integers within the OVP-4 range ``-96..96``.

    Raises
    ------
    FormatError
        Names ``what``, the first offending value and its position.
    """
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise FormatError(f"{what} contains NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise FormatError(f"{what} must hold integers (OVP-4 values in int4 units; quantize first)")
    elif arr.dtype.kind not in "iub":
        raise FormatError(f"{what} must be an integer array, not dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = np.abs(arr) > OVP4_MAX
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FormatError(
            f"{what} value {int(arr[pos])} at {pos} is outside the OVP-4 range {-OVP4_MAX}..{OVP4_MAX}")
    return arr


def encode_ovp4_exact(values: np.ndarray, what: str) -> np.ndarray:
    """OVP-4 (int4 normals) codes of integer ``values`` whose pairs are exactly representable.

    Pairs are elements ``(2k, 2k+1)`` of the last axis (even length).  A pair is representable
    when both values are int4 normals (``-7..7``) or one is an outlier (``+-12 .. +-96`` on the
    E2M1 grid) and the other is 0 (the victim).  Returns the packed bytes of
    ``sparsa.formats.ovp.encode`` (even element in the low nibble).

    Raises
    ------
    FormatError
        A value is out of range or its pair is not representable (naming value, position and
        partner).
    """
    from sparsa.formats import ovp

    v = check_ovp4_range(values, what)
    if v.shape[-1] % 2:
        raise FormatError(f"{what}: OVP-4 pairs need an even last-axis length, got {v.shape[-1]}")
    codes = ovp.encode(v.astype(np.float32), 1.0, ovp.OVP4_INT4, name=what)
    back = ovp.decode(codes, ovp.OVP4_INT4).astype(np.int64)
    bad = back != v
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        partner = pos[:-1] + (pos[-1] ^ 1,)
        raise FormatError(
            f"{what} value {int(v[pos])} at {pos} is not OVP-4 representable with its pair partner "
            f"{int(v[partner])} at {partner}: a pair holds two values in -7..7, or one outlier "
            f"(+-12, 16, 24, 32, 48, 64, 96) and a 0")
    return codes
