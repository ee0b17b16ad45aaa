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
from sparsa.sfu.lane import MANT_FIELD_BITS, ROW_MANT_MASK, LaneOp, Reduce, lane_op, reduce_beat
from sparsa.sfu.ops import ROW_SHIFT_RANGE
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

    def elements(self, addr: int, count: int) -> np.ndarray:
        """``count`` elements stored from word ``addr``, ``lanes`` per word (row scalars)."""
        return self.read_rows(addr, 1, count)[0]

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
    b = state.b_rows(cmd) if cmd.op in (SfuOp.ADD, SfuOp.MUL, SfuOp.REQUANT, SfuOp.REQUANT_ROW, SfuOp.ROPE) else None
    op = cmd.op
    if op == SfuOp.ADD:
        y = ops.add(a, b)
    elif op == SfuOp.MUL:
        y = ops.mul(a, b)
    elif op == SfuOp.REQUANT:
        y = lane_op(LaneOp.REQUANT, a, b, np.ones(a.shape, dtype=bool), sh=cmd.shift)
    elif op == SfuOp.REQUANT_ROW:
        y = _requant_row(state, cmd, a, b)
    elif op in (SfuOp.SILU, SfuOp.GELU):
        y = ops.activation(a, op.name.lower())
    elif op == SfuOp.ROPE:
        y = lane_op(LaneOp.ROPE, a, b, np.ones(a.shape, dtype=bool))
    elif op == SfuOp.QSTATIC:
        y = ops.quantize_static(a, cmd.mantissa, cmd.exponent, cmd.bits, cmd.code_max)
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
        if cmd.row_exponent:
            y, mant, expo = ops.quantize_rows(a, spec, cmd.bits)
            state.write_rows(cmd.exp_dst, expo.reshape(1, -1))
            exponent = int(expo[-1])
        else:
            q = ops.quantize(a, spec, cmd.bits)
            y, mant, exponent = q.codes, q.mantissa, q.exponent
        state.write_rows(cmd.scale_dst, mant.reshape(1, -1))
        state.exponent = exponent
    else:  # pragma: no cover - SfuOp is closed
        raise ConfigError(f"unknown SFU op {op!r}")
    state.write_rows(cmd.dst, y)


def _requant_row(state: SfuState, cmd: SfuCommand, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """REQUANT_ROW: :func:`sparsa.sfu.ops.requantize_rows` with the row scalars the VMEM holds
    (mantissas: the low 16 bits of their words, as the lanes take them; ``b`` per row)."""
    row_m = state.elements(cmd.scale_src, cmd.rows) & ROW_MANT_MASK
    row_e = state.elements(cmd.exp_src, cmd.rows)
    bm = b & ROW_MANT_MASK
    return np.concatenate([ops.requantize_rows(a[r:r + 1], row_m[r:r + 1], row_e[r:r + 1], bm[r], cmd.shift)
                           for r in range(cmd.rows)])


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
    m = {MSrc.ZERO: 0, MSrc.SCALAR: regs.get("m", 0), MSrc.COMMAND: cmd.mantissa,
         MSrc.ROW: regs.get("row_m", 0)}[step.m]
    e = regs.get("e", 0)
    sh = {ShSrc.ZERO: 0, ShSrc.COMMAND: cmd.shift, ShSrc.E_MINUS_16: e - FX_FRAC,
          ShSrc.E_PLUS_S_MINUS_16: e + s - FX_FRAC, ShSrc.S: s,
          ShSrc.CMD_EXP_MINUS_16: cmd.exponent - FX_FRAC,
          ShSrc.COMMAND_PLUS_ROW: min(max(cmd.shift + regs.get("row_e", 0), ROW_SHIFT_RANGE[0]), ROW_SHIFT_RANGE[1])
          }[step.sh]
    return {"x": x, "m": m, "sh": sh, "q": cmd.code_max}


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
            regs = {}
            if step.fetches_row:      # the row's slot that reads its scalars: one lane of a word each
                regs = {"row_m": int(state.vmem[cmd.scale_src + r // L, r % L]) & ((1 << MANT_FIELD_BITS) - 1),
                        "row_e": int(state.vmem[cmd.exp_src + r // L, r % L])}
            run_pass(step, cmd.a + r * w, cmd.b + r * cmd.b_step, cmd.dst + r * w, w, keep_of(r), regs)
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
    (mantissas also to VMEM from ``scale_dst``), QDIV pass with each unit's mantissa; with
    ``row_exponent`` these steps row after row, each row's exponent also to VMEM from
    ``exp_dst``.  A per-token unit of a row that is not whole words drops the tail lanes."""
    L, w = state.lanes, cmd.words(state.lanes)
    qmax = cmd.code_max
    keep = (np.arange(w * L) < cmd.n).reshape(w, L)
    per_unit = w if cmd.unit == cmd.n else cmd.unit // L
    groups = [range(r, r + 1) for r in range(cmd.rows)] if cmd.row_exponent else [range(cmd.rows)]
    mants, expos = [], []
    for rows in groups:
        lo, hi = cmd.a + rows.start * w, cmd.a + rows.stop * w
        beats = state.vmem[lo:hi]
        kp = np.tile(keep, (len(rows), 1))
        amax = reduce_beat(Reduce.AMAX, beats, beats, kp).reshape(-1, per_unit).max(axis=1)
        e = scale_exponent(int(amax.max()), qmax, cmd.mantissa_bits)
        mant = np.array([scale_mantissa(int(v), e, qmax) for v in amax], dtype=np.int64)
        codes = lane_op(LaneOp.QDIV, beats, beats, kp, m=np.repeat(mant, per_unit)[:, None], sh=e - FX_FRAC, q=qmax)
        state.vmem[cmd.dst + rows.start * w: cmd.dst + rows.stop * w] = codes
        mants.append(mant)
        expos.append(e)
    state.write_rows(cmd.scale_dst, np.concatenate(mants).reshape(1, -1))
    if cmd.row_exponent:
        state.write_rows(cmd.exp_dst, np.array(expos, dtype=np.int64).reshape(1, -1))
    state.exponent = expos[-1]
