"""How one GEMM is cut for the sparse DSP chain: :class:`ChainTiling` and :func:`plan_chain_tiling`.

The tiling, loop nest and the choice of segment count and packing mode by the chain timing
contract; :mod:`sparsa.compiler.chain` (its module docstring describes the layout) compiles
programs from it and the estimator costs it (docs/chain.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from sparsa import chain_timing
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, ShapeError, UnsupportedError
from sparsa.formats.nm import NMPattern
from sparsa.isa import Instruction, Opcode

__all__ = ["ChainTiling", "plan_chain_tiling", "lane_pattern", "MAX_COMPUTE_BEATS"]


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
    packing: str = "none"

    @property
    def outputs(self) -> bool:
        """Output packing: two output columns per multiplier, one token per block (LOAD_A ``outputs``)."""
        return self.packing == "outputs"

    @property
    def columns_per_lane(self) -> int:
        """Output columns one chain computes per output tile: 2 with output packing, else 1."""
        return 2 if self.outputs else 1

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
            counts[Instruction(Opcode.LOAD_A, self.ktiles, segments=seg, outputs=self.outputs)] += b
        for _, nn in self.nchunks:
            for i, (_, kk) in enumerate(self.kchunks):
                if not self.act_resident:
                    counts[Instruction(Opcode.LOAD_A, kk, segments=seg, outputs=self.outputs)] += b
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


def lane_pattern(hw: NMPattern, packing: str) -> NMPattern:
    """The N:M pattern of one weight lane's index: ``hw``, or with output packing the union of
    two columns' masks, ``min(2 N, M):M``."""
    return NMPattern(n=min(2 * hw.n, hw.m), m=hw.m) if packing == "outputs" else hw


def _plan(config: AcceleratorConfig, m: int, k: int, n: int, hw: NMPattern, segments: int,
          packing: str) -> ChainTiling:
    """:class:`ChainTiling` of one GEMM with the chains cut into ``segments`` segments, packing ``packing``."""
    seg_len = config.rows // segments
    groups = -(-k // config.group_size)
    slots = groups * lane_pattern(hw, packing).n
    ktiles = -(-slots // seg_len)
    wide = 2 if packing == "outputs" else 1
    ntiles = -(-n // (config.cols * segments * wide))
    kk = min(ktiles, config.chain.act_depth, MAX_COMPUTE_BEATS)
    kchunks = _chunks(ktiles, kk)
    nn = max(1, min(config.buffers.accumulator_depth, MAX_COMPUTE_BEATS // kk, MAX_COMPUTE_BEATS // segments))
    p = 1 if packing == "outputs" else config.token_lanes
    return ChainTiling(m=m, k=k, n=n, hw_pattern=hw, groups=groups, slots=slots, ktiles=ktiles, ntiles=ntiles,
                       tokens=p, blocks=-(-m // p), kchunks=kchunks, nchunks=_chunks(ntiles, nn),
                       segments=segments, seg_len=seg_len, packing=packing)


def plan_chain_tiling(config: AcceleratorConfig, m: int, k: int, n: int,
                      pattern: "NMPattern | str | None", segments: "int | None" = None,
                      packing: "str | None" = None) -> ChainTiling:
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
    packing : str, optional
        Packing mode, one of ``config.chain.packing_modes`` (``"none"``, ``"tokens"``,
        ``"outputs"``).  None (default): the mode with the fewest cycles, costed together with
        the segments (ties: token packing, then the smaller S).

    Raises
    ------
    ShapeError
        If a dimension is not a positive integer.
    ConfigError
        If ``segments`` is not a segment count the config supports, or ``packing`` is not a
        mode it allows.
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
    modes = config.chain.packing_modes
    if packing is not None and packing not in modes:
        raise ConfigError(f"packing={packing!r} is not allowed by datapath.chain.packing="
                          f"{config.chain.packing!r}; use one of {list(modes)}")
    hw = config.hardware_pattern(pattern)
    plans = [_plan(config, m, k, n, hw, s, mode) for mode in ((packing,) if packing else modes)
             for s in ((segments,) if segments is not None else supported)]
    return min(plans, key=lambda t: (t.cycles(config), modes.index(t.packing), t.segments))
