"""Sparse metadata encodings of an N:M-compressed weight: what the hardware reads to know where
each kept value goes (``docs/formats/nm.md``, "Metadata encodings").

A GEMM weight ``W[k, cols]`` pruned to ``n:m`` (groups along the reduction axis 0) runs on a
datapath whose sparse MUX selects 1 of ``m_hw`` (``sparsity.group_size``) as the hardware
pattern ``n_hw:m_hw`` with ``n_hw = n * m_hw / m`` (:meth:`AcceleratorConfig.hw_pattern`): every
group of ``m_hw`` holds ``n_hw`` *slots*, slot ``s`` of a group lying in sub-group
``s // n`` of ``m`` elements.  The reduction axis is padded to a multiple of ``m_hw``; the
padding's slots keep zeros at the lowest free indices (as :func:`~.nm.compress` does).  Per
column there are ``hw_slots(k, n, m, m_hw)`` slots; every stream is column-major (column
``c``'s slots, or its mask bits, before column ``c + 1``'s), packed little-endian with
:func:`~.nm.pack_indices` and padded with zero bits to a whole byte once, at its end.

Encodings (:data:`ENCODINGS`):

``slot``
    Today's (FlightLLM's) metadata: each slot's index in its group of ``m_hw``,
    ``log2(m_hw)`` bits a slot.  The datapath's weight lanes carry exactly this index.
``index``
    Each slot's index in its sub-group of ``m``, ``log2(m)`` bits a slot (2:4 -> 2 bits, 2:8 ->
    3 bits on a 1-of-16 MUX that needs 4).  The decoder (:func:`expand_indices`; in hardware
    :class:`sparsa.hdl.chain.index_expander.IndexExpander`) puts the sub-group number
    ``(s mod n_hw) // n`` above it: ``slot index = (s mod n_hw) // n * m + index``.
``bitmask``
    ``m`` bits per group of ``m`` (bit ``e`` set when element ``e`` is kept): one bit per padded
    element, exactly ``n`` set per group.
``block_n``
    FlightLLM's per-block N: one byte per block of :data:`BLOCK` reduction elements x
    :data:`BLOCK` columns holding the block's ``N`` (one of :data:`BLOCK_NS`), then, block by
    block (row-major over blocks, column-major inside a block), ``N`` 4-bit indices per column
    (the kept elements of the column's group of 16, ascending).  ``N`` is chosen per block
    (:func:`choose_block_n`), so it changes which values are kept, not only the metadata.

A dense pattern (``n == m``) has no metadata in any encoding.
"""

from __future__ import annotations

import numpy as np

from sparsa.errors import FormatError, ShapeError

from .nm import NMCompressed, check_nm, keep_mask, pack_indices, unpack_indices

__all__ = ["ENCODINGS", "BLOCK", "BLOCK_NS", "check_encoding", "hw_slots", "metadata_bits", "metadata_bytes",
           "slot_local_indices", "expand_indices", "encode", "decode", "block_errors", "choose_block_n",
           "block_n_density", "calibrate_block_threshold", "block_n_mask",
           "encode_block_n", "decode_block_n", "block_n_bytes"]

#: Metadata encodings of an N:M weight, in the order reports list them.
ENCODINGS: tuple[str, ...] = ("slot", "index", "bitmask", "block_n")

#: Side of a ``block_n`` block (reduction elements = output columns = group size M).
BLOCK = 16

#: The N a ``block_n`` block may keep of every 16.
BLOCK_NS: tuple[int, ...] = (2, 4, 8, 16)


def check_encoding(name: object) -> str:
    """``name`` if it is one of :data:`ENCODINGS`, else FormatError naming them."""
    if isinstance(name, str) and name in ENCODINGS:
        return name
    raise FormatError(f"metadata encoding must be one of {', '.join(ENCODINGS)}, not {name!r}")


def _bits(m: int) -> int:
    return int(m - 1).bit_length()


def _check_hw(n: int, m: int, m_hw: int) -> tuple[int, int, int, int]:
    """``(n, m, m_hw, n_hw)`` after checking both patterns and that ``m`` divides ``m_hw``."""
    n, m = check_nm(n, m)
    check_nm(m_hw, m_hw)
    if m_hw % m:
        raise FormatError(f"N:M group size M={m} does not divide the hardware group size {m_hw}")
    return n, m, int(m_hw), n * (m_hw // m)


def hw_slots(k: int, n: int, m: int, m_hw: int) -> int:
    """Slots per column of a ``k``-long reduction run as ``n_hw:m_hw``: ``ceil(k / m_hw) * n_hw``."""
    _, _, m_hw, n_hw = _check_hw(n, m, m_hw)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ShapeError(f"reduction length k must be a positive integer, not {k!r}")
    return -(-int(k) // m_hw) * n_hw


def metadata_bits(encoding: str, k: int, n: int, m: int, m_hw: int) -> int:
    """Metadata bits of one column (before the stream's final byte padding).

    ``slot``: ``hw_slots * log2(m_hw)``; ``index``: ``hw_slots * log2(m)``; ``bitmask``: one bit per
    element of the reduction padded to ``m_hw``; 0 for a dense pattern.  ``block_n`` depends on
    the N chosen per block: :func:`block_n_bytes`.
    """
    encoding = check_encoding(encoding)
    slots = hw_slots(k, n, m, m_hw)
    if n == m:
        return 0
    if encoding == "slot":
        return slots * _bits(m_hw)
    if encoding == "index":
        return slots * _bits(m)
    if encoding == "bitmask":
        return -(-int(k) // m_hw) * m_hw
    raise FormatError("metadata encoding 'block_n' has no fixed size: its bytes follow the N chosen per "
                      "block (block_n_bytes)")


def metadata_bytes(encoding: str, k: int, cols: int, n: int, m: int, m_hw: int) -> int:
    """Bytes of the metadata stream of a ``k x cols`` weight: ``ceil(cols * metadata_bits / 8)``."""
    if not isinstance(cols, (int, np.integer)) or cols < 1:
        raise ShapeError(f"cols must be a positive integer, not {cols!r}")
    return -(-int(cols) * metadata_bits(encoding, k, n, m, m_hw) // 8)


def _check_compressed(c: NMCompressed, m_hw: int) -> tuple[int, int, int]:
    if c.values.ndim != 2 or c.axis != 0:
        raise ShapeError(f"metadata encodings take a 2-D weight compressed along axis 0, not {c.values.ndim}-D "
                         f"along axis {c.axis}")
    n, m, m_hw, n_hw = _check_hw(c.n, c.m, m_hw)
    return n, m, n_hw


def slot_local_indices(c: NMCompressed, m_hw: int) -> np.ndarray:
    """Each hardware slot's index in its sub-group of ``m``: shape ``(hw_slots, cols)`` uint8.

    The compressed form's indices, followed by those of the padding sub-groups up to a multiple
    of ``m_hw`` (``0 .. n-1``: zeros at the lowest free indices).
    """
    n, m, _ = _check_compressed(c, m_hw)
    slots = hw_slots(c.length, n, m, m_hw)
    idx = np.asarray(c.indices, dtype=np.uint8)
    extra = slots - idx.shape[0]
    pad = np.broadcast_to((np.arange(extra) % n).astype(np.uint8)[:, None], (extra, idx.shape[1]))
    return np.concatenate([idx, pad], axis=0)


def expand_indices(local: np.ndarray, n: int, m: int, m_hw: int) -> np.ndarray:
    """The decoder of the ``index`` encoding: sub-group indices -> indices in the group of ``m_hw``.

    ``local`` has the slots on axis 0 (slot ``s`` counted from the first slot of a group of
    ``m_hw``, whose length is a multiple of ``n_hw``); slot ``s`` gets ``(s mod n_hw) // n * m +
    local[s]``.

    Raises
    ------
    FormatError
        An index ``>= m``, or a slot count that is not a multiple of ``n_hw``.
    """
    n, m, m_hw, n_hw = _check_hw(n, m, m_hw)
    local = np.asarray(local)
    if local.ndim == 0 or local.shape[0] % n_hw:
        raise FormatError(f"index expansion needs whole groups of {n_hw} slots on axis 0, got shape {local.shape}")
    if local.size and (int(local.min()) < 0 or int(local.max()) >= m):
        raise FormatError(f"sub-group index must be in 0..{m - 1}, got {int(local.max())}")
    sub = (np.arange(local.shape[0]) % n_hw) // n
    return (sub.reshape((-1,) + (1,) * (local.ndim - 1)) * m + local).astype(np.uint8)


def encode(c: NMCompressed, encoding: str, m_hw: int) -> bytes:
    """The metadata stream of ``c`` in ``encoding`` (``slot``, ``index`` or ``bitmask``).

    Its length is exactly :func:`metadata_bytes` of the same shape and pattern.
    """
    encoding = check_encoding(encoding)
    if encoding == "block_n":
        raise FormatError("metadata encoding 'block_n' chooses N per block: use encode_block_n")
    n, m, _ = _check_compressed(c, m_hw)
    if n == m:
        return b""
    local = slot_local_indices(c, m_hw)
    if encoding == "index":
        return pack_indices(local.T, _bits(m))
    if encoding == "slot":
        return pack_indices(expand_indices(local, n, m, m_hw).T, _bits(m_hw))
    cols = local.shape[1]
    mask = np.zeros((cols, local.shape[0] // n, m), dtype=np.uint8)   # (cols, sub-groups, m)
    np.put_along_axis(mask, local.T.reshape(cols, -1, n).astype(np.int64), 1, axis=-1)
    return np.packbits(mask.ravel(), bitorder="little").tobytes()


def decode(data: bytes, encoding: str, k: int, cols: int, n: int, m: int, m_hw: int) -> np.ndarray:
    """The datapath's slot indices ``(hw_slots, cols)`` (uint8, in the group of ``m_hw``) of a stream.

    Raises
    ------
    FormatError
        A stream of the wrong length, nonzero padding bits, an index out of range, a bitmask group
        without exactly ``n`` bits set, or sub-group indices that are not strictly ascending.
    """
    encoding = check_encoding(encoding)
    if encoding == "block_n":
        raise FormatError("metadata encoding 'block_n' chooses N per block: use decode_block_n")
    n, m, m_hw, n_hw = _check_hw(n, m, m_hw)
    need = metadata_bytes(encoding, k, cols, n, m, m_hw)
    data = bytes(data)
    if len(data) != need:
        raise FormatError(f"{encoding} metadata of a {k} x {cols} weight at {n}:{m} on groups of {m_hw} has "
                          f"{need} bytes, not {len(data)}")
    slots = hw_slots(k, n, m, m_hw)
    if n == m:
        return expand_indices(np.tile(np.arange(n, dtype=np.uint8)[:, None], (slots // n, cols)), n, m, m_hw)
    used = cols * metadata_bits(encoding, k, n, m, m_hw)
    if used % 8 and data[-1] >> (used % 8):
        raise FormatError(f"{encoding} metadata has nonzero padding bits after bit {used}")
    if encoding == "bitmask":
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[:used]
        groups = bits.reshape(cols, -1, m)
        counts = groups.sum(axis=-1)
        if np.any(counts != n):
            raise FormatError(f"bitmask metadata: a group of {m} has {int(counts[counts != n][0])} bits set, "
                              f"{n} needed")
        local = np.nonzero(groups.reshape(-1, m))[1].reshape(cols, -1).T.astype(np.uint8)
    else:
        width = _bits(m) if encoding == "index" else _bits(m_hw)
        flat = unpack_indices(data, width, slots * cols).reshape(cols, slots).T
        if encoding == "slot":
            sub = (np.arange(slots) % n_hw // n)[:, None]
            if np.any(flat // m != sub):
                raise FormatError(f"slot metadata: a slot's index lies outside its sub-group of {m}")
            flat = flat % m
        local = flat
    steps = np.diff(local.reshape(-1, n, cols).astype(np.int16), axis=1)
    if np.any(steps <= 0):
        raise FormatError("N:M metadata: the indices of a group must be strictly ascending")
    return expand_indices(local, n, m, m_hw)


# --------------------------------------------------------------------------------------------
# block_n: FlightLLM's per-block N
# --------------------------------------------------------------------------------------------


def _check_matrix(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w)
    if w.ndim != 2 or 0 in w.shape:
        raise ShapeError(f"block_n takes a non-empty 2-D weight [k, cols], not shape {w.shape}")
    return w


def _block_grid(shape: tuple[int, int]) -> tuple[int, int]:
    return -(-shape[0] // BLOCK), -(-shape[1] // BLOCK)


def block_errors(weights: np.ndarray) -> np.ndarray:
    """Relative pruning error of every 16 x 16 block at every N of :data:`BLOCK_NS`.

    Returns
    -------
    np.ndarray of float
        Shape ``(ceil(k / 16), ceil(cols / 16), len(BLOCK_NS))``: ``||W_b - prune(W_b, N:16)||^2 /
        ||W_b||^2`` (0 for an all-zero block), pruning by :func:`~.nm.keep_mask` of the magnitudes.
    """
    w = _check_matrix(weights).astype(np.float64)
    kb, cb = _block_grid(w.shape)
    sq = np.zeros((kb * BLOCK, cb * BLOCK))
    sq[: w.shape[0], : w.shape[1]] = w * w
    total = sq.reshape(kb, BLOCK, cb, BLOCK).sum(axis=(1, 3))
    out = np.zeros((kb, cb, len(BLOCK_NS)))
    for j, n in enumerate(BLOCK_NS[:-1]):
        lost = np.where(keep_mask(sq, n, BLOCK, axis=0), 0.0, sq).reshape(kb, BLOCK, cb, BLOCK).sum(axis=(1, 3))
        out[..., j] = np.divide(lost, total, out=np.zeros_like(lost), where=total > 0)
    return out


def choose_block_n(weights: np.ndarray, threshold: float, errors: "np.ndarray | None" = None) -> np.ndarray:
    """The calibrated N of every 16 x 16 block: the smallest of :data:`BLOCK_NS` whose N:16 pruning
    of the block loses at most ``threshold`` of its squared norm (``||W_b - prune(W_b)||^2 <=
    threshold * ||W_b||^2``; an all-zero block takes the smallest N).

    ``errors`` (:func:`block_errors` of ``weights``) saves recomputing them.

    Returns
    -------
    np.ndarray of int
        Shape ``(ceil(k / 16), ceil(cols / 16))``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise FormatError(f"block_n threshold must be a number in [0, 1], not {threshold!r}")
    err = block_errors(weights) if errors is None else np.asarray(errors)
    ok = err <= threshold * (1 + 1e-12)
    ok[..., -1] = True                                          # N = 16 loses nothing
    return np.asarray(BLOCK_NS, dtype=np.int64)[np.argmax(ok, axis=-1)]


def block_n_density(ns: np.ndarray, cols: int) -> float:
    """Fraction of the weights a ``block_n`` choice keeps (edge blocks weighted by their real columns)."""
    widths = _block_columns(int(cols))
    ns = np.asarray(ns)
    return float((ns * widths[None, :]).sum() / (BLOCK * ns.shape[0] * widths.sum()))


def calibrate_block_threshold(errors: "list[tuple[np.ndarray, int]]", density: float) -> float:
    """The threshold at which :func:`choose_block_n` keeps ``density`` of the weights of every matrix
    together (``errors``: ``(block_errors, cols)`` per matrix; bisection, to 1e-4).

    The largest threshold whose kept fraction is still at least ``density``.
    """
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise FormatError(f"block_n target density must be in (0, 1], not {density!r}")

    def kept(thr: float) -> float:
        num = den = 0.0
        for err, cols in errors:
            ns = choose_block_n(np.zeros((1, 1)), thr, errors=err)
            num += block_n_density(ns, cols) * ns.shape[0] * cols
            den += ns.shape[0] * cols
        return num / den

    lo, hi = 0.0, 1.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept(mid) >= density else (lo, mid)
    return lo


def _check_ns(ns: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ns = np.asarray(ns)
    grid = _block_grid(shape)
    if ns.shape != grid:
        raise ShapeError(f"block_n needs one N per 16 x 16 block, shape {grid}, not {ns.shape}")
    bad = ~np.isin(ns, BLOCK_NS)
    if np.any(bad):
        raise FormatError(f"block N must be one of {', '.join(map(str, BLOCK_NS))}, not {ns[bad][0].item()!r}")
    return ns.astype(np.int64)


def block_n_mask(weights: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """Keep-mask of ``weights`` pruned to ``ns[i, j]``:16 in block ``(i, j)`` (:func:`~.nm.keep_mask`)."""
    w = _check_matrix(weights)
    ns = _check_ns(ns, w.shape)
    mask = np.zeros(w.shape, dtype=bool)
    score = np.abs(w.astype(np.float64))
    for n in np.unique(ns):
        mask |= keep_mask(score, int(n), BLOCK, axis=0) & np.kron(ns == n, np.ones((BLOCK, BLOCK), bool))[
            : w.shape[0], : w.shape[1]]
    return mask


def _block_columns(cols: int) -> np.ndarray:
    """Real columns of each block column."""
    cb = -(-cols // BLOCK)
    return np.minimum(BLOCK, cols - BLOCK * np.arange(cb))


def encode_block_n(weights: np.ndarray, ns: np.ndarray) -> bytes:
    """The ``block_n`` metadata stream of ``weights`` pruned by :func:`block_n_mask`."""
    w = _check_matrix(weights)
    ns = _check_ns(ns, w.shape)
    kb, cb = ns.shape
    mask = np.zeros((kb * BLOCK, cb * BLOCK), dtype=bool)
    mask[: w.shape[0], : w.shape[1]] = block_n_mask(w, ns)
    # the padding rows of the last block row are kept at the lowest free indices like compress
    for i in range(kb):
        for j in range(cb):
            blk = mask[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            short = np.flatnonzero(blk.sum(axis=0) < ns[i, j])
            for col in short:
                free = np.flatnonzero(~blk[:, col])[: ns[i, j] - blk[:, col].sum()]
                blk[free, col] = True
    idx = []
    widths = _block_columns(w.shape[1])
    for i in range(kb):
        for j in range(cb):
            blk = mask[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:j * BLOCK + widths[j]]
            idx.append(np.nonzero(blk.T)[1])
    head = ns.astype(np.uint8).ravel().tobytes()
    flat = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    return head + (pack_indices(flat, 4) if flat.size else b"")


def decode_block_n(data: bytes, k: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_block_n`: ``(ns, mask)``, the N per block and the ``k x cols`` keep-mask.

    Raises
    ------
    FormatError
        A block byte not in :data:`BLOCK_NS`, a stream of the wrong length, nonzero padding bits,
        or a column's indices that are not strictly ascending.
    """
    if not all(isinstance(v, (int, np.integer)) and v >= 1 for v in (k, cols)):
        raise ShapeError(f"block_n needs positive k and cols, not {k!r} x {cols!r}")
    data = bytes(data)
    kb, cb = _block_grid((int(k), int(cols)))
    if len(data) < kb * cb:
        raise FormatError(f"block_n metadata of a {k} x {cols} weight needs at least {kb * cb} bytes, "
                          f"not {len(data)}")
    ns = _check_ns(np.frombuffer(data[: kb * cb], dtype=np.uint8).reshape(kb, cb), (int(k), int(cols)))
    widths = _block_columns(int(cols))
    count = int((ns * widths[None, :]).sum())
    need = kb * cb + -(-count * 4 // 8)
    if len(data) != need:
        raise FormatError(f"block_n metadata of a {k} x {cols} weight with these N has {need} bytes, not {len(data)}")
    if count % 2 and data[-1] >> 4:
        raise FormatError("block_n metadata has nonzero padding bits")
    flat = unpack_indices(data[kb * cb:], 4, count).astype(np.int64)
    mask = np.zeros((kb * BLOCK, cb * BLOCK), dtype=bool)
    pos = 0
    for i in range(kb):
        for j in range(cb):
            n, width = int(ns[i, j]), int(widths[j])
            part = flat[pos:pos + n * width].reshape(width, n)
            pos += n * width
            if n > 1 and np.any(np.diff(part, axis=1) <= 0):
                raise FormatError(f"block_n metadata: block ({i}, {j}) has indices that are not strictly ascending")
            cols_idx = np.repeat(np.arange(width), n) + j * BLOCK
            mask[i * BLOCK + part.ravel(), cols_idx] = True
    return ns, mask[: int(k), : int(cols)]


def block_n_bytes(ns: np.ndarray, cols: int, value_bits: int) -> dict[str, int]:
    """Bytes of a ``block_n`` weight: ``{"values", "metadata"}`` (the values packed like the
    metadata, one stream, padded to a byte at its end).

    ``ns`` is the N of every block (shape ``(ceil(k / 16), ceil(cols / 16))``).
    """
    ns = np.asarray(ns)
    widths = _block_columns(int(cols))
    if ns.ndim != 2 or ns.shape[1] != widths.size:
        raise ShapeError(f"block_n: ns must have {widths.size} block columns for {cols} columns, not shape {ns.shape}")
    _check_ns(ns, (ns.shape[0] * BLOCK, int(cols)))
    kept = int((ns * widths[None, :]).sum())
    return {"values": -(-kept * int(value_bits) // 8), "metadata": ns.size + -(-kept * 4 // 8)}
