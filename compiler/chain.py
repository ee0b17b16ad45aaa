"""Compile an N:M-sparse GEMM for the sparse DSP chain (``datapath.kind: dsp_chain``), docs/chain.md.

Geometry: ``cols`` chains (vector units) of ``rows`` MAC slices; ``P = config.token_lanes``
tokens (rows of A) per pass (2 with packing).  Each chain is cut at run time into ``S``
segments of ``L = rows / S`` slices (cascade cutting, docs/chain.md; ``S`` divides
``chain.max_segments``, chosen per GEMM by :func:`plan_chain_tiling`).  The compressed
reduction axis (``ceil(k / group_size) * n_hw`` slots per output column) is cut into k-tiles
of ``L`` slots (slot ``i`` of a k-tile runs on slice ``s * L + i`` of every segment ``s``), the
output axis into n-tiles of ``S * cols`` columns (column ``s * cols + c`` on segment ``s`` of
chain ``c``), the rows of A into blocks of ``P`` tokens, the k-tiles into k-chunks the
activation buffer holds (``chain.act_depth`` words; each word holds its ``L``-slot k-tile
replicated ``S`` times) and the n-tiles into n-chunks the output bank holds
(``accumulator_depth`` rows, at most 65535 weight beats per COMPUTE and output beats per
DRAIN).  The loop nest (:meth:`ChainTiling.schedule`) is::

    for block of P tokens:
      LOAD_A kt, segments=S              (once per block when every k-tile fits)
      for n-chunk of nn n-tiles:
        for k-chunk of kk k-tiles:
          LOAD_A kk, segments=S          (only when K needs several k-chunks)
          COMPUTE nn * kk, accumulate = (k-chunk > 0)   weights stream: one beat per cycle
        DRAIN nn * S                     S beats per n-tile: P x cols results each
    HALT

Weights stream (each is used once per block: no LOAD_W, no per-tile flush), the activations
of the block sit in the buffer the sparse MUXes select from.

Output packing (``chain.packing: both``, docs/chain.md#packing-for-gemv-chainpacking-both): a
GEMM may instead run with ``packing="outputs"``: blocks of one token, and every multiplier
computes two output columns, ``(w1 << 18) + w0`` times one activation.  Output tile ``o`` is
then ``2 * cols`` columns: chain ``c`` computes columns ``o * 2 * cols + c`` (lane 0) and
``o * 2 * cols + cols + c`` (lane 1), the output beat's lane ``p * cols + c``.  The two weights
share the slice's sparse MUX index, so the pair is compressed on the union of its two N:M masks
(``min(2 N, M):M``, ``M = group_size``).  :func:`plan_chain_tiling` costs every packing mode the
config allows with every segment count by the timing contract and takes the cheapest.  The
estimator costs the same schedule with :meth:`ChainTiling.instruction_counts`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from sparsa.chain_layout import pair_weights
from sparsa.compiler.chain_tiling import MAX_COMPUTE_BEATS, ChainTiling, lane_pattern, plan_chain_tiling
from sparsa.compiler.program import GemmShape, InstructionListMixin
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, FormatError, ShapeError, UnsupportedError
from sparsa.isa import Instruction, Opcode, encode
from sparsa.formats import nm
from sparsa.formats.nm import NMPattern
from sparsa.formats.nm_meta import expand_indices
from sparsa.compiler.metadata import MetadataChoice, choose_metadata, compress_for
from sparsa.compiler.weights import check_reduction_fits, prune_to_pattern, requested_pattern, weight_matrix
from sparsa.models.reference import check_int_range

__all__ = ["chain_metadata", "ChainTiling", "ChainStep", "ChainProgram", "plan_chain_tiling", "compile_chain_gemm",
           "MAX_COMPUTE_BEATS", "chain_output_beats", "write_chain_images"]

@dataclass(frozen=True)
class ChainStep:
    """One COMPUTE: token block ``block``, n-tiles ``n0 .. n0+nn-1``, k-tiles ``k0 .. k0+kk-1``."""

    block: int
    n0: int
    nn: int
    k0: int
    kk: int
    accumulate: bool


@dataclass(frozen=True, eq=False)
class ChainProgram(InstructionListMixin):
    """A GEMM compiled for a DSP-chain accelerator; the same interface as
    :class:`~sparsa.compiler.program.Program` for the backends.

    Attributes
    ----------
    tile_values, tile_indices : np.ndarray
        ``(ktiles, ntiles, rows, cols)`` compressed weights: for slice ``s * L + i`` of chain
        ``c`` (segment ``s`` of ``S``, ``L = rows / S``), slot ``i`` of k-tile ``t`` of output
        column ``nt * S * cols + s * cols + c``.  With output packing a value is the pair
        :func:`~sparsa.chain_layout.pair_weights` of columns ``o * 2 * cols + c`` and ``o * 2 *
        cols + cols + c`` (``o = nt * S + s``), an index their shared MUX index.
    row_groups : np.ndarray
        ``(ktiles, rows)``: the activation group slice ``s * L + i`` of k-tile ``t`` indexes
        into (-1: padding); the ``L``-lane pattern repeats for every segment ``s``.
    drains : tuple
        ``(block, o0, no)`` per DRAIN in output tiles of ``cols`` columns (``no`` beats).
    """

    config: AcceleratorConfig
    shape: GemmShape
    pattern: NMPattern
    hw_pattern: NMPattern
    tiling: ChainTiling
    instructions: tuple[Instruction, ...]
    tile_values: np.ndarray
    tile_indices: np.ndarray
    row_groups: np.ndarray
    load_steps: tuple[tuple[int, int, int], ...]
    computes: tuple[ChainStep, ...]
    drains: tuple[tuple[int, int, int], ...]
    weights: np.ndarray
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ sizes
    @property
    def segments(self) -> int:
        """Segments S each chain is cut into (the LOAD_As' ``segments`` field)."""
        return self.tiling.segments

    @property
    def packing(self) -> str:
        """Packing mode of the program: ``"none"``, ``"tokens"`` or ``"outputs"`` (the LOAD_As' ``outputs``)."""
        return self.tiling.packing

    @property
    def output_lanes(self) -> int:
        """Accumulators per output beat: ``token_lanes * cols`` (token-major)."""
        return self.config.token_lanes * self.config.cols

    @property
    def num_weight_beats(self) -> int:
        return sum(s.nn * s.kk for s in self.computes)

    @property
    def num_activation_beats(self) -> int:
        return sum(kk for _, _, kk in self.load_steps)

    @property
    def num_output_beats(self) -> int:
        return sum(nn for _, _, nn in self.drains)

    @property
    def useful_macs(self) -> int:
        """Multiplications by kept weight slots that fall inside the GEMM."""
        return self.shape.m * self.tiling.slots * self.shape.n

    # ------------------------------------------------------------------ stimulus
    def instruction_words(self) -> list[int]:
        return [encode(i) for i in self.instructions]

    def weight_beats(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Weight-stream beats in order: ``(values[cols, rows], indices[cols, rows])`` (chain-major)."""
        for s in self.computes:
            for nt in range(s.n0, s.n0 + s.nn):
                for t in range(s.k0, s.k0 + s.kk):
                    yield self.tile_values[t, nt].T, self.tile_indices[t, nt].T

    @property
    def metadata(self) -> MetadataChoice:
        """The N:M metadata encoding of the weights (:func:`~sparsa.compiler.metadata.choose_metadata`)."""
        return self.meta["metadata"]

    def compact_weight_beats(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The weight beats in the compact ``index`` encoding: ``(values, indices mod m)``, what the
        index expander (:class:`~sparsa.hdl.chain.index_expander.IndexExpander`) turns back into
        :meth:`weight_beats`.  UnsupportedError unless :attr:`metadata` is ``index``."""
        if self.metadata.encoding != "index":
            raise UnsupportedError(f"this program's metadata is {self.metadata.encoding!r}, not the compact 'index'")
        for values, indices in self.weight_beats():
            yield values, indices % self.pattern.m

    def check_inputs(self, tensors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Validate ``tensors`` (must hold ``"A"`` of shape (m, k), activation-representable)."""
        if "A" not in tensors:
            raise ShapeError(f"tensors must contain the activation matrix 'A', got keys {sorted(tensors)}")
        a = np.asarray(tensors["A"])
        if a.shape != (self.shape.m, self.shape.k):
            raise ShapeError(f"A has shape {a.shape}, the program was compiled for {(self.shape.m, self.shape.k)}")
        return check_int_range(a, self.config.activation_bits, "activation A")

    def check_scales(self, tensors: Mapping[str, np.ndarray]) -> None:
        """The chain has no activation-scaling stage: ``"S"`` is refused, and there are no scales."""
        if "S" in tensors:
            raise ShapeError(f"the DSP chain ({self.config.name}) has per-tensor activation scales only and takes "
                             f"no scales 'S'")
        return None

    @property
    def tile_grid(self) -> str:
        """``"ktiles x ntiles"`` of the tiling, for reports."""
        return f"{self.tiling.ktiles}x{self.tiling.ntiles}"

    def report_fields(self) -> dict:
        """Datapath-specific fields of a run report: the segments each chain is cut into."""
        return {"chain_segments": self.segments, "chain_packing": self.packing, "metadata": self.metadata.encoding}

    def write_images(self, a: np.ndarray, expected: np.ndarray, out_dir, scales: "np.ndarray | None" = None) -> list:
        """``sparsa compile``: write the memory images and metadata (:func:`write_chain_images`)."""
        self.check_scales({} if scales is None else {"S": scales})
        return write_chain_images(self, a, expected, out_dir)

    def grouped_activations(self, a: np.ndarray) -> np.ndarray:
        """A as ``(blocks * P, groups + 1, group_size)`` (``P`` tokens per block: 1 with output
        packing): rows and k zero-padded; the extra group is zero."""
        t = self.tiling
        g, p = self.config.group_size, t.tokens
        padded = np.zeros((t.blocks * p, (t.groups + 1) * g), dtype=np.int64)
        padded[: a.shape[0], : self.shape.k] = a
        return padded.reshape(t.blocks * p, t.groups + 1, g)

    def buffer_words(self, grouped: np.ndarray, block: int, k0: int, kk: int) -> np.ndarray:
        """Activation-buffer words of one LOAD_A: ``(kk, rows, P, group_size)`` (output packing:
        the block's one token in lane 0, zeros in lane 1)."""
        p, lanes = self.tiling.tokens, self.config.token_lanes
        tokens = grouped[block * p: (block + 1) * p]                 # (p, groups+1, M)
        words = tokens[:, self.row_groups[k0: k0 + kk], :]           # (p, kk, rows, M)
        if p < lanes:
            words = np.concatenate([words, np.zeros((lanes - p,) + words.shape[1:], np.int64)])
        return words.transpose(1, 2, 0, 3)

    def activation_beats(self, a: np.ndarray, scales: "np.ndarray | None" = None) -> Iterator[np.ndarray]:
        """Activation-stream beats (LOAD_A words) in order, one ``(rows, P, group_size)`` array each.

        ``scales`` is part of the program protocol; the chain has no scales, so it must be None.
        """
        self.check_scales({} if scales is None else {"S": scales})
        a = self.check_inputs({"A": a})
        grouped = self.grouped_activations(a)
        for block, k0, kk in self.load_steps:
            yield from self.buffer_words(grouped, block, k0, kk)

    def collect_outputs(self, beats: np.ndarray) -> np.ndarray:
        """Assemble ``Y[m, n]`` from the output beats ``(num_output_beats, P * cols)`` in stream order."""
        beats = np.asarray(beats, dtype=np.int64)
        c, p = self.config.cols, self.config.token_lanes
        if beats.shape != (self.num_output_beats, p * c):
            raise FormatError(f"expected {self.num_output_beats} output beats of {p * c} lanes, got {beats.shape}")
        y, pos = _output_matrix(self.tiling, c), 0
        for block, o0, no in self.drains:
            _drain_view(self.tiling, y, c, block, o0, no)[...] = _beat_view(self.tiling, beats[pos: pos + no], c)
            pos += no
        return y[: self.shape.m, : self.shape.n]


def _output_matrix(tiling: ChainTiling, cols: int) -> np.ndarray:
    """Zero ``Y`` padded to whole token blocks and output tiles."""
    return np.zeros((tiling.blocks * tiling.tokens, tiling.out_tiles * cols * tiling.columns_per_lane), np.int64)


def _drain_view(tiling: ChainTiling, y: np.ndarray, cols: int, block: int, o0: int, no: int) -> np.ndarray:
    """The part of the padded ``Y`` one DRAIN of output tiles ``o0 .. o0+no-1`` carries: ``(tokens, no * w)``."""
    p, w = tiling.tokens, cols * tiling.columns_per_lane
    return y[block * p: (block + 1) * p, o0 * w: (o0 + no) * w]


def _beat_view(tiling: ChainTiling, beats: np.ndarray, cols: int) -> np.ndarray:
    """Output beats ``(no, P * cols)`` as the ``(tokens, no * w)`` block of ``Y`` they carry (lane
    ``p * cols + c``: token ``p``, or with output packing column ``p * cols + c`` of the tile)."""
    no = beats.shape[0]
    if tiling.outputs:
        return beats.reshape(1, -1)
    lanes = beats.shape[1] // cols
    return beats.reshape(no, lanes, cols).transpose(1, 0, 2).reshape(lanes, no * cols)


def compile_chain_gemm(
    config: AcceleratorConfig,
    weights: np.ndarray,
    m_rows: int,
    pattern: "NMPattern | str | None" = None,
    *,
    prune: bool = True,
    allow_overflow: bool = False,
    segments: "int | None" = None,
    packing: "str | None" = None,
) -> ChainProgram:
    """Compile ``Y[m_rows, n] = A[m_rows, k] @ W[k, n]`` for a DSP-chain ``config``.

    Same arguments and checks as :func:`sparsa.compiler.compile_gemm` (which dispatches
    here), plus ``segments``: the number S of segments each chain is cut into, and ``packing``:
    ``"none"``, ``"tokens"`` or ``"outputs"``, one of ``config.chain.packing_modes`` (None:
    chosen by :func:`plan_chain_tiling` for the fewest cycles; ``program.segments`` and
    ``program.packing`` tell which).

    Raises
    ------
    ConfigError
        If ``segments`` is not supported by ``datapath.chain.max_segments``, ``packing`` not
        by ``datapath.chain.packing``, or the reduction can overflow the accumulator (unless
        ``allow_overflow``).
    """
    config.require_supported()
    w = weight_matrix(config, weights)
    k, n = w.shape
    req = requested_pattern(config, pattern)
    tiling = plan_chain_tiling(config, m_rows, k, n, req, segments, packing)
    hw = tiling.hw_pattern
    w = prune_to_pattern(w, req, prune)
    metadata = chain_metadata(config, tiling, req)
    if not allow_overflow:
        check_reduction_fits(config, groups_slots(tiling), k, req)

    r, c = config.rows, config.cols
    seg, seg_len = tiling.segments, tiling.seg_len
    kt_n, nt_n = tiling.ktiles, tiling.ntiles
    vals = np.zeros((kt_n * seg_len, nt_n * seg * c), dtype=np.int64)
    idxs = np.zeros((kt_n * seg_len, nt_n * seg * c), dtype=np.int64)
    lane_values, lane_indices = _lane_weights(tiling, w, c, None if tiling.outputs else compress_for(config, w, req, metadata.encoding))
    vals[: tiling.slots, : lane_values.shape[1]] = lane_values
    idxs[: tiling.slots, : lane_values.shape[1]] = lane_indices
    if metadata.encoding == "index":     # padding slots too: the expander's index of a zero sub-group slot
        idxs = expand_indices(idxs % req.m, req.n, req.m, config.group_size).astype(np.int64)

    def tiles(x: np.ndarray) -> np.ndarray:
        # (slot t*L + i, column (nt*S + s)*C + c) -> (t, nt, slice s*L + i, chain c)
        return x.reshape(kt_n, seg_len, nt_n, seg, c).transpose(0, 2, 3, 1, 4).reshape(kt_n, nt_n, r, c).copy()

    tile_values, tile_indices = tiles(vals), tiles(idxs)
    slot = np.arange(kt_n * seg_len)
    lane_n = lane_pattern(hw, tiling.packing).n
    row_groups = np.tile(np.where(slot < tiling.slots, slot // lane_n, -1).reshape(kt_n, seg_len), (1, seg))

    instructions: list[Instruction] = []
    loads, computes, drains = [], [], []
    for item in tiling.schedule():
        if item[0] == "load_a":
            _, b, k0, kk = item
            loads.append((b, k0, kk))
            instructions.append(Instruction(Opcode.LOAD_A, kk, segments=seg, outputs=tiling.outputs))
        elif item[0] == "compute":
            _, b, n0, nn, k0, kk, acc = item
            computes.append(ChainStep(b, n0, nn, k0, kk, acc))
            instructions.append(Instruction(Opcode.COMPUTE, nn * kk, acc))
        else:
            _, b, n0, nn = item
            drains.append((b, n0 * seg, nn * seg))
            instructions.append(Instruction(Opcode.DRAIN, nn * seg))
    instructions.append(Instruction(Opcode.HALT))
    return ChainProgram(
        config=config, shape=GemmShape(m_rows, k, n), pattern=req, hw_pattern=hw, tiling=tiling,
        instructions=tuple(instructions), tile_values=tile_values, tile_indices=tile_indices,
        row_groups=row_groups, load_steps=tuple(loads), computes=tuple(computes), drains=tuple(drains),
        weights=w.astype(np.int64), meta={"tiling": tiling, "segments": seg, "packing": tiling.packing,
                                          "metadata": metadata})


def chain_metadata(config: AcceleratorConfig, tiling: ChainTiling, pattern: NMPattern) -> MetadataChoice:
    """The metadata of a chain GEMM's weights (:func:`~sparsa.compiler.metadata.choose_metadata`); with
    output packing a lane's index is the union of two columns' masks (:func:`lane_pattern`), one per
    column pair."""
    lanes = lane_pattern(tiling.hw_pattern, "outputs") if tiling.outputs else pattern
    return choose_metadata(config, lanes, tiling.k, -(-tiling.n // tiling.columns_per_lane), tiling.seg_len)


def groups_slots(tiling: ChainTiling) -> int:
    """Products one output column sums: ``groups * N`` of the hardware pattern, whatever the packing."""
    return tiling.groups * tiling.hw_pattern.n


def _lane_weights(tiling: ChainTiling, w: np.ndarray, cols: int,
                  single: "nm.NMCompressed | None") -> tuple[np.ndarray, np.ndarray]:
    """Compressed ``(values, indices)`` of shape ``(slots, lanes)`` of the pruned ``w (k, n)``, one
    column per weight lane: ``single`` (:func:`~sparsa.compiler.metadata.compress_for`), or with output
    packing :func:`~sparsa.chain_layout.pair_weights` of the two columns of lane ``o * cols + c``, on
    the union of their masks."""
    hw = tiling.hw_pattern
    if not tiling.outputs:
        return single.values.astype(np.int64), single.indices.astype(np.int64)
    k, n = w.shape
    tiles = -(-n // (2 * cols))
    padded = np.zeros((k, tiles * 2 * cols), np.int64)
    padded[:, :n] = w
    pair = padded.reshape(k, tiles, 2, cols)
    w0, w1 = pair[:, :, 0, :].reshape(k, -1), pair[:, :, 1, :].reshape(k, -1)
    union = lane_pattern(hw, "outputs")
    comp = nm.compress(np.abs(w0) + np.abs(w1), union.n, union.m, axis=0)   # keeps every nonzero of either
    idx = comp.indices.astype(np.int64)
    rows = (np.arange(tiling.slots) // union.n)[:, None] * union.m + idx        # row of W each slot selects
    inside = rows < k                                                          # else k's zero padding

    def gather(x: np.ndarray) -> np.ndarray:
        return np.where(inside, np.take_along_axis(x, np.minimum(rows, k - 1), axis=0), 0)

    return pair_weights(gather(w0), gather(w1)), idx


def chain_output_beats(program: ChainProgram, y: np.ndarray) -> np.ndarray:
    """The output-stream beats ``(num_output_beats, P * cols)`` that carry ``Y`` (zero padded)."""
    c, p = program.config.cols, program.config.token_lanes
    t = program.tiling
    full = _output_matrix(t, c)
    full[: program.shape.m, : program.shape.n] = y
    beats = []
    for block, o0, no in program.drains:
        part = _drain_view(t, full, c, block, o0, no)
        beats.append(part.reshape(no, p * c) if t.outputs
                     else part.reshape(p, no, c).transpose(1, 0, 2).reshape(no, p * c))
    return np.concatenate(beats) if beats else np.zeros((0, p * c), np.int64)


def write_chain_images(program: ChainProgram, a: np.ndarray, expected: np.ndarray, out_dir) -> list:
    """``sparsa compile`` for the chain: instr/weights/acts/expected hex images, listing and JSON.

    The files replace the directory's previous ones as a set (:func:`sparsa.output.output_dir`):
    a failure or Ctrl-C leaves the old complete set and no litter.
    """
    import json

    from sparsa.output import output_dir

    from sparsa.chain_layout import (chain_activation_beat_bits, chain_compact_weight_beat_bits, chain_output_beat_bits,
                                     chain_weight_beat_bits, pack_chain_activation_beat, pack_chain_compact_weight_beat,
                                     pack_chain_weight_beat)
    from sparsa.layout import pack_lanes

    def hex_lines(words, bits):
        digits = max(1, -(-bits // 4))
        return "".join(f"{w:0{digits}x}\n" for w in words)

    cfg = program.config
    bits = {"instr": 32, "weights": chain_weight_beat_bits(cfg), "acts": chain_activation_beat_bits(cfg),
            "outputs": chain_output_beat_bits(cfg)}
    t = program.tiling
    meta = {
        "config": cfg.name, "datapath": "dsp_chain",
        "gemm": {"m": program.shape.m, "k": program.shape.k, "n": program.shape.n},
        "sparsity": str(program.pattern), "hardware_sparsity": str(program.hw_pattern),
        "tiling": {"ktiles": t.ktiles, "ntiles": t.ntiles, "blocks": t.blocks, "kchunks": len(t.kchunks),
                   "nchunks": len(t.nchunks), "slots": t.slots, "segments": t.segments,
                   "packing": t.packing},
        "instructions": program.opcode_counts(),
        "beats": {"weights": program.num_weight_beats, "acts": program.num_activation_beats,
                  "outputs": program.num_output_beats},
        "beat_bits": bits,
        "metadata": {"encoding": program.metadata.encoding, "bytes": program.metadata.nbytes},
    }
    contents = {
        "instr.hex": hex_lines(program.instruction_words(), 32),
        "weights.hex": hex_lines((pack_chain_weight_beat(cfg, v, i) for v, i in program.weight_beats()),
                                 bits["weights"]),
        "acts.hex": hex_lines((pack_chain_activation_beat(cfg, w) for w in program.activation_beats(a)),
                              bits["acts"]),
        "expected.hex": hex_lines((pack_lanes(b, cfg.accumulator_bits)
                                   for b in chain_output_beats(program, expected)), bits["outputs"]),
        "program.lst": program.listing() + "\n",
        "program.json": json.dumps(meta, indent=2) + "\n",
    }
    if program.metadata.encoding == "index":     # the stream the index expander takes (docs/formats/nm.md)
        width = chain_compact_weight_beat_bits(cfg, program.pattern.m)
        meta["beat_bits"]["weights_compact"] = width
        contents["weights_compact.hex"] = hex_lines((pack_chain_compact_weight_beat(cfg, v, i, program.pattern.m)
                                                     for v, i in program.compact_weight_beats()), width)
        contents["program.json"] = json.dumps(meta, indent=2) + "\n"
    with output_dir(out_dir) as stage:
        return [stage.write(name, text) for name, text in contents.items()]
