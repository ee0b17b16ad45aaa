"""Vector ops lowered to SFU commands: the one place that decides which commands a norm, a
softmax, an activation or a residual add becomes, and how it is split to fit the SFU's VMEM.

A workload's vector op is ``rows`` rows of ``n`` elements (:class:`~sparsa.models.workloads.graph.VectorOp`:
``elements = rows * row_length``).  :func:`lower_vector_op` maps its kind to SFU commands
(:class:`sparsa.sfu.command.SfuCommand`, docs/sfu.md):

===============  =================================================================  ================
kind             commands on one chunk of rows (in order)                           VMEM operands
===============  =================================================================  ================
``rmsnorm``      RMSNORM (gain ``b``, shared)                                       rows + 1 vector
``l2norm``       RMSNORM with the gain vector ``1 / sqrt(n)``, eps 0                rows + 1 vector
                 (``x / ||x|| = rmsnorm(x) / sqrt(n)``)
``layernorm``    LAYERNORM (gain, shared), ADD (bias, shared)                       rows + 2 vectors
``batchnorm``    MUL (per-channel scale, shared), ADD (per-channel shift, shared)   rows + 2 vectors
``softmax``      SOFTMAX; causal: ``offset`` = keys before the block's first query  rows
``swiglu``       SILU (the gate rows, in place), MUL (``b`` = the up rows)          2 x rows
``gelu``         GELU                                                               rows
``eltwise_add``  ADD per addend after the first (``b`` = that addend's rows)        ``addends`` x rows
``rope``         ROPE (``b`` = interleaved ``cos, sin`` rows)                       2 x rows
``nibble_        MUL (the high-nibble pass by the shared vector 16.0), ADD (``b``   2 x rows +
combine``        = the low-nibble pass's rows): :mod:`sparsa.compiler.attention`    1 vector
===============  =================================================================  ================

Kinds the SFU has no operation for (``relu``, ``tanh``, ``maxpool``, ``avgpool``,
``mean_pool``: :data:`UNMAPPED_KINDS`) and the memory-only kinds (``embedding``, ``kv_write``:
:data:`MEMORY_KINDS`) are refused with :class:`~sparsa.errors.UnsupportedError`; the estimator
costs them at their memory traffic only and reports the unmapped ones.

**Splitting rule (VMEM capacity).**  A row of ``n`` elements is ``B = ceil(n / lanes)`` words.
Every command of a chunk works in place on the chunk's rows at word 0 (``dst == a``), and every
operand of the chunk is resident at once: each second tensor (``b_step = B``) takes ``rows x B``
words after the rows, each shared vector (``b_step = 0``) ``B`` words after those.  A chunk
therefore needs ``rows x B x (1 + tensors) + B x vectors`` words, and the largest chunk that fits
``sfu.vmem_words`` (and :data:`~sparsa.sfu.command.MAX_ROW` rows) is

    ``cap = min(MAX_ROW, (vmem_words - B x vectors) // (B x (1 + tensors)))``.

The rows are cut, in order, into ``rows // cap`` chunks of ``cap`` rows and one chunk of the
remaining rows.  A causal softmax is cut per block of ``causal_queries`` rows (one head's
queries), so that every command's rows are consecutive query positions of one head: each block
becomes ``q // cap`` chunks of ``cap`` rows and one of ``q % cap``, and the blocks repeat.  A row
that does not fit on its own (``cap < 1``) is refused with a one-line
:class:`~sparsa.errors.ConfigError` naming ``sfu.vmem_words``, the row length and the words
needed.  The block compiler must lower vector ops through this function, so a compiled block
costs what the estimator says.

:class:`VectorLowering` keeps the result compact - "``k`` chunks of shape X, then one of shape Y,
per block, ``blocks`` times" - so a LLaMA2-7B prefill softmax (a million rows) is a handful of
commands to cost; :meth:`VectorLowering.commands` enumerates every command, and
:meth:`VectorLowering.cycles` is the sum of :func:`sparsa.sfu.schedule.command_cycles` over them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sparsa.config import SfuConfig
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.sfu.command import MAX_ROW, SfuCommand, SfuOp, row_words
from sparsa.sfu.ops import norm_eps_code
from sparsa.sfu.scalar import ScalarOp
from sparsa.sfu.schedule import command_cycles
from sparsa.sfu.timing import LANE_LATENCY, SCALAR_CYCLES

__all__ = ["SFU_KINDS", "INTERNAL_KINDS", "UNMAPPED_KINDS", "MEMORY_KINDS", "Chunk", "VectorLowering", "lower_vector_op",
           "chunk_rows"]

#: Operand ``b`` of one command: none, a second tensor (one row per row), or one shared vector.
_NONE, _ROWS, _SHARED = "none", "rows", "shared"

#: Commands of each kind the SFU runs, as ``(op, b)`` (``eltwise_add``: one ADD per extra addend).
_PLANS: Mapping[str, tuple[tuple[SfuOp, str], ...]] = {
    "rmsnorm": ((SfuOp.RMSNORM, _SHARED),),
    "l2norm": ((SfuOp.RMSNORM, _SHARED),),
    "layernorm": ((SfuOp.LAYERNORM, _SHARED), (SfuOp.ADD, _SHARED)),
    "batchnorm": ((SfuOp.MUL, _SHARED), (SfuOp.ADD, _SHARED)),
    "softmax": ((SfuOp.SOFTMAX, _NONE),),
    "swiglu": ((SfuOp.SILU, _NONE), (SfuOp.MUL, _ROWS)),
    "gelu": ((SfuOp.GELU, _NONE),),
    "eltwise_add": ((SfuOp.ADD, _ROWS),),
    "rope": ((SfuOp.ROPE, _ROWS),),
    "nibble_combine": ((SfuOp.MUL, _SHARED), (SfuOp.ADD, _ROWS)),
}
#: Lowered kinds that are not workload ops: steps the compiler adds itself (the two nibble
#: passes of an attention GEMM on a 4-bit weight port, :mod:`sparsa.compiler.attention`).
INTERNAL_KINDS: frozenset[str] = frozenset({"nibble_combine"})
#: Workload vector-op kinds the SFU runs (:func:`lower_vector_op` also lowers :data:`INTERNAL_KINDS`).
SFU_KINDS: frozenset[str] = frozenset(_PLANS) - INTERNAL_KINDS
#: Kinds with no SFU operation: costed at their memory traffic only, and reported.
UNMAPPED_KINDS: frozenset[str] = frozenset({"relu", "tanh", "maxpool", "avgpool", "mean_pool"})
#: Kinds that only move data (a table lookup, a KV-cache store): no compute.
MEMORY_KINDS: frozenset[str] = frozenset({"embedding", "kv_write"})

#: Epsilon of the norms' commands (its code only sets a field: cycles do not depend on it).
_NORM_EPS = 1e-5


@dataclass(frozen=True)
class Chunk:
    """``repeat`` consecutive chunks of rows, each running ``commands`` in order.

    Parameters
    ----------
    commands : tuple of SfuCommand
        The commands of the first chunk.
    repeat : int
        Chunks of this shape in a row.
    offset_step : int
        Causal softmax: each further chunk's ``offset`` is this much larger (its rows are the
        next query positions); 0 otherwise.
    """

    commands: tuple[SfuCommand, ...]
    repeat: int = 1
    offset_step: int = 0

    def expand(self) -> Iterator[SfuCommand]:
        """Every command of the ``repeat`` chunks, in order."""
        for i in range(self.repeat):
            for cmd in self.commands:
                yield dataclasses.replace(cmd, offset=cmd.offset + i * self.offset_step) if cmd.causal else cmd


@dataclass(frozen=True)
class VectorLowering:
    """The SFU commands of one vector op: ``chunks`` (one block of rows), run ``blocks`` times.

    Parameters
    ----------
    kind : str
        The vector op's kind.
    rows, row_length : int
        The op's shape.
    lanes, vmem_words : int
        The SFU the commands were lowered for.
    chunks : tuple of Chunk
        The commands of one block of rows.
    blocks : int
        Times the block runs (causal softmax: heads x batch; otherwise 1).
    """

    kind: str
    rows: int
    row_length: int
    lanes: int
    vmem_words: int
    chunks: tuple[Chunk, ...]
    blocks: int = 1

    def commands(self) -> Iterator[SfuCommand]:
        """Every command, in the order the SFU runs them (for tests and small ops)."""
        for _ in range(self.blocks):
            for chunk in self.chunks:
                yield from chunk.expand()

    @property
    def command_count(self) -> int:
        """Number of commands, without enumerating them."""
        return self.blocks * sum(chunk.repeat * len(chunk.commands) for chunk in self.chunks)

    def cycles(self, lane_latency: int = LANE_LATENCY,
               scalar_cycles: Mapping[ScalarOp, int] = SCALAR_CYCLES) -> int:
        """Sum of :func:`~sparsa.sfu.schedule.command_cycles` over :meth:`commands`, computed per
        chunk shape (a command's cycles do not depend on its addresses or softmax offset)."""
        per_block = sum(chunk.repeat * sum(command_cycles(cmd, self.lanes, lane_latency, scalar_cycles)
                                           for cmd in chunk.commands) for chunk in self.chunks)
        return self.blocks * per_block


def _positive(name: str, value: object) -> int:
    if type(value) is not int or value < 1:
        raise ConfigError(f"vector op {name} must be a positive integer, not {value!r}")
    return value


def chunk_rows(kind: str, row_length: int, sfu: SfuConfig, *, addends: int = 2, name: str | None = None) -> int:
    """Rows of the largest chunk of a ``kind`` op with rows of ``row_length`` elements that fits
    the VMEM (the splitting rule of the module docstring).

    Raises
    ------
    ConfigError
        Not even one row fits ``sfu.vmem_words`` (the message names it, the row length and the
        words needed), or a row is longer than :data:`~sparsa.sfu.command.MAX_ROW`.
    UnsupportedError
        ``kind`` has no SFU lowering.
    """
    tensors, vectors = _operands(kind, addends)
    words = row_words(_positive("row_length", row_length), sfu.lanes)
    need = words * (1 + tensors + vectors)
    who = f"vector op {name!r} ({kind})" if name else f"vector op {kind}"
    if row_length > MAX_ROW:
        raise ConfigError(f"{who}: rows of {row_length} elements are longer than an SFU command's "
                          f"{MAX_ROW}-element limit")
    if need > sfu.vmem_words:
        raise ConfigError(f"{who}: one row of {row_length} elements needs {need} words of SFU VMEM "
                          f"({words} words per row x {1 + tensors + vectors} operands at {sfu.lanes} lanes), "
                          f"more than sfu.vmem_words={sfu.vmem_words}")
    return min(MAX_ROW, (sfu.vmem_words - words * vectors) // (words * (1 + tensors)))


def _operands(kind: str, addends: int) -> tuple[int, int]:
    """(second tensors, shared vectors) resident with a chunk's rows."""
    if kind not in _PLANS:
        why = ("only moves data" if kind in MEMORY_KINDS else "has no SFU operation"
               if kind in UNMAPPED_KINDS else "is not a vector-op kind")
        raise UnsupportedError(f"vector op kind {kind!r} {why}; the SFU runs {', '.join(sorted(_PLANS))}")
    plan = _plan(kind, addends)
    return sum(b == _ROWS for _, b in plan), sum(b == _SHARED for _, b in plan)


def _plan(kind: str, addends: int) -> tuple[tuple[SfuOp, str], ...]:
    if kind == "eltwise_add":
        if type(addends) is not int or addends < 2:
            raise ConfigError(f"eltwise_add needs an integer addends >= 2, not {addends!r}")
        return _PLANS[kind] * (addends - 1)
    return _PLANS[kind]


def _chunk_commands(kind: str, rows: int, n: int, sfu: SfuConfig, addends: int, offset: int,
                    causal: bool) -> tuple[SfuCommand, ...]:
    """The commands of one chunk of ``rows`` rows, with the module docstring's VMEM layout."""
    plan = _plan(kind, addends)
    words = row_words(n, sfu.lanes)
    nxt = rows * words                       # first free word after the rows (at word 0)
    out = []
    for op, b in plan:
        fields: dict = {}
        if b == _ROWS:
            fields = {"b": nxt, "b_step": words}
            nxt += rows * words
        elif b == _SHARED:
            fields = {"b": nxt, "b_step": 0}
            nxt += words
        if op in (SfuOp.RMSNORM, SfuOp.LAYERNORM):
            fields["eps_code"] = norm_eps_code(0.0 if kind == "l2norm" else _NORM_EPS, n)
        if causal:
            fields.update(causal=True, offset=offset)
        out.append(SfuCommand(op, rows, n, dst=0, a=0, **fields))
    return tuple(out)


def _split(kind: str, rows: int, n: int, sfu: SfuConfig, cap: int, addends: int, offset: int,
           causal: bool) -> tuple[Chunk, ...]:
    full, tail = divmod(rows, cap)
    chunks = []
    if full:
        chunks.append(Chunk(_chunk_commands(kind, cap, n, sfu, addends, offset, causal), full,
                            cap if causal else 0))
    if tail:
        chunks.append(Chunk(_chunk_commands(kind, tail, n, sfu, addends, offset + full * cap, causal)))
    return tuple(chunks)


def lower_vector_op(kind: str, rows: int, row_length: int, sfu: SfuConfig, *, causal_queries: int = 0,
                    addends: int = 2, name: str | None = None) -> VectorLowering:
    """The SFU commands of a vector op of ``rows`` rows of ``row_length`` elements.

    Parameters
    ----------
    kind : str
        A kind in :data:`SFU_KINDS`.
    rows, row_length : int
        The op's shape (softmax: one row per query and head, ``row_length`` keys).
    sfu : SfuConfig
        Lanes and VMEM words.
    causal_queries : int
        Softmax only: 0 for no mask; else the rows form blocks of this many consecutive query
        positions (one head's queries), query ``i`` of a block keeping keys
        ``j <= row_length - causal_queries + i``.
    addends : int
        ``eltwise_add``: tensors summed (``addends - 1`` ADD commands).
    name : str or None
        The op's name, for error messages.

    Raises
    ------
    UnsupportedError
        ``kind`` has no SFU lowering (:data:`UNMAPPED_KINDS`, :data:`MEMORY_KINDS`).
    ConfigError
        A row does not fit the VMEM, or a bad shape (quoted).
    """
    _positive("rows", rows)
    cap = chunk_rows(kind, row_length, sfu, addends=addends, name=name)
    if type(causal_queries) is not int or causal_queries < 0:
        raise ConfigError(f"causal_queries must be a non-negative integer, not {causal_queries!r}")
    if causal_queries:
        if kind != "softmax":
            raise ConfigError(f"causal_queries belongs to softmax, not {kind!r}")
        if rows % causal_queries or causal_queries > row_length:
            raise ConfigError(f"causal_queries={causal_queries} must divide rows={rows} and be at most "
                              f"row_length={row_length}")
        chunks = _split(kind, causal_queries, row_length, sfu, cap, addends, row_length - causal_queries, True)
        blocks = rows // causal_queries
    else:
        chunks, blocks = _split(kind, rows, row_length, sfu, cap, addends, 0, False), 1
    return VectorLowering(kind, rows, row_length, sfu.lanes, sfu.vmem_words, chunks, blocks)

