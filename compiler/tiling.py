"""Tiling of an N:M-sparse GEMM onto the weight-stationary array - shared by compiler and estimator.

The compressed reduction axis (``ceil(k / group_size) * n_hw`` slots per output column)
is cut into ``ktiles`` of ``rows`` slots, the output axis into ``ntiles`` of ``cols``
columns, and the rows of A into chunks of at most ``accumulator_depth``.  The loop nest
is ``for chunk: for ntile: for ktile: LOAD_W; COMPUTE; then DRAIN`` - weights are
reloaded per chunk (the accumulator bank cannot hold more rows), and a LOAD_W is skipped
when the tile is already resident.

With per-token or per-group activation scales (``act_scale``, docs/actscale-hardware.md) a
``LOAD_S`` of the chunk's rows precedes the first COMPUTE of every (chunk, scale group) whose
mantissas are not already in the scale RAM: once per chunk for per-token scales (reused by
every n-tile and k-tile), once per (chunk, n-tile, group) for per-group scales.  Every k-tile
lies inside one scale group (``act_scale.group`` must be a multiple of the dense k one k-tile
covers, ``rows x M / N``).
"""

from __future__ import annotations

from dataclasses import dataclass

from collections import Counter

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, ShapeError
from sparsa.formats.nm import NMPattern
from sparsa.isa import Instruction, Opcode
from sparsa.timing import FETCH_CYCLES, compute_flush_cycles, has_scale_stage, load_weights_cycles

__all__ = ["Tiling", "plan_tiling", "ktile_dense_k"]


@dataclass(frozen=True)
class Tiling:
    """How one GEMM is cut into array tiles.

    Attributes
    ----------
    m, k, n : int
        GEMM shape.
    hw_pattern : NMPattern
        The sparsity on the hardware's group size.
    groups : int
        ``ceil(k / group_size)``.
    slots : int
        Compressed reduction length, ``groups * hw_pattern.n``.
    ktiles, ntiles : int
        Tiles along compressed k and along n.
    chunk_rows : tuple[int, ...]
        Rows of A per accumulator chunk.
    ktile_scale_group : tuple[int, ...]
        Activation-scale group of each k-tile (all 0 for per-token scales); empty without the
        scaling stage (per-tensor scales).
    scale_groups : int
        Scale mantissas per row of A (``G``): 1 per token, ``ceil(k / act_scale.group)`` per
        group, 0 without the scaling stage.
    """

    m: int
    k: int
    n: int
    hw_pattern: NMPattern
    groups: int
    slots: int
    ktiles: int
    ntiles: int
    chunk_rows: tuple[int, ...]
    ktile_scale_group: tuple[int, ...] = ()
    scale_groups: int = 0

    @property
    def scaled(self) -> bool:
        """The program loads activation scales (LOAD_S) and the accumulator scales every result."""
        return self.scale_groups > 0

    @property
    def scale_loads_per_chunk(self) -> int:
        """LOAD_S instructions per chunk: 1 with one scale group, else one per n-tile and group."""
        if not self.scaled:
            return 0
        return 1 if self.scale_groups == 1 else self.ntiles * self.scale_groups

    @property
    def chunks(self) -> int:
        """Number of accumulator chunks along m."""
        return len(self.chunk_rows)

    @property
    def weights_resident(self) -> bool:
        """One weight tile covers the whole GEMM: it is loaded once for all chunks."""
        return self.ktiles == 1 and self.ntiles == 1

    @property
    def loads(self) -> int:
        """LOAD_W instructions the schedule issues."""
        return self.ktiles * self.ntiles * (1 if self.weights_resident else self.chunks)

    def schedule(self):
        """Yield ``("load", kt, nt)``, ``("scale", m0, rows, group)``,
        ``("compute", m0, rows, kt, nt, accumulate)`` and ``("drain", m0, rows, nt)`` in program order."""
        resident = None
        scales = None
        m0 = 0
        for rows in self.chunk_rows:
            for nt in range(self.ntiles):
                for kt in range(self.ktiles):
                    if resident != (kt, nt):
                        yield ("load", kt, nt)
                        resident = (kt, nt)
                    if self.scaled and scales != (m0, self.ktile_scale_group[kt]):
                        scales = (m0, self.ktile_scale_group[kt])
                        yield ("scale", m0, rows, scales[1])
                    yield ("compute", m0, rows, kt, nt, kt > 0)
                yield ("drain", m0, rows, nt)
            m0 += rows


    def instruction_counts(self) -> Counter:
        """How many times each distinct instruction occurs in the program :meth:`schedule` emits.

        The same schedule aggregated without iterating over tiles, so the estimator costs a
        LLaMA-sized layer in microseconds; ``tests/test_estimator.py`` checks it equals
        ``Counter(compile_gemm(...).instructions)``.
        """
        counts: Counter = Counter()
        counts[Instruction(Opcode.LOAD_W)] = self.loads
        tiles = self.ktiles * self.ntiles
        for rows, chunks in Counter(self.chunk_rows).items():
            counts[Instruction(Opcode.COMPUTE, rows, False)] += chunks * self.ntiles
            if self.ktiles > 1:
                counts[Instruction(Opcode.COMPUTE, rows, True)] += chunks * (tiles - self.ntiles)
            counts[Instruction(Opcode.DRAIN, rows)] += chunks * self.ntiles
            if self.scaled:
                counts[Instruction(Opcode.LOAD_S, rows)] += chunks * self.scale_loads_per_chunk
        counts[Instruction(Opcode.HALT)] = 1
        return counts


    def cycle_breakdown(self, config: AcceleratorConfig) -> dict[str, float]:
        """Where the cycles of the program :meth:`schedule` emits go, by cause (they sum to its cycles).

        ``useful``: activation beats at a full array, ``m x slots x n / (rows x cols)``;
        ``idle_rows``: beats of PE rows no slot fills (the last k-tile's, and every k-tile's when
        the compressed reduction is shorter than ``rows``); ``idle_cols``: beats of columns past
        ``n`` in the last n-tile; ``flush``: the pipeline flush of every COMPUTE; ``load_w``,
        ``drain``, ``load_s``: those instructions' bodies; ``fetch``: one per instruction.
        """
        counts = self.instruction_counts()
        beats = self.m * self.ktiles * self.ntiles
        row_fill = self.slots / (self.ktiles * config.rows)
        col_fill = self.n / (self.ntiles * config.cols)
        computes = sum(c for i, c in counts.items() if i.op is Opcode.COMPUTE)
        scale_beats = sum(c * i.count for i, c in counts.items() if i.op is Opcode.LOAD_S) if self.scaled else 0
        return {
            "useful": beats * row_fill * col_fill,
            "idle_rows": beats * (1 - row_fill),
            "idle_cols": beats * row_fill * (1 - col_fill),
            "flush": computes * compute_flush_cycles(config),
            "load_w": self.loads * load_weights_cycles(config),
            "drain": self.m * self.ntiles,
            "load_s": scale_beats,
            "fetch": sum(counts.values()) * FETCH_CYCLES,
        }


def plan_tiling(config: AcceleratorConfig, m: int, k: int, n: int, pattern: "NMPattern | str | None") -> Tiling:
    """Cut an ``(m x k) @ (k x n)`` GEMM with sparsity ``pattern`` into array tiles.

    Raises
    ------
    ShapeError
        If a dimension is not a positive integer.
    UnsupportedError
        If the pattern cannot run on the configured sparse MUX.
    ConfigError
        Per-group activation scales whose ``act_scale.group`` is not a multiple of the dense k
        one k-tile covers (a k-tile would straddle two scale groups).
    """
    for name, value in (("m", m), ("k", k), ("n", n)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ShapeError(f"GEMM dimension {name} must be a positive integer, not {value!r}")
    hw = config.hardware_pattern(pattern)
    groups = -(-k // config.group_size)
    slots = groups * hw.n
    depth = config.buffers.accumulator_depth
    full, rest = divmod(m, depth)
    chunk_rows = (depth,) * full + ((rest,) if rest else ())
    ktiles = -(-slots // config.rows)
    scale_group, scale_groups = _scale_groups(config, hw, k, ktiles)
    return Tiling(m=m, k=k, n=n, hw_pattern=hw, groups=groups, slots=slots,
                  ktiles=ktiles, ntiles=-(-n // config.cols), chunk_rows=chunk_rows,
                  ktile_scale_group=scale_group, scale_groups=scale_groups)


def ktile_dense_k(config: AcceleratorConfig, hw: NMPattern) -> "int | None":
    """Dense reduction elements one k-tile covers, ``rows x M / N`` on the hardware pattern
    (``None`` when ``rows`` is not a multiple of ``N``: k-tiles then split N:M groups)."""
    if config.rows % hw.n:
        return None
    return config.rows // hw.n * hw.m


def _scale_groups(config: AcceleratorConfig, hw: NMPattern, k: int, ktiles: int) -> tuple[tuple[int, ...], int]:
    """(scale group of each k-tile, scale groups per row) for ``config.act_scale``."""
    if not has_scale_stage(config):
        return (), 0
    spec = config.act_scale
    if spec.granularity == "token":
        return (0,) * ktiles, 1
    group = spec.group
    dense = ktile_dense_k(config, hw)
    if dense is None:
        raise ConfigError(f"per-group activation scales need whole N:M groups per k-tile, but datapath.rows="
                          f"{config.rows} is not a multiple of N={hw.n} at {hw}")
    if group % dense:
        raise ConfigError(f"act_scale.group={group} is not a multiple of the {dense} dense k one k-tile covers "
                          f"(rows={config.rows} x M={hw.m} / N={hw.n} at {hw}): a k-tile would straddle two "
                          f"scale groups")
    return tuple(kt * dense // group for kt in range(ktiles)), -(-k // group)
