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
of the block sit in the buffer the sparse MUXes select from.  The estimator costs the same
schedule with :meth:`ChainTiling.instruction_counts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from sparsa import chain_timing
from sparsa.compiler.program import GemmShape, InstructionListMixin
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, FormatError, ShapeError, UnsupportedError
from sparsa.isa import Instruction, Opcode, encode
from sparsa.formats.nm import NMPattern
from sparsa.formats.nm_meta import expand_indices
from sparsa.compiler.metadata import MetadataChoice, choose_metadata, compress_for
from sparsa.compiler.weights import check_reduction_fits, prune_to_pattern, requested_pattern, weight_matrix
from sparsa.models.reference import check_int_range

__all__ = ["ChainTiling", "ChainStep", "ChainProgram", "plan_chain_tiling", "compile_chain_gemm",
           "MAX_COMPUTE_BEATS", "chain_output_beats", "write_chain_images"]

#: Largest COMPUTE count (the 16-bit ``count`` field): weight beats of one COMPUTE (and output
#: beats of one DRAIN).
MAX_COMPUTE_BEATS = (1 << 16) - 1


def _chunks(total: int, size: int) -> tuple[tuple[int, int], ...]:
    """``(start, length)`` pieces of ``range(total)`` of at most ``size``."""
    return tuple((s, min(size, total - s)) for s in range(0, total, size))


@dataclass(frozen=True)
class ChainTiling:
    """How one GEMM is cut for the DSP chain (see the module docstring).

    ``ktiles`` k-tiles of ``seg_len = rows / segments`` slots, ``ntiles`` n-tiles of
    ``segments * cols`` output columns; ``nchunks`` count n-tiles (each drains as ``segments``
    output beats of ``cols`` columns).
    """

    m: int
    k: int
    n: int
    hw_pattern: NMPattern
    groups: int
    slots: int
    ktiles: int
    ntiles: int
    tokens: int
    blocks: int
    kchunks: tuple[tuple[int, int], ...]
    nchunks: tuple[tuple[int, int], ...]
    segments: int
    seg_len: int

    @property
    def out_tiles(self) -> int:
        """Output tiles of ``cols`` columns (one output beat per token block each)."""
        return self.ntiles * self.segments

    @property
    def act_resident(self) -> bool:
        """Every k-tile fits the activation buffer: one LOAD_A per token block."""
        return len(self.kchunks) == 1

    def schedule(self) -> Iterator[tuple]:
        """Yield ``("load_a", block, k0, kk)``, ``("compute", block, n0, nn, k0, kk, accumulate)``,
        ``("drain", block, n0, nn)`` in program order (``n0``, ``nn`` in n-tiles; the LOAD_As
        carry :attr:`segments`, a DRAIN pushes ``nn * segments`` beats)."""
        for b in range(self.blocks):
            if self.act_resident:
                yield ("load_a", b, 0, self.ktiles)
            for n0, nn in self.nchunks:
                for i, (k0, kk) in enumerate(self.kchunks):
                    if not self.act_resident:
                        yield ("load_a", b, k0, kk)
                    yield ("compute", b, n0, nn, k0, kk, i > 0)
                yield ("drain", b, n0, nn)

    def instruction_counts(self) -> Counter:
        """The :meth:`schedule`'s instructions with multiplicities, without iterating over tiles."""
        counts: Counter = Counter()
        b, seg = self.blocks, self.segments
        if self.act_resident:
            counts[Instruction(Opcode.LOAD_A, self.ktiles, segments=seg)] += b
        for _, nn in self.nchunks:
            for i, (_, kk) in enumerate(self.kchunks):
                if not self.act_resident:
                    counts[Instruction(Opcode.LOAD_A, kk, segments=seg)] += b
                counts[Instruction(Opcode.COMPUTE, nn * kk, i > 0)] += b
            counts[Instruction(Opcode.DRAIN, nn * seg)] += b
        counts[Instruction(Opcode.HALT)] = 1
        return counts

    @property
    def weight_beats(self) -> int:
        """Weight beats streamed by the whole program (each holds ``rows x cols`` slots)."""
        return self.blocks * self.ntiles * self.ktiles

    @property
    def act_beats(self) -> int:
        """Activation-buffer words loaded by the whole program."""
        per_block = self.ktiles if self.act_resident else self.ktiles * len(self.nchunks)
        return self.blocks * per_block

    def cycles(self, config: AcceleratorConfig) -> int:
        """Cycles of the whole :meth:`schedule` by the chain timing contract (no stalls)."""
        return sum(mult * chain_timing.instruction_cycles(config, ins)
                   for ins, mult in self.instruction_counts().items())


def _plan(config: AcceleratorConfig, m: int, k: int, n: int, hw: NMPattern, segments: int) -> ChainTiling:
    """:class:`ChainTiling` of one GEMM with the chains cut into ``segments`` segments."""
    seg_len = config.rows // segments
    groups = -(-k // config.group_size)
    slots = groups * hw.n
    ktiles = -(-slots // seg_len)
    ntiles = -(-n // (config.cols * segments))
    kk = min(ktiles, config.chain.act_depth, MAX_COMPUTE_BEATS)
    kchunks = _chunks(ktiles, kk)
    nn = max(1, min(config.buffers.accumulator_depth, MAX_COMPUTE_BEATS // kk, MAX_COMPUTE_BEATS // segments))
    p = config.token_lanes
    return ChainTiling(m=m, k=k, n=n, hw_pattern=hw, groups=groups, slots=slots, ktiles=ktiles, ntiles=ntiles,
                       tokens=p, blocks=-(-m // p), kchunks=kchunks, nchunks=_chunks(ntiles, nn),
                       segments=segments, seg_len=seg_len)


def plan_chain_tiling(config: AcceleratorConfig, m: int, k: int, n: int,
                      pattern: "NMPattern | str | None", segments: "int | None" = None) -> ChainTiling:
    """Cut an ``(m x k) @ (k x n)`` GEMM with sparsity ``pattern`` for the chain.

    Parameters
    ----------
    config : AcceleratorConfig
        A ``dsp_chain`` configuration.
    m, k, n : int
        GEMM dimensions.
    pattern : NMPattern or str or None
        Requested N:M sparsity (None: the config's default).
    segments : int, optional
        Segments S each chain is cut into (one of ``config.chain.supported_segments()``).
        None (default): the supported S with the fewest :meth:`ChainTiling.cycles` (ties: the
        smaller S) - fewer k-tiles per output (short reductions) against more n-tiles.

    Raises
    ------
    ShapeError
        If a dimension is not a positive integer.
    ConfigError
        If ``segments`` is not a segment count the config supports.
    UnsupportedError
        If the pattern cannot run on the sparse MUX, or the config is not a DSP chain.
    """
    if config.datapath.kind != "dsp_chain":
        raise UnsupportedError(f"{config.name}: plan_chain_tiling needs datapath.kind='dsp_chain', "
                               f"not {config.datapath.kind!r}")
    for name, value in (("m", m), ("k", k), ("n", n)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ShapeError(f"GEMM dimension {name} must be a positive integer, not {value!r}")
    supported = config.chain.supported_segments()
    if segments is not None and (isinstance(segments, bool) or segments not in supported):
        raise ConfigError(f"segments={segments!r} is not supported by datapath.chain.max_segments="
                          f"{config.chain.max_segments}; use one of {list(supported)}")
    hw = config.hardware_pattern(pattern)
    if segments is not None:
        return _plan(config, m, k, n, hw, segments)
    plans = [_plan(config, m, k, n, hw, s) for s in supported]
    return min(plans, key=lambda t: (t.cycles(config), t.segments))


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
        column ``nt * S * cols + s * cols + c``.
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
        return {"chain_segments": self.segments, "metadata": self.metadata.encoding}

    def write_images(self, a: np.ndarray, expected: np.ndarray, out_dir, scales: "np.ndarray | None" = None) -> list:
        """``sparsa compile``: write the memory images and metadata (:func:`write_chain_images`)."""
        self.check_scales({} if scales is None else {"S": scales})
        return write_chain_images(self, a, expected, out_dir)

    def grouped_activations(self, a: np.ndarray) -> np.ndarray:
        """A as ``(blocks * P, groups + 1, group_size)``: rows and k zero-padded; the extra group is zero."""
        g, p = self.config.group_size, self.config.token_lanes
        t = self.tiling
        padded = np.zeros((t.blocks * p, (t.groups + 1) * g), dtype=np.int64)
        padded[: a.shape[0], : self.shape.k] = a
        return padded.reshape(t.blocks * p, t.groups + 1, g)

    def buffer_words(self, grouped: np.ndarray, block: int, k0: int, kk: int) -> np.ndarray:
        """Activation-buffer words of one LOAD_A: ``(kk, rows, P, group_size)``."""
        p = self.config.token_lanes
        tokens = grouped[block * p: (block + 1) * p]                 # (P, groups+1, M)
        words = tokens[:, self.row_groups[k0: k0 + kk], :]           # (P, kk, rows, M)
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
        t = self.tiling
        y = np.zeros((t.blocks * p, t.out_tiles * c), dtype=np.int64)
        pos = 0
        for block, n0, nn in self.drains:
            rows = beats[pos: pos + nn].reshape(nn, p, c).transpose(1, 0, 2).reshape(p, nn * c)
            y[block * p: (block + 1) * p, n0 * c: (n0 + nn) * c] = rows
            pos += nn
        return y[: self.shape.m, : self.shape.n]


def compile_chain_gemm(
    config: AcceleratorConfig,
    weights: np.ndarray,
    m_rows: int,
    pattern: "NMPattern | str | None" = None,
    *,
    prune: bool = True,
    allow_overflow: bool = False,
    segments: "int | None" = None,
) -> ChainProgram:
    """Compile ``Y[m_rows, n] = A[m_rows, k] @ W[k, n]`` for a DSP-chain ``config``.

    Same arguments and checks as :func:`sparsa.compiler.compile_gemm` (which dispatches
    here), plus ``segments``: the number S of segments each chain is cut into (None: chosen by
    :func:`plan_chain_tiling` for the fewest cycles; ``program.segments`` tells which).

    Raises
    ------
    ConfigError
        If ``segments`` is not supported by ``datapath.chain.max_segments``, or the reduction
        can overflow the accumulator (unless ``allow_overflow``).
    """
    config.require_supported()
    w = weight_matrix(config, weights)
    k, n = w.shape
    req = requested_pattern(config, pattern)
    tiling = plan_chain_tiling(config, m_rows, k, n, req, segments)
    hw = tiling.hw_pattern
    w = prune_to_pattern(w, req, prune)
    metadata = choose_metadata(config, req, k, n, tiling.seg_len)
    comp = compress_for(config, w, req, metadata.encoding)
    if not allow_overflow:
        check_reduction_fits(config, tiling.slots, k, req)

    r, c = config.rows, config.cols
    seg, seg_len = tiling.segments, tiling.seg_len
    kt_n, nt_n = tiling.ktiles, tiling.ntiles
    vals = np.zeros((kt_n * seg_len, nt_n * seg * c), dtype=np.int64)
    idxs = np.zeros((kt_n * seg_len, nt_n * seg * c), dtype=np.int64)
    vals[: tiling.slots, :n] = comp.values
    idxs[: tiling.slots, :n] = comp.indices
    if metadata.encoding == "index":     # padding slots too: the expander's index of a zero sub-group slot
        idxs = expand_indices(idxs % req.m, req.n, req.m, config.group_size).astype(np.int64)

    def tiles(x: np.ndarray) -> np.ndarray:
        # (slot t*L + i, column (nt*S + s)*C + c) -> (t, nt, slice s*L + i, chain c)
        return x.reshape(kt_n, seg_len, nt_n, seg, c).transpose(0, 2, 3, 1, 4).reshape(kt_n, nt_n, r, c).copy()

    tile_values, tile_indices = tiles(vals), tiles(idxs)
    slot = np.arange(kt_n * seg_len)
    row_groups = np.tile(np.where(slot < tiling.slots, slot // hw.n, -1).reshape(kt_n, seg_len), (1, seg))

    instructions: list[Instruction] = []
    loads, computes, drains = [], [], []
    for item in tiling.schedule():
        if item[0] == "load_a":
            _, b, k0, kk = item
            loads.append((b, k0, kk))
            instructions.append(Instruction(Opcode.LOAD_A, kk, segments=seg))
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
        weights=w.astype(np.int64), meta={"tiling": tiling, "segments": seg, "metadata": metadata})


def chain_output_beats(program: ChainProgram, y: np.ndarray) -> np.ndarray:
    """The output-stream beats ``(num_output_beats, P * cols)`` that carry ``Y`` (zero padded)."""
    c, p = program.config.cols, program.config.token_lanes
    t = program.tiling
    full = np.zeros((t.blocks * p, t.out_tiles * c), dtype=np.int64)
    full[: program.shape.m, : program.shape.n] = y
    beats = []
    for block, n0, nn in program.drains:
        part = full[block * p: (block + 1) * p, n0 * c: (n0 + nn) * c].reshape(p, nn, c)
        beats.append(part.transpose(1, 0, 2).reshape(nn, p * c))
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
                   "nchunks": len(t.nchunks), "slots": t.slots, "segments": t.segments},
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
