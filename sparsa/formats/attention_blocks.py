"""Block-sparse attention: which (query-block, key-block) pairs of a score matrix are computed.

FlightLLM runs prefill attention on 64 x 64 blocks of the ``queries x keys`` score matrix and
skips whole blocks.  This module is the one definition of that choice (``docs/workloads.md``,
section "Block-sparse attention"); the workload files, the layer graph, the estimator and the
real-model forward passes all take their masks from here.

Policies (:class:`BlockPolicy`, ``kind``):

* ``dense`` - every block the causal mask leaves visible (the baseline: only blocks wholly
  above the diagonal are skipped).
* ``local`` - query block ``i`` keeps key blocks ``i - window + 1 .. i`` (``window`` blocks,
  the diagonal block included).
* ``local+strided`` - ``local`` plus every key block ``j`` with ``j % stride == 0`` (block 0,
  the attention sink, is always one of them): BigBird / Longformer-like.
* ``topk`` - per query-block row a budget of ``ceil(keep * visible blocks)`` blocks (at least
  one): the diagonal block plus the blocks with the highest calibrated attention mass
  (:func:`calibrate_topk`; ties go to the lower key block, as in :func:`sparsa.formats.nm.keep_mask`).
  The budget depends only on the geometry, so a workload's cost is known before calibration.

Rules every mask obeys: the diagonal block ``(i, i)`` is always kept; with ``causal`` a block
wholly above the diagonal (``j > i``) is never kept; the element keep-mask is the block mask
expanded to ``block x block`` elements (clipped at the edges), and with ``causal`` intersected
with the causal triangle (query ``t`` sees keys ``0 .. t``).  Causal masks need
``queries == keys`` (prefill self-attention); decode (one query row) uses no policy.

This module imports only :mod:`sparsa.errors`, NumPy and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

import numpy as np

from sparsa.errors import FormatError, ShapeError

__all__ = [
    "PolicyKind",
    "POLICY_KINDS",
    "DEFAULT_BLOCK",
    "BlockPolicy",
    "CalibratedBlocks",
    "block_grid",
    "attention_masks",
    "expand_blocks",
    "kept_pairs",
    "block_rows",
    "row_budget",
    "calibrate_topk",
]

#: Block-selection policies (see the module docstring).
PolicyKind: TypeAlias = Literal["dense", "local", "local+strided", "topk"]
#: The allowed ``kind`` values, in documentation order.
POLICY_KINDS: tuple[str, ...] = get_args(PolicyKind)
#: FlightLLM's block edge (64 x 64 blocks).
DEFAULT_BLOCK = 64


def _positive_int(value: object) -> bool:
    return type(value) is int and value >= 1


@dataclass(frozen=True, slots=True)
class BlockPolicy:
    """Which blocks of a prefill attention score matrix are computed.

    Parameters
    ----------
    kind : {"dense", "local", "local+strided", "topk"}
        The selection rule (module docstring).
    block : int, default 64
        Block edge in tokens (query and key blocks are square).
    window : int or None
        ``local`` / ``local+strided``: key blocks kept ending at the diagonal (``>= 1``).
    stride : int or None
        ``local+strided``: every ``stride``-th key block is kept (``>= 1``).
    keep : float or None
        ``topk``: fraction of each row's visible blocks kept, ``0 < keep <= 1``.

    Raises
    ------
    FormatError
        A bad or misplaced field; the message names the field, the value and what is allowed.
    """

    kind: PolicyKind
    block: int = DEFAULT_BLOCK
    window: int | None = None
    stride: int | None = None
    keep: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise FormatError(f"attention policy must be one of {', '.join(POLICY_KINDS)}, not {self.kind!r}")
        if not _positive_int(self.block):
            raise FormatError(f"attention block must be a positive integer, not {self.block!r}")
        wants = {"dense": (), "local": ("window",), "local+strided": ("window", "stride"), "topk": ("keep",)}
        needed = wants[self.kind]
        for name in ("window", "stride", "keep"):
            value = getattr(self, name)
            if name not in needed:
                if value is not None:
                    raise FormatError(f"attention policy {self.kind!r} takes no {name} (it takes "
                                      f"{', '.join(needed) or 'only block'}), got {name}={value!r}")
            elif value is None:
                raise FormatError(f"attention policy {self.kind!r} needs {name}")
        for name in ("window", "stride"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                raise FormatError(f"attention {name} must be a positive integer (blocks), not {value!r}")
        if self.keep is not None and (isinstance(self.keep, bool) or not isinstance(self.keep, int | float)
                                      or not 0 < self.keep <= 1):
            raise FormatError(f"attention keep must be a number in (0, 1], not {self.keep!r}")

    def __str__(self) -> str:
        parts = [self.kind]
        parts += [f"{name}={getattr(self, name):g}" for name in ("window", "stride", "keep")
                  if getattr(self, name) is not None]
        return " ".join([*parts, f"block={self.block}"])

    def block_mask(self, queries: int, keys: int, causal: bool = True,
                   scores: np.ndarray | None = None) -> np.ndarray:
        """Boolean block mask ``[..., nq, nk]`` (:func:`attention_masks`, block part only)."""
        return attention_masks(self, queries, keys, causal, scores)[0]

    def keep_mask(self, length: int, layer: int = 0) -> np.ndarray:
        """Causal element keep-mask ``[length, length]`` of a prefill of ``length`` tokens.

        ``layer`` is accepted for the interface of :class:`CalibratedBlocks` and ignored.

        Raises
        ------
        FormatError
            For ``topk``: its mask comes from calibration (:class:`CalibratedBlocks`).
        """
        if self.kind == "topk":
            raise FormatError("a topk attention policy needs calibrated block masks: use calibrate_topk() "
                              "and CalibratedBlocks")
        return attention_masks(self, length, length, True)[1]


def block_grid(queries: int, keys: int, block: int) -> tuple[int, int]:
    """``(ceil(queries / block), ceil(keys / block))``: the block mask's shape."""
    return -(-queries // block), -(-keys // block)


def _check_geometry(queries: object, keys: object, causal: object) -> None:
    if not _positive_int(queries) or not _positive_int(keys):
        raise ShapeError(f"attention masks need positive integer queries and keys, not {queries!r} and {keys!r}")
    if not isinstance(causal, bool):
        raise ShapeError(f"causal must be True or False, not {causal!r}")
    if causal and queries != keys:
        raise ShapeError(f"a causal block mask needs queries == keys (prefill), not {queries} queries "
                         f"and {keys} keys")


def row_budget(policy: BlockPolicy, visible: int) -> int:
    """Blocks a ``topk`` row keeps out of ``visible``: ``max(1, ceil(keep * visible))``.

    The product is rounded to 9 decimals first, so ``0.1 * 30`` keeps 3 blocks, not 4.
    """
    if policy.keep is None:
        raise FormatError(f"row_budget applies to topk policies, not {policy.kind!r}")
    return min(visible, max(1, math.ceil(round(policy.keep * visible, 9))))


def _visible(nq: int, nk: int, causal: bool) -> np.ndarray:
    """Blocks not wholly masked by causality: ``j <= i`` (causal) or all."""
    if causal:
        return np.tril(np.ones((nq, nk), dtype=bool))
    return np.ones((nq, nk), dtype=bool)


def _topk_blocks(policy: BlockPolicy, scores: np.ndarray, nq: int, nk: int, causal: bool) -> np.ndarray:
    sc = np.asarray(scores, dtype=np.float64)
    if sc.ndim < 2 or sc.shape[-2:] != (nq, nk):
        raise ShapeError(f"topk block scores must have shape [..., {nq}, {nk}], not {sc.shape}")
    if not np.all(np.isfinite(sc)):
        raise FormatError("topk block scores must be finite")
    visible = _visible(nq, nk, causal)
    diag = np.eye(nq, nk, dtype=bool)
    # forced blocks first, then by score (stable sort: the lower key block wins a tie); masked last
    rank_key = np.where(diag, np.inf, np.where(visible, sc, -np.inf))
    order = np.argsort(-rank_key, axis=-1, kind="stable")
    budget = np.array([row_budget(policy, int(v)) for v in visible.sum(axis=1)])
    take = np.arange(nk)[None, :] < budget[:, None]  # [nq, nk] in sorted order
    out = np.zeros(sc.shape, dtype=bool)
    np.put_along_axis(out, order, np.broadcast_to(take, sc.shape), axis=-1)
    return out


def _rule_blocks(policy: BlockPolicy, nq: int, nk: int) -> np.ndarray:
    i = np.arange(nq)[:, None]
    j = np.arange(nk)[None, :]
    if policy.kind == "dense":
        return np.ones((nq, nk), dtype=bool)
    keep = (j <= i) & (j > i - policy.window)  # type: ignore[operator]
    if policy.kind == "local+strided":
        keep |= (j % policy.stride == 0) & (j <= i)  # type: ignore[operator]
    return keep


def expand_blocks(blocks: np.ndarray, block: int, queries: int, keys: int) -> np.ndarray:
    """Element mask ``[..., queries, keys]``: every block entry repeated ``block x block``, clipped."""
    b = np.asarray(blocks, dtype=bool)
    return np.repeat(np.repeat(b, block, axis=-2), block, axis=-1)[..., :queries, :keys]


def attention_masks(policy: BlockPolicy, queries: int, keys: int, causal: bool = True,
                    scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The block mask and the element keep-mask of ``policy`` on a ``queries x keys`` score matrix.

    Parameters
    ----------
    policy : BlockPolicy
        The selection rule and block size.
    queries, keys : int
        Score-matrix shape; ``causal`` needs them equal (prefill).
    causal : bool, default True
        Query ``t`` sees keys ``0 .. t`` only; blocks wholly above the diagonal are never kept.
    scores : ndarray, optional
        ``topk`` only (required there): block scores ``[..., nq, nk]`` (calibrated attention mass);
        leading axes (layers, heads) give one mask each.

    Returns
    -------
    blocks : ndarray of bool
        ``[nq, nk]`` (``[..., nq, nk]`` for ``topk`` scores), ``(nq, nk) = block_grid(...)``.
    elements : ndarray of bool
        ``[..., queries, keys]``: ``expand_blocks(blocks)``, and with ``causal`` also ``j <= i``.

    Raises
    ------
    ShapeError
        Bad sizes, a causal mask with ``queries != keys``, scores of the wrong shape.
    FormatError
        ``scores`` missing for ``topk`` or given to another policy.
    """
    if not isinstance(policy, BlockPolicy):
        raise FormatError(f"policy must be a BlockPolicy, not {policy!r}")
    _check_geometry(queries, keys, causal)
    nq, nk = block_grid(queries, keys, policy.block)
    if policy.kind == "topk":
        if scores is None:
            raise FormatError("a topk attention policy needs block scores (calibrated attention mass)")
        blocks = _topk_blocks(policy, scores, nq, nk, causal)
    else:
        if scores is not None:
            raise FormatError(f"block scores apply to topk policies only, not {policy.kind!r}")
        blocks = _rule_blocks(policy, nq, nk)
    blocks = (blocks & _visible(nq, nk, causal)) | np.eye(nq, nk, dtype=bool)
    elements = expand_blocks(blocks, policy.block, queries, keys)
    if causal:
        elements = elements & np.tril(np.ones((queries, keys), dtype=bool))
    return blocks, elements


def _count_blocks(policy: BlockPolicy, queries: int, keys: int, causal: bool) -> np.ndarray:
    """A block mask with the policy's kept *count* per row (``topk``: nearest blocks stand in)."""
    nq, nk = block_grid(queries, keys, policy.block)
    stand_in = None
    if policy.kind == "topk":
        stand_in = np.broadcast_to(np.arange(nk, dtype=np.float64)[None, :], (nq, nk))
    return attention_masks(policy, queries, keys, causal, stand_in)[0]


def _sizes(total: int, block: int) -> np.ndarray:
    n = -(-total // block)
    return np.minimum(block, total - block * np.arange(n))


def block_rows(policy: BlockPolicy, queries: int, keys: int, causal: bool = True) -> tuple[tuple[int, int], ...]:
    """Per query block: ``(rows, kept keys)`` - what a block-sparse engine computes.

    ``rows`` is the block's query count (``block``, less for the last one); ``kept keys`` the
    summed width of its kept key blocks (whole blocks: the diagonal block counts in full, as an
    engine computes it).  For ``topk`` the count is the per-row budget (:func:`row_budget`) of
    full blocks besides the diagonal, exact for any calibration when every off-diagonal block is
    full-width (always in a causal prefill; otherwise when ``block`` divides ``keys``).
    """
    blocks = _count_blocks(policy, queries, keys, causal)
    rows, cols = _sizes(queries, policy.block), _sizes(keys, policy.block)
    return tuple((int(r), int(cols[b].sum())) for r, b in zip(rows, blocks, strict=True))


def kept_pairs(policy: BlockPolicy, queries: int, keys: int, causal: bool = True) -> int:
    """(query, key) pairs of the element keep-mask, counted block by block without building it.

    Same ``topk`` convention as :func:`block_rows`.  With ``causal`` a kept diagonal block
    contributes its triangle ``s (s + 1) / 2`` (``s`` its edge), every other kept block its area.
    """
    blocks = _count_blocks(policy, queries, keys, causal)
    rows, cols = _sizes(queries, policy.block), _sizes(keys, policy.block)
    area = rows[:, None] * cols[None, :]
    if causal:
        d = np.arange(min(blocks.shape))
        area[d, d] = rows[d] * (rows[d] + 1) // 2
    return int(area[blocks].sum())


def calibrate_topk(policy: BlockPolicy, mass: np.ndarray, length: int) -> CalibratedBlocks:
    """Fix a ``topk`` policy's block masks from calibrated attention mass.

    Parameters
    ----------
    policy : BlockPolicy
        A ``topk`` policy.
    mass : ndarray
        ``[layers, heads, nq, nk]`` (per layer and head) or ``[nq, nk]`` (shared): attention
        probability summed per block over the calibration set, for a causal prefill of ``length``.
    length : int
        The calibration prefill length; the masks serve any prefill up to it.

    Returns
    -------
    CalibratedBlocks
    """
    if not isinstance(policy, BlockPolicy) or policy.kind != "topk":
        raise FormatError(f"calibrate_topk needs a topk BlockPolicy, not {policy!r}")
    m = np.asarray(mass, dtype=np.float64)
    if m.ndim not in (2, 4):
        raise ShapeError(f"attention mass must be [layers, heads, nq, nk] or [nq, nk], not shape {m.shape}")
    blocks = attention_masks(policy, length, length, True, m)[0]
    return CalibratedBlocks(policy, blocks if blocks.ndim == 4 else blocks[None, None], length)


@dataclass(frozen=True, eq=False)
class CalibratedBlocks:
    """A ``topk`` policy with its block masks fixed by calibration (:func:`calibrate_topk`).

    Parameters
    ----------
    policy : BlockPolicy
        The ``topk`` policy.
    blocks : ndarray of bool
        ``[layers, heads, nq, nk]``; ``layers`` and ``heads`` may be 1 (shared).
    length : int
        Calibration prefill length (``nq = nk = ceil(length / block)``).
    """

    policy: BlockPolicy
    blocks: np.ndarray
    length: int

    def __post_init__(self) -> None:
        if not isinstance(self.policy, BlockPolicy) or self.policy.kind != "topk":
            raise FormatError(f"CalibratedBlocks needs a topk BlockPolicy, not {self.policy!r}")
        n = block_grid(self.length, self.length, self.policy.block)
        b = np.asarray(self.blocks)
        if b.dtype != bool or b.ndim != 4 or b.shape[-2:] != n:
            raise ShapeError(f"calibrated blocks must be a bool [layers, heads, {n[0]}, {n[1]}] array, "
                             f"not {b.dtype} {b.shape}")

    def keep_mask(self, length: int, layer: int = 0) -> np.ndarray:
        """Causal element keep-mask ``[heads, length, length]`` of ``layer`` (shared maps: any layer).

        A prefill shorter than the calibration length uses the leading blocks: a causal row's
        choice depends only on its own visible blocks.
        """
        if not _positive_int(length) or length > self.length:
            raise ShapeError(f"calibrated for prefills of up to {self.length} tokens, not {length!r}")
        layers = self.blocks.shape[0]
        if type(layer) is not int or not (layers == 1 or 0 <= layer < layers):
            raise ShapeError(f"layer must be in 0..{layers - 1}, not {layer!r}")
        n = block_grid(length, length, self.policy.block)[0]
        blocks = self.blocks[0 if layers == 1 else layer, :, :n, :n]
        return expand_blocks(blocks, self.policy.block, length, length) & np.tril(np.ones((length, length), bool))
