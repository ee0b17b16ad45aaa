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
COMPUTE n    ``n`` (one activation beat per cycle) + ``rows + cols - 1`` flush
DRAIN n      ``n`` (one output beat per cycle)
===========  ==========================================================

The cycle counter of the RTL counts every cycle from reset release until (and
including) the cycle in which HALT is fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsa.isa import Instruction, Opcode

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig

__all__ = ["FETCH_CYCLES", "compute_flush_cycles", "instruction_cycles", "load_weights_cycles"]

#: Cycles to accept and decode one instruction word.
FETCH_CYCLES = 1


def load_weights_cycles(config: "AcceleratorConfig") -> int:
    """Body cycles of LOAD_W: one weight beat per cycle, ``config.weight_beats_per_load`` beats.

    That is ``rows`` for int8/int4 weights and ``rows / 2`` for OVP-4 weights (one pair per
    column and beat, two PE rows).
    """
    return config.weight_beats_per_load


def compute_flush_cycles(config: "AcceleratorConfig") -> int:
    """Cycles after the last activation beat until its result is in the accumulator.

    A beat enters row ``r`` after ``r`` skew registers, crosses ``cols`` PEs and the
    partial sum crosses ``rows`` PEs, then column ``c`` is delayed ``cols-1-c`` deskew
    registers: ``rows + cols - 1`` cycles in all.
    """
    return config.rows + config.cols - 1


def instruction_cycles(config: "AcceleratorConfig", instr: Instruction) -> int:
    """Cycles of one instruction, fetch included, with no stream stalls."""
    if instr.op is Opcode.LOAD_W:
        body = load_weights_cycles(config)
    elif instr.op is Opcode.COMPUTE:
        body = instr.count + compute_flush_cycles(config)
    elif instr.op is Opcode.DRAIN:
        body = instr.count
    else:
        body = 0
    return FETCH_CYCLES + body
