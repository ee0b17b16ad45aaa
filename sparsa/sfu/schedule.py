"""The SFU's microcode and timing: one table that the sequencer gateware and the cycle model share.

A row operation is a list of **steps** (:data:`ROW_STEPS`): a :class:`Pass` streams the row's
beats through the lanes (one per cycle) with one lane op and one reduction; a
:class:`ScalarStep` runs the scalar unit once on the row's folded reductions.  The gateware
decodes these tables at elaboration time; :func:`command_cycles` counts them; the tests of
:mod:`sparsa.sfu.lane` prove the same steps compute :mod:`sparsa.sfu.ops`.

Timing (the cycle a command is accepted is cycle 0; ``LAT`` = lane latency, ``B`` = words per
row, ``R`` = rows):

* accept + set-up: :data:`SETUP_CYCLES`;
* a pass over ``k`` beats: ``k + 1 + LAT`` (issue ``k`` reads, one cycle of VMEM read latency,
  the lanes' latency; the next step starts the cycle after the last result is written);
* a scalar step: ``SCALAR_STEP_OVERHEAD + SCALAR_CYCLES[op]`` (a cycle to form the operand, the
  unit's own cycles, a cycle to capture the result);
* an element-wise command is one pass over all ``R * B`` beats; a row operation runs its steps
  row after row;
* an element-wise command whose row scalars come from VMEM (:attr:`MSrc.ROW`, REQUANT_ROW) is
  one pass of ``R * (B + ROW_FETCH_CYCLES)`` issue slots: each row's first slot reads the words
  holding its scalars instead of a beat;
* a done cycle: :data:`DONE_CYCLES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from sparsa.sfu.command import ELEMENTWISE, SfuCommand, SfuOp
from sparsa.sfu.lane import LaneOp, Reduce
from sparsa.sfu.scalar import ScalarOp

__all__ = [
    "Src", "XSrc", "MSrc", "ShSrc", "Pass", "ScalarStep", "ELEMENTWISE_LANE_OP", "ROW_STEPS",
    "SETUP_CYCLES", "DONE_CYCLES", "SCALAR_STEP_OVERHEAD", "ROW_FETCH_CYCLES", "pass_cycles", "command_cycles", "quantize_cycles",
]

#: Cycles from accepting a command to issuing its first read.
SETUP_CYCLES = 2
#: Cycles from the last step's end to the end of the command (the done pulse).
DONE_CYCLES = 1
#: Cycles a scalar step adds to the scalar unit's own: operand forming and result capture.
SCALAR_STEP_OVERHEAD = 2
#: Issue slots a pass with row scalars from VMEM spends per row reading them (both read ports).
ROW_FETCH_CYCLES = 1


class Src(IntEnum):
    """Where a pass reads operand ``a``."""

    A = 0      #: the command's input rows
    DST = 1    #: the rows an earlier pass of this row wrote


class XSrc(IntEnum):
    """The lanes' ``x`` scalar."""

    ZERO = 0
    MAX = 1    #: the row max of an earlier MAX pass
    MEAN = 2   #: the mean of an earlier DIV step


class MSrc(IntEnum):
    """The lanes' ``m`` scalar."""

    ZERO = 0
    SCALAR = 1     #: the scalar unit's last ``m``
    COMMAND = 2    #: the command's ``mantissa``
    ROW = 3        #: the row's mantissa, read from VMEM at ``scale_src`` (REQUANT_ROW)


class ShSrc(IntEnum):
    """The lanes' ``sh`` scalar."""

    ZERO = 0
    COMMAND = 1          #: the command's ``shift``
    E_MINUS_16 = 2       #: scalar ``e - 16``
    E_PLUS_S_MINUS_16 = 3  #: scalar ``e`` + pre-shift ``s`` - 16
    S = 4                #: the pre-shift ``s`` (from an earlier AMAX / AMAX_Y)
    CMD_EXP_MINUS_16 = 5  #: the command's ``exponent - 16``
    COMMAND_PLUS_ROW = 6  #: ``clamp(shift + e, -64, 63)``, ``e`` the row's exponent read from VMEM
    #: at ``exp_src`` (REQUANT_ROW)


@dataclass(frozen=True)
class Pass:
    """One pass over a row: lane op, reduction, sources, and whether results are written."""

    op: LaneOp
    reduce: Reduce = Reduce.NONE
    src: Src = Src.A
    b: bool = False
    write: bool = False
    x: XSrc = XSrc.ZERO
    m: MSrc = MSrc.ZERO
    sh: ShSrc = ShSrc.ZERO

    @property
    def fetches_row(self) -> bool:
        """Whether each row's scalars are read from VMEM before its beats (one slot per row)."""
        return self.m == MSrc.ROW or self.sh == ShSrc.COMMAND_PLUS_ROW


@dataclass(frozen=True)
class ScalarStep:
    """One scalar-unit step on the row's folds: RECIP of the SUM_Y fold, RSQRT of the SUMSQ fold
    plus the command's eps term (with ``n``), or DIV of the SUM fold by ``n``."""

    kind: ScalarOp


#: Lane op of each element-wise command (its ``sh``/``m`` sources follow from the op).
ELEMENTWISE_LANE_OP: Mapping[SfuOp, Pass] = {
    SfuOp.ADD: Pass(LaneOp.ADD, b=True, write=True),
    SfuOp.MUL: Pass(LaneOp.MUL, b=True, write=True),
    SfuOp.REQUANT: Pass(LaneOp.REQUANT, b=True, write=True, sh=ShSrc.COMMAND),
    SfuOp.SILU: Pass(LaneOp.SILU, write=True),
    SfuOp.GELU: Pass(LaneOp.GELU, write=True),
    SfuOp.ROPE: Pass(LaneOp.ROPE, b=True, write=True),
    SfuOp.QSTATIC: Pass(LaneOp.QDIV, write=True, m=MSrc.COMMAND, sh=ShSrc.CMD_EXP_MINUS_16),
    SfuOp.REQUANT_ROW: Pass(LaneOp.REQUANT_ROW, b=True, write=True, m=MSrc.ROW, sh=ShSrc.COMMAND_PLUS_ROW),
}

_NORM_TAIL = (
    Pass(LaneOp.PASS, Reduce.SUMSQ, sh=ShSrc.S),
    ScalarStep(ScalarOp.RSQRT),
    Pass(LaneOp.SCALE_MUL, b=True, write=True, m=MSrc.SCALAR, sh=ShSrc.E_PLUS_S_MINUS_16),
)

#: The steps of each row operation, per row.
ROW_STEPS: Mapping[SfuOp, tuple[Pass | ScalarStep, ...]] = {
    SfuOp.SOFTMAX: (
        Pass(LaneOp.PASS, Reduce.MAX),
        Pass(LaneOp.EXP_SUB, Reduce.SUM_Y, write=True, x=XSrc.MAX),
        ScalarStep(ScalarOp.RECIP),
        Pass(LaneOp.SCALE, src=Src.DST, write=True, m=MSrc.SCALAR, sh=ShSrc.E_MINUS_16),
    ),
    SfuOp.RMSNORM: (Pass(LaneOp.PASS, Reduce.AMAX),) + _NORM_TAIL,
    SfuOp.LAYERNORM: (
        Pass(LaneOp.PASS, Reduce.SUM),
        ScalarStep(ScalarOp.DIV),
        Pass(LaneOp.SUB, Reduce.AMAX_Y, write=True, x=XSrc.MEAN),
    ) + tuple(
        # the norm tail reads the centred row the SUB pass wrote
        Pass(s.op, s.reduce, Src.DST, s.b, s.write, s.x, s.m, s.sh) if isinstance(s, Pass) else s
        for s in _NORM_TAIL
    ),
}


def pass_cycles(beats: int, lane_latency: int) -> int:
    """Cycles of a pass over ``beats`` beats: ``beats + 1 + lane_latency``."""
    return beats + 1 + lane_latency


def command_cycles(cmd: SfuCommand, lanes: int, lane_latency: int,
                   scalar_cycles: Mapping[ScalarOp, int]) -> int:
    """Cycles from accepting ``cmd`` to the end of its done cycle (see the module docstring).

    Parameters
    ----------
    cmd : SfuCommand
        The command.
    lanes : int
        ``sfu.lanes``.
    lane_latency : int
        The lanes' pipeline latency.
    scalar_cycles : mapping
        The scalar unit's cycles per :class:`~sparsa.sfu.scalar.ScalarOp`
        (:data:`sparsa.sfu.timing.SCALAR_CYCLES`).
    """
    beats = cmd.words(lanes)
    if cmd.op == SfuOp.QUANTIZE:
        return quantize_cycles(cmd, lanes, lane_latency, scalar_cycles)
    if cmd.op in ELEMENTWISE:
        fetch = ROW_FETCH_CYCLES if ELEMENTWISE_LANE_OP[cmd.op].fetches_row else 0
        body = pass_cycles(cmd.rows * (beats + fetch), lane_latency)
    elif cmd.op in ROW_STEPS:
        per_row = sum(pass_cycles(beats, lane_latency) if isinstance(s, Pass)
                      else SCALAR_STEP_OVERHEAD + scalar_cycles[s.kind] for s in ROW_STEPS[cmd.op])
        body = cmd.rows * per_row
    else:  # pragma: no cover - every SfuOp is element-wise, a row op or QUANTIZE
        raise AssertionError(f"SFU {cmd.op.name} has no schedule")
    return SETUP_CYCLES + body + DONE_CYCLES


def quantize_cycles(cmd: SfuCommand, lanes: int, lane_latency: int, scalar_cycles: Mapping[ScalarOp, int]) -> int:
    """QUANTIZE, tensor-wide: a pass over all ``R * B`` beats folding each unit's max into the
    scale memory, one EXPO step, one QMANT step per scale unit, a QDIV pass over all beats.
    With ``row_exponent`` the same steps row after row: per row a pass over its ``B`` beats,
    EXPO (its exponent also written to VMEM), one QMANT per unit of the row, a QDIV pass.

    ``scalar_cycles``: the scalar unit's counts (:data:`sparsa.sfu.timing.SCALAR_CYCLES`).
    """
    expo = SCALAR_STEP_OVERHEAD + scalar_cycles[ScalarOp.EXPO]
    qmant = SCALAR_STEP_OVERHEAD + scalar_cycles[ScalarOp.QMANT]
    if cmd.row_exponent:
        per_row = 2 * pass_cycles(cmd.words(lanes), lane_latency) + expo + cmd.scale_units() * qmant
        return SETUP_CYCLES + cmd.rows * per_row + DONE_CYCLES
    beats = cmd.rows * cmd.words(lanes)
    units = cmd.rows * cmd.scale_units()
    return SETUP_CYCLES + 2 * pass_cycles(beats, lane_latency) + expo + units * qmant + DONE_CYCLES
