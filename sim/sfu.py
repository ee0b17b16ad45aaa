"""SFU interpreter: executes :class:`~sparsa.sfu.command.SfuCommand` on a vector-memory model.

No timing: the architectural effect of each command, computed with :mod:`sparsa.sfu.ops` (the
definition of every output bit).  The state is the vector memory (``depth`` words of ``lanes``
int64 fx lanes) and the exponent register QUANTIZE writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsa.errors import ConfigError, ShapeError
from sparsa.formats.actscale import ActScaleSpec
from sparsa.sfu import ops
from sparsa.sfu.command import SfuCommand, SfuOp, row_words
from sparsa.sfu.lane import LaneOp, lane_op

__all__ = ["SfuState", "execute"]


@dataclass
class SfuState:
    """Vector memory and registers of one SFU.

    Parameters
    ----------
    lanes : int
        Elements per VMEM word.
    depth : int
        VMEM words.
    """

    lanes: int
    depth: int
    vmem: np.ndarray = field(init=False)
    exponent: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.lanes, int) or self.lanes < 1:
            raise ConfigError(f"sfu lanes must be a positive int, not {self.lanes!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError(f"sfu vmem depth must be a positive int, not {self.depth!r}")
        self.vmem = np.zeros((self.depth, self.lanes), dtype=np.int64)

    def write_rows(self, addr: int, x: np.ndarray) -> None:
        """Store ``x [rows, n]`` as rows of ``ceil(n / lanes)`` words from ``addr`` (tails zeroed)."""
        xa = np.asarray(x, dtype=np.int64)
        if xa.ndim != 2:
            raise ShapeError(f"write_rows wants [rows, n], not shape {xa.shape}")
        w = row_words(xa.shape[1], self.lanes)
        if addr < 0 or addr + xa.shape[0] * w > self.depth:
            raise ConfigError(f"write_rows: {xa.shape[0]} rows of {w} words at {addr} exceed the VMEM's "
                              f"{self.depth} words")
        padded = np.zeros((xa.shape[0], w * self.lanes), dtype=np.int64)
        padded[:, : xa.shape[1]] = xa
        self.vmem[addr: addr + xa.shape[0] * w] = padded.reshape(-1, self.lanes)

    def read_rows(self, addr: int, rows: int, n: int) -> np.ndarray:
        """``[rows, n]`` elements stored from ``addr``."""
        w = row_words(n, self.lanes)
        return self.vmem[addr: addr + rows * w].reshape(rows, w * self.lanes)[:, :n].copy()

    def b_rows(self, cmd: SfuCommand) -> np.ndarray:
        """Operand ``b`` of every row of ``cmd`` (``[rows, n]``)."""
        return np.stack([self.read_rows(cmd.b + r * cmd.b_step, 1, cmd.n)[0] for r in range(cmd.rows)])


def execute(state: SfuState, cmd: SfuCommand) -> None:
    """Run one command on ``state`` (checked against the VMEM first; nothing is written on refusal).

    Raises
    ------
    ConfigError
        The command does not fit this SFU (:meth:`SfuCommand.check`).
    """
    cmd.check(state.lanes, state.depth)
    a = state.read_rows(cmd.a, cmd.rows, cmd.n)
    b = state.b_rows(cmd) if cmd.op in (SfuOp.ADD, SfuOp.MUL, SfuOp.REQUANT, SfuOp.ROPE) else None
    op = cmd.op
    if op == SfuOp.ADD:
        y = ops.add(a, b)
    elif op == SfuOp.MUL:
        y = ops.mul(a, b)
    elif op == SfuOp.REQUANT:
        y = lane_op(LaneOp.REQUANT, a, b, np.ones(a.shape, dtype=bool), sh=cmd.shift)
    elif op in (SfuOp.SILU, SfuOp.GELU):
        y = ops.activation(a, op.name.lower())
    elif op == SfuOp.ROPE:
        y = lane_op(LaneOp.ROPE, a, b, np.ones(a.shape, dtype=bool))
    elif op == SfuOp.QSTATIC:
        y = ops.quantize_static(a, cmd.mantissa, cmd.exponent, cmd.bits)
    elif op == SfuOp.SOFTMAX:
        keep = np.ones(a.shape, dtype=bool)
        if cmd.causal:
            keep = ops.causal_mask(cmd.rows, cmd.n, cmd.offset)
        y = ops.softmax(a, keep)
    elif op in (SfuOp.RMSNORM, SfuOp.LAYERNORM):
        norm = ops.rmsnorm_code if op == SfuOp.RMSNORM else ops.layernorm_code
        if cmd.b_step == 0:
            y = norm(a, state.read_rows(cmd.b, 1, cmd.n)[0], cmd.eps_code)
        else:
            gains = state.b_rows(cmd)
            y = np.stack([norm(a[r: r + 1], gains[r], cmd.eps_code)[0] for r in range(cmd.rows)])
    elif op == SfuOp.QUANTIZE:
        spec = (ActScaleSpec("token", mantissa_bits=cmd.mantissa_bits) if cmd.unit == cmd.n
                else ActScaleSpec("group", group=cmd.unit, mantissa_bits=cmd.mantissa_bits))
        q = ops.quantize(a, spec, cmd.bits)
        y = q.codes
        state.write_rows(cmd.scale_dst, q.mantissa.reshape(1, -1))
        state.exponent = q.exponent
    else:  # pragma: no cover - SfuOp is closed
        raise ConfigError(f"unknown SFU op {op!r}")
    state.write_rows(cmd.dst, y)
