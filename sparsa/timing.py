"""Cycle costs of the systolic datapath - the single timing contract.

The HDL controller uses :func:`compute_flush_cycles` as the length of its flush phase;
the cycle model and the estimator use these functions for their counts.  Tests check
that the RTL's measured cycle count equals the model's and that the flush is tight
(the last accumulator write happens in the last flush cycle).

With every input stream valid and the output stream ready, an instruction costs
``FETCH_CYCLES`` plus its body:

===========  ==========================================================
NOP, HALT    0
LOAD_W       ``rows`` (one weight beat per cycle); ``rows / 2`` with OVP-4 weights
             (a beat carries one OVP pair per column and fills two PE rows)
COMPUTE n    ``n`` (one activation beat per cycle) + ``rows + cols + 3`` flush
             (``rows + cols + 4`` with the activation-scaling stage)
DRAIN n      ``n`` (one output beat per cycle)
LOAD_S n     ``n`` (one scale beat per cycle) with ``act_scale.granularity`` token /
             group; 0 (a NOP) without the scaling stage
illegal      0, and the controller stops (an illegal word: ``done`` and ``illegal``
             rise, the counter freezes after this fetch; :data:`ILLEGAL_CYCLES`)
===========  ==========================================================

The flush is the array's input register, the array latency and the accumulator's write stage:

=============================  ===========================================================
``ARRAY_INPUT_LATENCY``        1: the controller registers the array's enable / valid / flush
                               and the top registers the accepted activation beat
``PE_LATENCY``                 3: lane -> sparse-MUX register -> product register -> psum
:func:`array_latency`          ``rows + cols - 2 + PE_LATENCY`` = ``rows + cols + 1``
``ACCUMULATOR_WRITE_LATENCY``  1: the bank registers the result row and the row read from
                               the RAM and writes their sum one (enabled) cycle later
:func:`scale_stage_latency`    ``SCALE_STAGE_LATENCY`` = 1 with per-token / per-group activation
                               scales (the registered ``result x mantissa`` multipliers), else 0
:func:`compute_flush_cycles`   ``ARRAY_INPUT_LATENCY + array_latency + ACCUMULATOR_WRITE_LATENCY
                               + scale_stage_latency`` = ``rows + cols + 3`` (``+ 4`` scaled)
=============================  ===========================================================

The cycle counter of the RTL counts every cycle from reset release until (and
including) the cycle in which HALT (or an illegal opcode) is fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsa.isa import Instruction, Opcode

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig

__all__ = ["FETCH_CYCLES", "ILLEGAL_CYCLES", "ARRAY_INPUT_LATENCY", "PE_LATENCY", "ACCUMULATOR_WRITE_LATENCY", "SCALE_STAGE_LATENCY", "array_latency",
           "compute_flush_cycles", "scale_stage_latency", "has_scale_stage", "instruction_cycles",
           "load_weights_cycles"]

#: Cycles to accept and decode one instruction word.
FETCH_CYCLES = 1

#: Cycles of an illegal instruction word (unassigned opcode or unused bits set): its fetch, then the controller stops
#: (docs/isa.md#illegal-instructions).  A program stopped by one reports the cycles of the words before
#: it plus these.
ILLEGAL_CYCLES = FETCH_CYCLES

#: Enabled cycles from a PE's ``lane_in`` to its ``psum_out``: the sparse-MUX output register,
#: the multiplier output register and the partial-sum register (``sparsa.hdl.pe``).
PE_LATENCY = 3

#: Enabled cycles from the array's result row to the accumulator RAM write: the bank registers
#: the row (and the accumulator row read for it) and writes the sum in the next enabled cycle.
ACCUMULATOR_WRITE_LATENCY = 1

#: Cycles the array's control (enable, valid tag, flush) and the activation lanes spend in the
#: input register between the stream and the array: the controller registers the array's
#: global clock enable, so the enable's fan-out to every PE register (and the MULT18X18D clock
#: enables) starts at a flip-flop.  Combinational from ``acts.valid``, that net was the critical
#: path of the 8x8 on ECP5 (12.05 ns, 10.6 of them routing, docs/fpga.md step 4).
ARRAY_INPUT_LATENCY = 1

#: Extra enabled cycles of the accumulator's activation-scaling stage (``act_scale`` token /
#: group): the registered request row is multiplied by the row's scale mantissa into a second
#: register before the read-modify-write (``sparsa.hdl.accumulator``).
SCALE_STAGE_LATENCY = 1


def has_scale_stage(config: "AcceleratorConfig") -> bool:
    """True when the accumulator has the activation-scaling stage (and LOAD_S loads scales):
    ``act_scale.granularity`` token or group (which the config allows only on the systolic datapath)."""
    return config.act_scale.granularity != "tensor"


def scale_stage_latency(config: "AcceleratorConfig") -> int:
    """Cycles the scaling stage adds to the accumulator write path: ``SCALE_STAGE_LATENCY`` or 0."""
    return SCALE_STAGE_LATENCY if has_scale_stage(config) else 0


def load_weights_cycles(config: "AcceleratorConfig") -> int:
    """Body cycles of LOAD_W: one weight beat per cycle, ``config.weight_beats_per_load`` beats.

    That is ``rows`` for int8/int4 weights and ``rows / 2`` for OVP-4 weights (one pair per
    column and beat, two PE rows).
    """
    return config.weight_beats_per_load


def array_latency(config: "AcceleratorConfig") -> int:
    """Enabled cycles from accepting an activation beat to its result row at the array output.

    A beat enters row ``r`` after ``r`` skew registers, PE(r, c) sees it ``r + c`` cycles after
    it was accepted and outputs its partial sum ``PE_LATENCY`` cycles later, so the bottom PE of
    column ``c`` outputs at ``rows - 1 + c + PE_LATENCY``; ``cols - 1 - c`` deskew registers
    align every column at ``rows + cols - 2 + PE_LATENCY = rows + cols + 1``.
    """
    return config.rows + config.cols - 2 + PE_LATENCY


def compute_flush_cycles(config: "AcceleratorConfig") -> int:
    """Cycles after the last activation beat until its result is written to the accumulator RAM.

    The array's input register (``ARRAY_INPUT_LATENCY``) plus the array latency
    (:func:`array_latency`, ``rows + cols + 1``) plus the accumulator's write stage
    (``ACCUMULATOR_WRITE_LATENCY``) plus, with activation scales, the scaling stage
    (:func:`scale_stage_latency`): ``rows + cols + 3`` (``rows + cols + 4`` scaled).  The last
    RAM write happens in the last flush cycle; one cycle less and it never happens.
    """
    return ARRAY_INPUT_LATENCY + array_latency(config) + ACCUMULATOR_WRITE_LATENCY + scale_stage_latency(config)


def instruction_cycles(config: "AcceleratorConfig", instr: Instruction) -> int:
    """Cycles of one instruction, fetch included, with no stream stalls."""
    if instr.op is Opcode.LOAD_W:
        body = load_weights_cycles(config)
    elif instr.op is Opcode.COMPUTE:
        body = instr.count + compute_flush_cycles(config)
    elif instr.op is Opcode.DRAIN:
        body = instr.count
    elif instr.op is Opcode.LOAD_S and has_scale_stage(config):
        body = instr.count
    else:
        body = 0
    return FETCH_CYCLES + body
