"""Choose the N:M metadata encoding of a layer's weights (docs/formats/nm.md, "Metadata encodings").

The candidates are the encodings the datapath's RTL decodes
(:attr:`sparsa.datapath.MatrixDatapath.metadata_decoders`) for this layer
(:attr:`~sparsa.datapath.MatrixDatapath.metadata_decodable`: the chain's index expander needs
k-tiles of whole groups of slots); ``sparsity.metadata`` restricts them to one.  Among them the
layer takes the fewest bytes (:func:`sparsa.formats.nm_meta.metadata_bytes`; the values are the
same in every candidate), ties going to the earlier encoding of
:data:`~sparsa.formats.nm_meta.ENCODINGS`.  The estimator counts the bytes of the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.errors import UnsupportedError
import numpy as np

from sparsa.formats import nm
from sparsa.formats.nm import NMPattern
from sparsa.formats.nm_meta import ENCODINGS, expand_indices, hw_slots, metadata_bytes, slot_local_indices

__all__ = ["MetadataChoice", "NO_METADATA", "choose_metadata", "compress_for"]

#: The encoding name a layer without metadata (dense weights, K/V operands) reports.
NO_METADATA = "none"


@dataclass(frozen=True)
class MetadataChoice:
    """The metadata of one weight matrix.

    Attributes
    ----------
    encoding : str
        One of :data:`~sparsa.formats.nm_meta.ENCODINGS`, or :data:`NO_METADATA`.
    nbytes : int
        Bytes of the metadata stream of the whole ``k x n`` weight (read once).
    slot_bits : float
        Metadata bits per hardware slot (``nbytes``' bits over the slots; 0 without metadata):
        what a padding slot of a tile costs.
    candidates : dict
        Bytes of every encoding the hardware could decode for the layer.
    """

    encoding: str
    nbytes: int
    slot_bits: float
    candidates: dict


def choose_metadata(config: AcceleratorConfig, pattern: "NMPattern | str | None", k: int, n: int,
                    seg_len: int) -> MetadataChoice:
    """The metadata encoding of a ``k x n`` weight pruned to ``pattern`` with k-tiles of ``seg_len`` slots.

    Raises
    ------
    UnsupportedError
        ``sparsity.metadata`` forces an encoding the datapath's decoder cannot handle for this layer.
    """
    requested = NMPattern.parse(pattern, dense_m=config.group_size) if pattern is not None \
        else config.sparsity.default_pattern
    hw = config.hardware_pattern(requested)
    if hw.dense:
        return MetadataChoice(NO_METADATA, 0, 0.0, {})
    datapath = matrix_datapath(config)
    candidates = {enc: metadata_bytes(enc, k, n, requested.n, requested.m, config.group_size)
                  for enc in ENCODINGS
                  if enc in datapath.metadata_decoders and datapath.metadata_decodable(config, enc, requested, seg_len)}
    forced = config.sparsity.metadata
    if forced != "auto":
        if forced not in candidates:
            raise UnsupportedError(f"sparsity.metadata={forced!r}: the {datapath.kind} decoder cannot expand it for a "
                                   f"{requested} layer with k-tiles of {seg_len} slots; use 'auto' or one of "
                                   f"{', '.join(candidates)}")
        encoding = forced
    else:          # only what the exported top decodes itself (MatrixDatapath.metadata_auto)
        encoding = min((enc for enc in candidates if enc in datapath.metadata_auto),
                       key=lambda enc: (candidates[enc], ENCODINGS.index(enc)))
    slots = hw_slots(k, requested.n, requested.m, config.group_size) * n
    return MetadataChoice(encoding, candidates[encoding], candidates[encoding] * 8 / slots, candidates)


def compress_for(config: AcceleratorConfig, weights: np.ndarray, pattern: NMPattern, encoding: str) -> nm.NMCompressed:
    """``weights`` (pruned to ``pattern``, reduction axis 0) compressed at the hardware pattern, with
    slot indices the ``encoding``'s decoder reproduces.

    ``index``: the compressed form at ``pattern`` expanded to the hardware's groups
    (:func:`~sparsa.formats.nm_meta.expand_indices`: slot ``s`` in sub-group ``(s mod n_hw) // n``),
    so the compact stream is each slot index modulo ``m``; otherwise :func:`~sparsa.formats.nm.compress`
    at the hardware pattern.  Both hold the same dense tensor.
    """
    hw = config.hardware_pattern(pattern)
    if encoding != "index":
        return nm.compress(weights, hw.n, hw.m, axis=0)
    comp = nm.compress(weights, pattern.n, pattern.m, axis=0)
    local = slot_local_indices(comp, config.group_size)
    values = np.zeros(local.shape, dtype=comp.values.dtype)
    values[: comp.values.shape[0]] = comp.values
    return nm.NMCompressed(values=values, indices=expand_indices(local, pattern.n, pattern.m, config.group_size),
                           n=hw.n, m=hw.m, axis=0, length=comp.length)
