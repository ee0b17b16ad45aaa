"""Stream-beat bit layouts of the DSP-chain datapath (docs/chain.md), defined once.

Lane 0 at the least significant bits, like :mod:`sparsa.layout` and Amaranth's ``ArrayLayout``.

weight beat (COMPUTE, one per cycle)
    ``cols * rows`` lanes of ``weight_bits + index_bits``; lane ``c * rows + i`` feeds slice
    ``i`` of chain ``c``: value at the LSBs, N:M index above (as the systolic weight lane).
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

__all__ = ["PACK_SHIFT", "chain_weight_beat_bits", "chain_activation_beat_bits", "chain_output_beat_bits",
           "pack_chain_weight_beat", "pack_chain_activation_beat", "unpack_chain_output_beat",
           "unpack_chain_weight_beat", "unpack_chain_activation_beat", "chain_stream_beat_bits",
           "CHAIN_METADATA_DECODERS", "chain_index_subgroups", "chain_metadata_decodable",
           "chain_compact_patterns", "chain_compact_weight_beat_bits", "pack_chain_compact_weight_beat",
           "expand_chain_compact_weight_beat"]

#: Bit offset of the high token lane in a packed activation operand (``a1 << 18 + a0``):
#: the low lane of the 48-bit DSP48E2 product is 18 bits wide.
PACK_SHIFT = 18


def chain_weight_beat_bits(config: "AcceleratorConfig") -> int:
    return config.cols * config.rows * (config.weight_bits + config.index_bits)


def chain_activation_beat_bits(config: "AcceleratorConfig") -> int:
    return config.rows * config.token_lanes * config.group_size * config.activation_bits


def chain_output_beat_bits(config: "AcceleratorConfig") -> int:
    return config.token_lanes * config.cols * config.accumulator_bits


def pack_chain_weight_beat(config: "AcceleratorConfig", values: np.ndarray, indices: np.ndarray) -> int:
    """Pack ``values`` / ``indices`` of shape ``(cols, rows)`` into one weight beat."""
    wb = config.weight_bits
    lanes = (np.asarray(values, dtype=np.int64) & ((1 << wb) - 1)) | (np.asarray(indices, dtype=np.int64) << wb)
    return pack_lanes(lanes, wb + config.index_bits)


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
    wb, ib = config.weight_bits, config.index_bits
    lanes = unpack_lanes(word, wb + ib, config.cols * config.rows, signed=False).reshape(config.cols, config.rows)
    values = lanes & ((1 << wb) - 1)
    return np.where(values >> (wb - 1), values - (1 << wb), values), lanes >> wb


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

    ``slot`` always; ``index`` when the layer's ``n_hw`` divides ``seg_len`` (then also ``rows``).
    """
    if encoding == "slot":
        return True
    if encoding != "index" or pattern.dense:
        return False
    return seg_len % config.hardware_pattern(pattern).n == 0


def chain_compact_patterns(config: "AcceleratorConfig") -> tuple[NMPattern, ...]:
    """The sparse patterns with ``m < group_size`` whose compact index the expander decodes
    (``n_hw`` divides ``rows``), ordered by ``(m, n)``: the expander's ``select`` values."""
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
