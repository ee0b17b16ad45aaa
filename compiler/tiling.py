"""Tiling of an N:M-sparse GEMM onto the weight-stationary array - shared by compiler and estimator.

The compressed reduction axis (``ceil(k / group_size) * n_hw`` slots per output column)
is cut into ``ktiles`` of ``rows`` slots, the output axis into ``ntiles`` of ``cols``
columns, and the rows of A into chunks of at most ``accumulator_depth``.  The loop nest
is ``for chunk: for ntile: for ktile: LOAD_W; COMPUTE; then DRAIN`` - weights are
reloaded per chunk (the accumulator bank cannot hold more rows), and a LOAD_W is skipped
when the tile is already resident.
"""

from __future__ import annotations

from dataclasses import dataclass

from collections import Counter

from sparsa.config import AcceleratorConfig, NMPattern
from sparsa.errors import ShapeError
from sparsa.isa import Instruction, Opcode

__all__ = ["Tiling", "plan_tiling"]


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
        """Yield ``("load", kt, nt)``, ``("compute", m0, rows, kt, nt, accumulate)`` and
        ``("drain", m0, rows, nt)`` in program order."""
        resident = None
        m0 = 0
        for rows in self.chunk_rows:
            for nt in range(self.ntiles):
                for kt in range(self.ktiles):
                    if resident != (kt, nt):
                        yield ("load", kt, nt)
                        resident = (kt, nt)
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
        counts[Instruction(Opcode.HALT)] = 1
        return counts


def plan_tiling(config: AcceleratorConfig, m: int, k: int, n: int, pattern: "NMPattern | str | None") -> Tiling:
    """Cut an ``(m x k) @ (k x n)`` GEMM with sparsity ``pattern`` into array tiles.

    Raises
    ------
    ShapeError
        If a dimension is not a positive integer.
    UnsupportedError
        If the pattern cannot run on the configured sparse MUX.
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
    return Tiling(m=m, k=k, n=n, hw_pattern=hw, groups=groups, slots=slots,
                  ktiles=-(-slots // config.rows), ntiles=-(-n // config.cols), chunk_rows=chunk_rows)
