"""NumPy golden references for the datapath's integer arithmetic."""

from __future__ import annotations

import numpy as np

from sparsa.errors import FormatError

__all__ = ["wrap", "int_range", "check_int_range", "gemm_reference"]


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Reduce integers to ``bits``-bit two's complement (what a wrapping accumulator holds)."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    half = np.int64(1) << np.int64(bits - 1)
    return ((x + half) & ((half << np.int64(1)) - 1)) - half


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
