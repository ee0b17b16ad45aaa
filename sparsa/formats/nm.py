"""N:M structured sparsity: magnitude pruning, compression into values + indices, and back.

Conventions (``docs/formats/nm.md``)
------------------------------------
* Groups are ``m`` consecutive elements along the *reduction* axis (``axis``; for a GEMM
  weight ``W[k, n]`` that is axis 0, for a PyTorch-style ``W[out, in]`` axis 1).
* A reduction length that is not a multiple of ``m`` is padded with zeros up to the next
  multiple (the padding is never kept ahead of a nonzero).
* Pruning keeps the ``n`` values of largest magnitude in each group.  **Tie-break:** among
  equal magnitudes the lower index wins (a stable sort on ``-|w|``), so pruning is
  deterministic and idempotent.
* Compressed form: for every group, exactly ``n`` slots holding the kept values *in
  increasing index order*, and for each slot its index inside the group
  (``log2(m)`` bits).  A group with fewer than ``n`` nonzeros keeps zeros at the lowest
  free indices, so the compressed shape is always ``ceil(K / m) * n`` along the axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import FormatError, ShapeError

__all__ = ["NMCompressed", "prune", "compress", "decompress", "is_nm_sparse", "pack_indices", "unpack_indices"]


def _check_nm(n: int, m: int) -> None:
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise FormatError(f"N:M group size M must be a positive integer, not {m!r}")
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= m:
        raise FormatError(f"N:M needs 1 <= N <= M, got N={n!r}, M={m!r}")


def _grouped(w: np.ndarray, m: int, axis: int) -> tuple[np.ndarray, int]:
    """Move ``axis`` last, pad to a multiple of m and split into (..., groups, m)."""
    if w.ndim == 0:
        raise ShapeError("N:M needs at least a 1-D tensor, got a scalar")
    if w.shape[axis] == 0:
        raise ShapeError(f"N:M cannot group an empty reduction axis (shape {w.shape})")
    moved = np.moveaxis(w, axis, -1)
    k = moved.shape[-1]
    groups = -(-k // m)
    pad = groups * m - k
    if pad:
        moved = np.concatenate([moved, np.zeros(moved.shape[:-1] + (pad,), dtype=moved.dtype)], axis=-1)
    return moved.reshape(moved.shape[:-1] + (groups, m)), k


def _kept_positions(grouped: np.ndarray, n: int) -> np.ndarray:
    """Indices (ascending) of the n largest magnitudes per group, ties to the lower index."""
    if np.issubdtype(grouped.dtype, np.floating) and not np.all(np.isfinite(grouped)):
        raise FormatError("N:M pruning got NaN or inf values")
    mag = np.abs(grouped.astype(np.float64) if np.issubdtype(grouped.dtype, np.integer) else grouped)
    order = np.argsort(-mag, axis=-1, kind="stable")[..., :n]
    return np.sort(order, axis=-1)


def prune(weights: np.ndarray, n: int, m: int, axis: int = 0) -> np.ndarray:
    """Zero all but the ``n`` largest-magnitude values in every group of ``m`` along ``axis``.

    Parameters
    ----------
    weights : np.ndarray
        Dense tensor (any numeric dtype).
    n, m : int
        Keep ``n`` of every ``m`` consecutive values along ``axis``.
    axis : int
        The reduction axis.

    Returns
    -------
    np.ndarray
        Same shape and dtype as ``weights``; at most ``n`` nonzeros per group.
    """
    _check_nm(n, m)
    w = np.asarray(weights)
    grouped, k = _grouped(w, m, axis)
    keep = _kept_positions(grouped, n)
    mask = np.zeros(grouped.shape, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=-1)
    pruned = np.where(mask, grouped, np.zeros((), dtype=grouped.dtype))
    flat = pruned.reshape(pruned.shape[:-2] + (-1,))[..., :k]
    return np.moveaxis(flat, -1, axis).astype(w.dtype, copy=False)


def is_nm_sparse(weights: np.ndarray, n: int, m: int, axis: int = 0) -> bool:
    """True when no group of ``m`` along ``axis`` holds more than ``n`` nonzeros."""
    _check_nm(n, m)
    grouped, _ = _grouped(np.asarray(weights), m, axis)
    return bool(np.all(np.count_nonzero(grouped, axis=-1) <= n))


@dataclass(frozen=True)
class NMCompressed:
    """An N:M-compressed tensor.

    Attributes
    ----------
    values : np.ndarray
        Kept values with the reduction axis (at ``axis``) of length ``groups * n``.
    indices : np.ndarray (uint8)
        Position of each kept value inside its group, same shape as ``values``.
    n, m : int
        The pattern.
    axis : int
        Reduction axis of the original tensor.
    length : int
        Original (unpadded) reduction length.
    """

    values: np.ndarray
    indices: np.ndarray
    n: int
    m: int
    axis: int
    length: int

    @property
    def groups(self) -> int:
        """Number of groups along the reduction axis, ``ceil(length / m)``."""
        return -(-self.length // self.m)

    @property
    def index_bits(self) -> int:
        """Bits per stored index, ``ceil(log2(m))`` (0 for m == 1)."""
        return max(0, int(self.m - 1).bit_length())


def compress(weights: np.ndarray, n: int, m: int, axis: int = 0) -> NMCompressed:
    """Prune ``weights`` to N:M along ``axis`` and pack the kept values with their indices.

    A tensor that already is N:M-sparse keeps all its nonzeros (``decompress(compress(w)) == w``).
    """
    _check_nm(n, m)
    w = np.asarray(weights)
    axis = axis % w.ndim if w.ndim else 0
    grouped, k = _grouped(w, m, axis)
    keep = _kept_positions(grouped, n)
    vals = np.take_along_axis(grouped, keep, axis=-1)
    lead = grouped.shape[:-2]
    vals = np.moveaxis(vals.reshape(lead + (-1,)), -1, axis)
    idx = np.moveaxis(keep.astype(np.uint8).reshape(lead + (-1,)), -1, axis)
    return NMCompressed(values=vals, indices=idx, n=n, m=m, axis=axis, length=k)


def decompress(c: NMCompressed) -> np.ndarray:
    """Rebuild the dense (pruned) tensor from its compressed form."""
    vals = np.moveaxis(c.values, c.axis, -1)
    idx = np.moveaxis(c.indices, c.axis, -1).astype(np.int64)
    lead = vals.shape[:-1]
    groups = c.groups
    vals = vals.reshape(lead + (groups, c.n))
    idx = idx.reshape(lead + (groups, c.n))
    dense = np.zeros(lead + (groups, c.m), dtype=vals.dtype)
    np.put_along_axis(dense, idx, vals, axis=-1)
    flat = dense.reshape(lead + (groups * c.m,))[..., : c.length]
    return np.moveaxis(flat, -1, c.axis)


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Pack indices into a little-endian bit stream, element 0 at bit 0 of byte 0.

    The stream is padded with zero bits to a whole byte.
    """
    if bits < 1 or bits > 8:
        raise FormatError(f"index width must be 1..8 bits, not {bits!r}")
    flat = np.asarray(indices, dtype=np.uint8).ravel()
    if flat.size and int(flat.max()) >> bits:
        raise FormatError(f"index {int(flat.max())} does not fit in {bits} bits")
    bitarr = ((flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8).ravel()
    return np.packbits(bitarr, bitorder="little").tobytes()


def unpack_indices(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: ``count`` indices of ``bits`` bits."""
    if bits < 1 or bits > 8:
        raise FormatError(f"index width must be 1..8 bits, not {bits!r}")
    need = -(-count * bits // 8)
    if len(data) < need:
        raise FormatError(f"index stream has {len(data)} bytes, {need} needed for {count} x {bits}-bit indices")
    bitarr = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: count * bits]
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    return (bitarr.reshape(count, bits).astype(np.uint16) @ weights).astype(np.uint8)
