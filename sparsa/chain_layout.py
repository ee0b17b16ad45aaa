"""Stream-beat bit layouts of the DSP-chain datapath (docs/chain.md), defined once.

Lane 0 at the least significant bits, like :mod:`sparsa.layout` and Amaranth's ``ArrayLayout``.

weight beat (COMPUTE, one per cycle)
    ``cols * rows`` lanes of ``weight_bits + index_bits``; lane ``c * rows + i`` feeds slice
    ``i`` of chain ``c``: value at the LSBs, N:M index above (as the systolic weight lane).
    With ``chain.packing: both`` a lane has :func:`weight_values` = 2 values: ``value1`` (the
    second output column's weight, 0 when packing tokens) above the index.  In Python a lane's
    two values travel as one integer, the multiplier operand :func:`pair_weights`
    ``(w1 << 18) + w0`` (a single weight is itself), split again by :func:`split_weights`.
activation beat (LOAD_A, one activation-buffer word)
    ``rows`` lanes x ``P`` tokens x ``group_size`` activations: element ``e`` of token ``p``
    for slice ``i`` at bit ``((i * P + p) * group_size + e) * activation_bits``.  For ``P = 1``
    this is exactly the systolic activation beat.
output beat (DRAIN, one segment of one output-bank row; one n-tile without cascade cutting)
    ``P * cols`` accumulators, lane ``p * cols + c`` = token ``p`` of the block, chain ``c``.
    With ``S`` segments (LOAD_A ``segments``) an output-bank row drains as ``S`` beats, segment
    ``s`` carrying output columns ``s * cols .. (s + 1) * cols - 1`` of the n-tile.
    Inside the HDL a bank row is ``chain.max_segments`` such beats
    (:func:`sparsa.hdl.chain.layouts.chain_bank_row_layout`); the stream beat never changes width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sparsa.errors import FormatError
from sparsa.formats.nm import NMPattern
from sparsa.formats.nm_meta import expand_indices
from sparsa.layout import pack_lanes, unpack_lanes

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig

__all__ = ["PACK_SHIFT", "weight_values", "pair_weights", "split_weights", "chain_weight_beat_bits", "chain_activation_beat_bits", "chain_output_beat_bits",
           "pack_chain_weight_beat", "pack_chain_activation_beat", "unpack_chain_output_beat",
           "unpack_chain_weight_beat", "unpack_chain_activation_beat", "chain_stream_beat_bits",
           "CHAIN_METADATA_DECODERS", "chain_index_subgroups", "chain_metadata_decodable",
           "chain_compact_patterns", "chain_compact_weight_beat_bits", "pack_chain_compact_weight_beat",
           "expand_chain_compact_weight_beat"]

#: Bit offset of the high token lane in a packed activation operand (``a1 << 18 + a0``):
#: the low lane of the 48-bit DSP48E2 product is 18 bits wide.
PACK_SHIFT = 18


def weight_values(config: "AcceleratorConfig") -> int:
    """Weight values per weight lane: 2 with ``chain.packing: both`` (output packing), else 1."""
    return 2 if config.chain.packing == "both" else 1


def pair_weights(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """Two output columns' weights as one packed multiplier operand ``(w1 << 18) + w0`` (int64)."""
    return (np.asarray(w1, dtype=np.int64) << PACK_SHIFT) + np.asarray(w0, dtype=np.int64)


def split_weights(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pair_weights`: ``(w0, w1)``, ``w0`` the sign-extended low 18 bits
    (exact for ``|w0| < 2^17``; a single weight splits into ``(w, 0)``)."""
    v = np.asarray(values, dtype=np.int64)
    half = 1 << (PACK_SHIFT - 1)
    w0 = ((v + half) & ((1 << PACK_SHIFT) - 1)) - half
    return w0, (v - w0) >> PACK_SHIFT


def chain_weight_beat_bits(config: "AcceleratorConfig") -> int:
    return config.cols * config.rows * (weight_values(config) * config.weight_bits + config.index_bits)


def chain_activation_beat_bits(config: "AcceleratorConfig") -> int:
    return config.rows * config.token_lanes * config.group_size * config.activation_bits


def chain_output_beat_bits(config: "AcceleratorConfig") -> int:
    return config.token_lanes * config.cols * config.accumulator_bits


def pack_chain_weight_beat(config: "AcceleratorConfig", values: np.ndarray, indices: np.ndarray) -> int:
    """Pack ``values`` / ``indices`` of shape ``(cols, rows)`` into one weight beat (``values``:
    :func:`pair_weights` operands when the lane holds two)."""
    wb, ib, nv = config.weight_bits, config.index_bits, weight_values(config)
    mask = (1 << wb) - 1
    w0, w1 = split_weights(values) if nv == 2 else (np.asarray(values, dtype=np.int64), 0)
    lanes = (w0 & mask) | (np.asarray(indices, dtype=np.int64) << wb)
    if nv == 2:
        lanes = lanes | ((w1 & mask) << (wb + ib))
    return pack_lanes(lanes, nv * wb + ib)


def pack_chain_activation_beat(config: "AcceleratorConfig", word: np.ndarray) -> int:
    """Pack one activation-buffer word of shape ``(rows, P, group_size)``."""
    word = np.asarray(word)
    shape = (config.rows, config.token_lanes, config.group_size)
    if word.shape != shape:
        raise ValueError(f"activation word must have shape {shape}, not {word.shape}")
    return pack_lanes(word, config.activation_bits)


def unpack_chain_output_beat(config: "AcceleratorConfig", word: int) -> np.ndarray:
    """Unpack one output beat into ``P * cols`` signed accumulators."""
    return unpack_lanes(word, config.accumulator_bits, config.token_lanes * config.cols, signed=True)


def unpack_chain_weight_beat(config: "AcceleratorConfig", word: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_chain_weight_beat`: ``(values, indices)`` of shape ``(cols, rows)``."""
    wb, ib, nv = config.weight_bits, config.index_bits, weight_values(config)
    lanes = unpack_lanes(word, nv * wb + ib, config.cols * config.rows, signed=False).reshape(config.cols, config.rows)

    def signed_at(offset: int) -> np.ndarray:
        v = (lanes >> offset) & ((1 << wb) - 1)
        return np.where(v >> (wb - 1), v - (1 << wb), v)

    indices = (lanes >> wb) & ((1 << ib) - 1)
    values = signed_at(0) if nv == 1 else pair_weights(signed_at(0), signed_at(wb + ib))
    return values, indices


def unpack_chain_activation_beat(config: "AcceleratorConfig", word: int) -> np.ndarray:
    """Inverse of :func:`pack_chain_activation_beat`: one word of shape ``(rows, P, group_size)``."""
    shape = (config.rows, config.token_lanes, config.group_size)
    return unpack_lanes(word, config.activation_bits, shape[0] * shape[1] * shape[2], signed=True).reshape(shape)


def chain_stream_beat_bits(config: "AcceleratorConfig") -> dict[str, int]:
    """Beat width of each data stream: ``{"weights", "acts", "outputs"}``."""
    return {"weights": chain_weight_beat_bits(config), "acts": chain_activation_beat_bits(config),
            "outputs": chain_output_beat_bits(config)}


#: Metadata encodings the chain's RTL decodes (:mod:`sparsa.formats.nm_meta`): the slot index
#: itself and the compact ``index``, expanded by :class:`~sparsa.hdl.chain.index_expander.IndexExpander`.
#: The expander is a component placed in front of the chain's top level (tested there); the
#: exported top does not instantiate it yet (its pattern ``select`` has no instruction field), so
#: ``sparsity.metadata: auto`` does not choose ``index`` - it must be forced
#: (:attr:`sparsa.datapath.MatrixDatapath.metadata_auto`).
CHAIN_METADATA_DECODERS: tuple[str, ...] = ("slot", "index")


def chain_index_subgroups(config: "AcceleratorConfig", n: int, m: int) -> np.ndarray:
    """Sub-group (of ``m``) of the slot each slice holds for a layer pruned ``n:m``: ``(i mod n_hw) // n``.

    Raises
    ------
    FormatError
        When ``n_hw`` does not divide ``rows`` (no k-tile length then keeps the sub-groups fixed).
    """
    n_hw = config.hardware_pattern(NMPattern(n=n, m=m)).n
    if config.rows % n_hw:
        raise FormatError(f"compact index {n}:{m}: {n_hw} slots per group of {config.group_size} do not divide "
                          f"datapath.rows={config.rows}")
    return (np.arange(config.rows) % n_hw) // n


def chain_metadata_decodable(config: "AcceleratorConfig", encoding: str, pattern: NMPattern, seg_len: int) -> bool:
    """Whether the chain's RTL decodes ``encoding`` for a layer run at ``pattern`` with k-tiles of ``seg_len`` slots.

    ``slot`` always; ``index`` for a pattern with ``m < group_size`` on a chain whose lanes hold one
    weight (:func:`weight_values`; the expander has no output-packed lane) when the layer's ``n_hw``
    divides ``seg_len`` (then also ``rows``).
    """
    if encoding == "slot":
        return True
    if encoding != "index" or pattern.dense or pattern.m >= config.group_size or weight_values(config) != 1:
        return False
    return seg_len % config.hardware_pattern(pattern).n == 0


def chain_compact_patterns(config: "AcceleratorConfig") -> tuple[NMPattern, ...]:
    """The sparse patterns with ``m < group_size`` whose compact index the expander decodes
    (``n_hw`` divides ``rows``), ordered by ``(m, n)``: the expander's ``select`` values.  None on a
    chain whose lanes hold two weights (``chain.packing: both``)."""
    if weight_values(config) != 1:
        return ()
    out = []
    for m in (2, 4, 8, 16):
        if m >= config.group_size or config.group_size % m:
            continue
        for n in range(1, m):
            if config.rows % config.hardware_pattern(NMPattern(n=n, m=m)).n == 0:
                out.append(NMPattern(n=n, m=m))
    return tuple(out)


def chain_compact_weight_beat_bits(config: "AcceleratorConfig", m: int) -> int:
    """Width of a compact weight beat for sub-groups of ``m``: ``cols * rows * (weight_bits + log2(m))``."""
    return config.cols * config.rows * (config.weight_bits + int(m - 1).bit_length())


def pack_chain_compact_weight_beat(config: "AcceleratorConfig", values: np.ndarray, local: np.ndarray, m: int) -> int:
    """Pack ``values`` / sub-group indices ``local`` of shape ``(cols, rows)`` into one compact beat."""
    wb = config.weight_bits
    lanes = (np.asarray(values, dtype=np.int64) & ((1 << wb) - 1)) | (np.asarray(local, dtype=np.int64) << wb)
    return pack_lanes(lanes, wb + int(m - 1).bit_length())


def expand_chain_compact_weight_beat(config: "AcceleratorConfig", word: int, n: int, m: int) -> int:
    """The weight beat the index expander makes of a compact beat (the naive model of the RTL)."""
    wb, ib = config.weight_bits, int(m - 1).bit_length()
    lanes = unpack_lanes(word, wb + ib, config.cols * config.rows, signed=False).reshape(config.cols, config.rows)
    chain_index_subgroups(config, n, m)   # checks that n_hw divides rows
    slots = expand_indices((lanes >> wb).T, n, m, config.group_size)   # slot i of a k-tile on slice i
    values = lanes & ((1 << wb) - 1)
    return pack_lanes(values | (slots.T.astype(np.int64) << wb), wb + config.index_bits)
