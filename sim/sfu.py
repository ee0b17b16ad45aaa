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
from sparsa.sfu.fixed import (
    FX_FRAC,
    normalized_reciprocal,
    normalized_rsqrt,
    rne_div,
    rne_shift,
    scale_exponent,
    scale_mantissa,
)
from sparsa.sfu.lane import LaneOp, Reduce, lane_op, reduce_beat
from sparsa.sfu.scalar import ScalarOp
from sparsa.sfu.schedule import ELEMENTWISE_LANE_OP, ROW_STEPS, MSrc, Pass, ScalarStep, ShSrc, Src, XSrc

__all__ = ["SfuState", "execute", "run_microcode"]


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


def _scalar_step(kind: ScalarOp, folds: dict[str, int], cmd: SfuCommand) -> dict[str, int]:
    """The scalar unit's result for one step: ``{'m', 'e'}`` or ``{'mean'}``."""
    if kind == ScalarOp.DIV:
        return {"mean": int(rne_div(np.int64(folds["sum"]), np.int64(cmd.n)))}
    if kind == ScalarOp.RECIP:
        m, e = normalized_reciprocal(folds["sum"])
        return {"m": m, "e": e}
    s = ops.presum_shift(folds["amax"])
    d = folds["sumsq"] + int(rne_shift(cmd.eps_code, 2 * s))
    m, e = normalized_rsqrt(d, cmd.n) if d > 0 else (0, 0)
    return {"m": m, "e": e}


_FOLD_OF = {Reduce.MAX: "max", Reduce.AMAX: "amax", Reduce.AMAX_Y: "amax", Reduce.SUM: "sum",
            Reduce.SUM_Y: "sum", Reduce.SUMSQ: "sumsq"}


def _lane_scalars(step: Pass, regs: dict[str, int], cmd: SfuCommand) -> dict[str, int]:
    s = ops.presum_shift(regs.get("amax", 0))
    x = {XSrc.ZERO: 0, XSrc.MAX: regs.get("max", 0), XSrc.MEAN: regs.get("mean", 0)}[step.x]
    m = {MSrc.ZERO: 0, MSrc.SCALAR: regs.get("m", 0), MSrc.COMMAND: cmd.mantissa}[step.m]
    e = regs.get("e", 0)
    sh = {ShSrc.ZERO: 0, ShSrc.COMMAND: cmd.shift, ShSrc.E_MINUS_16: e - FX_FRAC,
          ShSrc.E_PLUS_S_MINUS_16: e + s - FX_FRAC, ShSrc.S: s,
          ShSrc.CMD_EXP_MINUS_16: cmd.exponent - FX_FRAC}[step.sh]
    return {"x": x, "m": m, "sh": sh, "q": 7 if cmd.bits == 4 else 127}


def run_microcode(state: SfuState, cmd: SfuCommand) -> None:
    """Run ``cmd`` as the sequencer does: the passes and scalar steps of
    :mod:`sparsa.sfu.schedule`, beat by beat through :func:`~sparsa.sfu.lane.lane_op`.

    Equal to :func:`execute` for every command (tests/sim/test_sfu_interpreter.py checks it).
    """
    cmd.check(state.lanes, state.depth)
    L, w = state.lanes, cmd.words(state.lanes)
    lanes_idx = np.arange(w * L).reshape(w, L)

    def keep_of(r: int) -> np.ndarray:
        k = lanes_idx < cmd.n
        if cmd.causal:
            k &= lanes_idx <= cmd.offset + r
        return k

    def run_pass(step: Pass, a_addr: int, b_addr: int, d_addr: int, nwords: int, keep: np.ndarray,
                 regs: dict[str, int]) -> None:
        a = state.vmem[a_addr: a_addr + nwords]
        b = state.vmem[b_addr: b_addr + nwords] if step.b else np.zeros_like(a)
        sc = _lane_scalars(step, regs, cmd)
        y = lane_op(step.op, a, b, keep, **sc)
        if step.reduce != Reduce.NONE:
            r = reduce_beat(step.reduce, a, y, keep, sc["sh"])
            regs[_FOLD_OF[step.reduce]] = int(r.max() if step.reduce in (Reduce.MAX, Reduce.AMAX, Reduce.AMAX_Y)
                                              else r.sum())
        if step.write:
            state.vmem[d_addr: d_addr + nwords] = y

    if cmd.op in ELEMENTWISE_LANE_OP:
        step = ELEMENTWISE_LANE_OP[cmd.op]
        for r in range(cmd.rows):
            run_pass(step, cmd.a + r * w, cmd.b + r * cmd.b_step, cmd.dst + r * w, w, keep_of(r), {})
        return
    if cmd.op == SfuOp.QUANTIZE:
        _quantize_microcode(state, cmd)
        return
    for r in range(cmd.rows):
        regs: dict[str, int] = {}
        for step in ROW_STEPS[cmd.op]:
            if isinstance(step, ScalarStep):
                regs.update(_scalar_step(step.kind, regs, cmd))
                continue
            src = cmd.a + r * w if step.src == Src.A else cmd.dst + r * w
            run_pass(step, src, cmd.b + r * cmd.b_step, cmd.dst + r * w, w, keep_of(r), regs)


def _quantize_microcode(state: SfuState, cmd: SfuCommand) -> None:
    """QUANTIZE as the sequencer runs it: AMAX pass folded per unit, EXPO, QMANT per unit
    (mantissas also to VMEM from ``scale_dst``), QDIV pass with each unit's mantissa."""
    L, w = state.lanes, cmd.words(state.lanes)
    beats = state.vmem[cmd.a: cmd.a + cmd.rows * w]
    keep = np.ones(beats.shape, dtype=bool)
    per_unit = cmd.unit // L
    amax = reduce_beat(Reduce.AMAX, beats, beats, keep).reshape(-1, per_unit).max(axis=1)
    qmax = 7 if cmd.bits == 4 else 127
    e = scale_exponent(int(amax.max()), qmax, cmd.mantissa_bits)
    mant = np.array([scale_mantissa(int(v), e, qmax) for v in amax], dtype=np.int64)
    state.write_rows(cmd.scale_dst, mant.reshape(1, -1))
    state.exponent = e
    m_beat = np.repeat(mant, per_unit)[:, None]
    codes = lane_op(LaneOp.QDIV, beats, beats, keep, m=m_beat, sh=e - FX_FRAC, q=qmax)
    state.vmem[cmd.dst: cmd.dst + cmd.rows * w] = codes
