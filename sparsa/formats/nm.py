"""N:M structured sparsity: the pattern, its one parser and its one keep-mask; pruning,
compression into values + indices, and back.

Conventions (``docs/formats/nm.md``)
------------------------------------
* A pattern ``N:M`` keeps at most ``n`` nonzeros in every group of ``m``; ``m`` is one of
  :data:`GROUP_SIZES` and ``1 <= n <= m`` (``n == m`` is dense).  Text is ``"N:M"`` or
  ``"dense"``; :func:`parse_nm` is the only parser of that text, :func:`check_nm` the only check
  of the numbers, and :class:`NMPattern` the pattern type of the config and the compiler.
* Groups are ``m`` consecutive elements along the *reduction* axis (``axis``; for a GEMM
  weight ``W[k, n]`` that is axis 0, for a PyTorch-style ``W[out, in]`` axis 1).
* A reduction length that is not a multiple of ``m`` is padded up to the next multiple (the
  padding is never kept ahead of a real element).
* :func:`keep_mask` keeps the ``n`` highest scores in each group (pruning: magnitudes).
  **Tie-break:** among equal scores the lower index wins (the order of a stable sort on
  ``-score``), so pruning is deterministic and idempotent.  Every mask of the project (pruning,
  compression, calibrated pruning, sparse training) is this function.
* Compressed form: for every group, exactly ``n`` slots holding the kept values *in
  increasing index order*, and for each slot its index inside the group
  (``log2(m)`` bits).  A group with fewer than ``n`` nonzeros keeps zeros at the lowest
  free indices, so the compressed shape is always ``ceil(K / m) * n`` along the axis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from sparsa.errors import ConfigError, FormatError, ShapeError

__all__ = [
    "GROUP_SIZES",
    "check_nm",
    "parse_nm",
    "NMPattern",
    "keep_mask",
    "NMCompressed",
    "prune",
    "compress",
    "decompress",
    "is_nm_sparse",
    "pack_indices",
    "unpack_indices",
]

#: Group sizes M of the N:M pattern (and of the sparse MUX that selects 1 of M activations).
GROUP_SIZES: tuple[int, ...] = (2, 4, 8, 16)

_NM_TEXT = re.compile(r"\s*([0-9]+)\s*:\s*([0-9]+)\s*")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _show(value: object) -> str:
    return str(int(value)) if _is_int(value) else repr(value)


def check_nm(n: object, m: object) -> tuple[int, int]:
    """Check the numbers of an N:M pattern: ``m`` in :data:`GROUP_SIZES`, ``1 <= n <= m``.

    Returns
    -------
    tuple of int
        ``(n, m)`` as Python ints.

    Raises
    ------
    FormatError
        ``N:M group size M must be one of 2, 4, 8, 16, not <m>`` or
        ``N:M needs 1 <= N <= M, got <n>:<m>``.
    """
    if not _is_int(m) or int(m) not in GROUP_SIZES:
        sizes = ", ".join(str(s) for s in GROUP_SIZES)
        raise FormatError(f"N:M group size M must be one of {sizes}, not {_show(m)}")
    if not _is_int(n) or not 1 <= int(n) <= int(m):
        raise FormatError(f"N:M needs 1 <= N <= M, got {_show(n)}:{_show(m)}")
    return int(n), int(m)


def parse_nm(text: object) -> tuple[int, int] | None:
    """Parse sparsity text: ``"N:M"`` gives ``(n, m)``, ``"dense"`` gives ``None``.

    The one parser of pattern text (config defaults, ``--sparsity`` options, workload files,
    compression schemes, training specs).  Surrounding blanks are ignored, ``dense`` in any case.

    Raises
    ------
    FormatError
        ``sparsity must be 'dense' or 'N:M' (e.g. '2:4'), not '<text>'`` for other text, or
        ``sparsity '<text>': <problem>`` when the numbers fail :func:`check_nm`.
    """
    if isinstance(text, str):
        if text.strip().lower() == "dense":
            return None
        match = _NM_TEXT.fullmatch(text)
        if match:
            try:
                return check_nm(int(match.group(1)), int(match.group(2)))
            except FormatError as exc:
                raise FormatError(f"sparsity {text!r}: {exc}") from None
    raise FormatError(f"sparsity must be 'dense' or 'N:M' (e.g. '2:4'), not {text!r}")


class NMPattern(BaseModel):
    """An N:M structured-sparsity pattern: at most ``n`` nonzeros in every group of ``m``.

    ``n == m`` means dense.  Written in YAML as ``"2:4"`` or ``"dense"`` (dense needs the
    group size from context, so :meth:`parse` takes it).

    Parameters
    ----------
    n : int
        Values kept per group, ``1 <= n <= m``.
    m : int
        Group size along the reduction axis, one of :data:`GROUP_SIZES`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    n: int
    m: int

    @model_validator(mode="after")
    def _check(self) -> "NMPattern":
        try:
            check_nm(self.n, self.m)
        except FormatError as exc:
            raise ValueError(str(exc)) from None
        return self

    @classmethod
    def parse(cls, text: "str | NMPattern | tuple[int, int]", dense_m: int = 4) -> "NMPattern":
        """Parse ``"2:4"``, ``"dense"`` (``dense_m:dense_m``) or an ``(n, m)`` tuple.

        Raises
        ------
        ConfigError
            With the message of :func:`parse_nm` / :func:`check_nm`.
        """
        if isinstance(text, NMPattern):
            return text
        try:
            if isinstance(text, tuple) and len(text) == 2:
                try:
                    n, m = check_nm(*text)
                except FormatError as exc:
                    raise FormatError(f"sparsity {text!r}: {exc}") from None
            else:
                parsed = parse_nm(text)
                n, m = parsed if parsed is not None else check_nm(dense_m, dense_m)
        except FormatError as exc:
            raise ConfigError(str(exc)) from None
        return cls(n=n, m=m)

    @property
    def dense(self) -> bool:
        """True when every value of a group is kept (``n == m``)."""
        return self.n == self.m

    @property
    def density(self) -> float:
        """Fraction of weights kept, ``n / m``."""
        return self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


# --------------------------------------------------------------------------------------------
# the keep-mask
# --------------------------------------------------------------------------------------------


def keep_mask(score: np.ndarray, n: int, m: int, axis: int = 0) -> np.ndarray:
    """Boolean mask of the ``n`` highest scores in every group of ``m`` consecutive elements along ``axis``.

    The one N:M mask: pruning keeps ``keep_mask(|w|, ...)``, calibrated pruning keeps Wanda's or
    SparseGPT's scores, sparse training regenerates its masks with it.

    Parameters
    ----------
    score : np.ndarray
        Any real dtype, at least 1-D.  Among equal scores the lower index wins.  Scores should
        not be NaN (a group holding a NaN keeps an unspecified set).
    n, m : int
        Keep ``n`` of every ``m`` (:func:`check_nm`).
    axis : int
        Axis the groups run along; a length that is not a multiple of ``m`` ends in a short
        group (the padding is never kept ahead of a real element).

    Returns
    -------
    np.ndarray of bool
        Same shape as ``score``; exactly ``min(n, group length)`` True per group.
    """
    n, m = check_nm(n, m)
    s = np.asarray(score)
    if s.ndim == 0:
        raise ShapeError("N:M needs at least a 1-D tensor, got a scalar")
    axis = axis % s.ndim
    length = s.shape[axis]
    if length == 0:
        raise ShapeError(f"N:M cannot group an empty reduction axis (shape {s.shape})")
    if n == m:
        return np.ones(s.shape, dtype=bool)
    s = s if np.issubdtype(s.dtype, np.floating) else s.astype(np.float64)
    groups = -(-length // m)
    pad = groups * m - length
    if pad:
        fill = np.full(s.shape[:axis] + (pad,) + s.shape[axis + 1:], -np.inf, dtype=s.dtype)
        s = np.concatenate([s, fill], axis=axis)
    g = s.reshape(s.shape[:axis] + (groups, m) + s.shape[axis + 1:])   # group members on axis + 1
    keep = _keep_groups(g, n, axis + 1).reshape(s.shape)
    return keep[(slice(None),) * axis + (slice(0, length),)]


def _keep_groups(g: np.ndarray, n: int, axis: int) -> np.ndarray:
    """The ``n`` highest of every group whose members run along ``axis`` of ``g``, ties to the lower index.

    The ``n``-th largest score of each group is the threshold: everything above it is kept, and
    of the scores equal to it the lowest indices fill the remaining places - the order of a
    stable argsort on ``-score``, at a fraction of its cost.
    """
    m = g.shape[axis]
    if n == m:
        return np.ones(g.shape, dtype=bool)
    thr = np.expand_dims(_nth_smallest(g, m - n, axis), axis)
    keep = g >= thr
    if np.count_nonzero(keep) > n * keep.size // m:   # ties at the threshold: lowest indices win
        above = g > thr
        need = n - np.count_nonzero(above, axis=axis, keepdims=True)
        tie = g == thr
        keep = above | (tie & (np.cumsum(tie, axis=axis, dtype=np.int16) <= need))
    return keep


def _oddeven_merge(lo: int, hi: int, r: int):
    step = r * 2
    if step < hi - lo:
        yield from _oddeven_merge(lo, hi, step)
        yield from _oddeven_merge(lo + r, hi, step)
        yield from ((i, i + r) for i in range(lo + r, hi - r, step))
    else:
        yield (lo, lo + r)


def _oddeven_merge_sort(lo: int, hi: int):
    if hi - lo >= 1:
        mid = lo + (hi - lo) // 2
        yield from _oddeven_merge_sort(lo, mid)
        yield from _oddeven_merge_sort(mid + 1, hi)
        yield from _oddeven_merge(lo, hi, 1)


#: Batcher odd-even merge sorting networks (comparator pairs) for the group sizes.
_NETWORKS: dict[int, tuple[tuple[int, int], ...]] = {m: tuple(_oddeven_merge_sort(0, m - 1)) for m in GROUP_SIZES}


def _nth_smallest(g: np.ndarray, i: int, axis: int) -> np.ndarray:
    """``np.sort(g, axis)`` taken at ``i`` along ``axis``, with a sorting network on whole slices
    (8x faster than ``np.sort`` along a middle axis for M = 8)."""
    pairs = _NETWORKS[g.shape[axis]]
    lead = (slice(None),) * (axis % g.ndim)
    v = [g[lead + (j,)].copy() for j in range(g.shape[axis])]   # basic indexing: much faster than np.take
    tmp = np.empty_like(v[0])
    for a, b in pairs:
        np.minimum(v[a], v[b], out=tmp)
        np.maximum(v[a], v[b], out=v[b])
        v[a], tmp = tmp, v[a]
    return v[i]


# --------------------------------------------------------------------------------------------
# pruning and compression
# --------------------------------------------------------------------------------------------


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


def _kept(grouped: np.ndarray, length: int, n: int) -> np.ndarray:
    """Keep mask ``(..., groups, m)`` of the ``n`` largest magnitudes per group of :func:`_grouped`
    output (``length`` real elements; the padding ranks below every real element)."""
    if np.issubdtype(grouped.dtype, np.floating) and not np.all(np.isfinite(grouped)):
        raise FormatError("N:M pruning got NaN or inf values")
    score = np.abs(grouped if np.issubdtype(grouped.dtype, np.floating) else grouped.astype(np.float64))
    m = grouped.shape[-1]
    pad = grouped.shape[-2] * m - length
    if pad:
        score[..., -1, m - pad:] = -np.inf
    return _keep_groups(score, n, -1)


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
    n, m = check_nm(n, m)
    w = np.asarray(weights)
    grouped, k = _grouped(w, m, axis)
    pruned = np.where(_kept(grouped, k, n), grouped, np.zeros((), dtype=grouped.dtype))
    flat = pruned.reshape(pruned.shape[:-2] + (-1,))[..., :k]
    return np.moveaxis(flat, -1, axis).astype(w.dtype, copy=False)


def is_nm_sparse(weights: np.ndarray, n: int, m: int, axis: int = 0) -> bool:
    """True when no group of ``m`` along ``axis`` holds more than ``n`` nonzeros."""
    n, m = check_nm(n, m)
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
    n, m = check_nm(n, m)
    w = np.asarray(weights)
    axis = axis % w.ndim if w.ndim else 0
    grouped, k = _grouped(w, m, axis)
    if n == m:      # every position kept (the padding too, as the ranking would): no ranking needed
        if np.issubdtype(grouped.dtype, np.floating) and not np.all(np.isfinite(grouped)):
            raise FormatError("N:M pruning got NaN or inf values")
        keep = np.broadcast_to(np.arange(m), grouped.shape)
        vals = grouped
    else:
        # exactly n kept per group: their positions, ascending, are the nonzeros of each row of m
        keep = np.nonzero(_kept(grouped, k, n).reshape(-1, m))[1].reshape(grouped.shape[:-1] + (n,))
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
