"""Cycle costs of the sparse DSP-chain datapath - its single timing contract (docs/chain.md).

The chain HDL (:mod:`sparsa.hdl.chain`) takes its flush length from
:func:`chain_latency`; the chain cycle model, the compiler's schedule aggregation and the
estimator use :func:`instruction_cycles`.  Tests check that the RTL's cycle count equals
:func:`program_cycles` exactly and that the flush is tight.

With every input stream valid and the output stream ready, an instruction costs
``FETCH_CYCLES`` plus its body:

===========  ==========================================================
NOP, HALT    0 (LOAD_W is a NOP on the chain: weights stream during COMPUTE)
LOAD_A n     ``n`` (one activation-buffer word per cycle)
COMPUTE n    ``n`` (one weight beat per cycle) + :func:`chain_latency` flush
DRAIN n      ``n`` (one output row per cycle)
illegal      0, and the controller stops (an illegal word, :data:`ILLEGAL_CYCLES`)
===========  ==========================================================

Pipeline of a beat accepted in (enabled) cycle ``t`` by slice ``i = j * group + s`` (DSP
group ``j``, position ``s``): its operands are delayed ``d = j + s`` cycles (weight skew
registers and the activation-buffer read address; the synchronous buffer read lands at
``t + d + 1``), the MUX output (packed: ``(a1 << 18) + a0``) and the weight value are
registered (``t + d + 2``, the DSP's input registers), the product is registered (MREG,
``t + d + 3``), the in-group cascade adds one register per slice (PREG), and the reduction node
of group ``j`` registers ``link + unpack(group sum)`` at ``t + j + group + 4``.  The last
reduction node's output is summed into the per-tile accumulator and written to the output
bank in cycle ``t + groups + group + 3``: that is the latency, and the flush after the last beat.

Cascade cutting (``chain.max_segments > 1``, docs/chain.md "Cutting the cascade") does not
change any of this: a node that cuts emits its segment's result ``groups - 1 - j`` cycles
early, and the HDL delays it by that many registers so that every segment reaches its tile
accumulator in the last node's cycle.  LOAD_A's segment field and the S beats per output-bank
row of a DRAIN cost nothing extra: DRAIN ``n`` still pushes ``n`` beats in ``n`` cycles.

Compact N:M metadata (the ``index`` encoding, :mod:`sparsa.formats.nm_meta`) costs nothing either:
the index expander in front of the weight stream
(:class:`sparsa.hdl.chain.index_expander.IndexExpander`) is combinational, one beat in and one
out in the same cycle, :data:`INDEX_EXPANDER_CYCLES` = 0 (tested in
``tests/hdl/chain/test_index_expander.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsa.isa import Instruction, Opcode

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig

__all__ = ["FETCH_CYCLES", "ILLEGAL_CYCLES", "INDEX_EXPANDER_CYCLES", "chain_latency", "instruction_cycles", "program_cycles"]

#: Cycles to accept and decode one instruction word (same as the systolic controller).
FETCH_CYCLES = 1

#: Cycles of an illegal instruction word (unassigned opcode or unused bits set): its fetch, then the controller stops
#: (as :data:`sparsa.timing.ILLEGAL_CYCLES`).
ILLEGAL_CYCLES = FETCH_CYCLES


#: Extra cycles of the compact-index expander on the weight stream: it is combinational (0).
INDEX_EXPANDER_CYCLES = 0


def chain_latency(config: "AcceleratorConfig") -> int:
    """Enabled cycles from accepting a weight beat to writing its tile's result row.

    ``groups + group + 3`` with ``groups = rows / chain.group``: the buffer read, the operand
    register, the product register, ``group`` cascade registers in the last group reached after
    ``groups - 1`` inter-group links, and the write cycle.
    """
    return config.chain_groups + config.chain.group + 3


def instruction_cycles(config: "AcceleratorConfig", instr: Instruction) -> int:
    """Cycles of one chain instruction, fetch included, with no stream stalls."""
    if instr.op is Opcode.COMPUTE:
        body = instr.count + chain_latency(config)
    elif instr.op in (Opcode.LOAD_A, Opcode.DRAIN):
        body = instr.count
    else:
        body = 0
    return FETCH_CYCLES + body


def program_cycles(config: "AcceleratorConfig", instructions) -> int:
    """Cycles of a whole instruction stream (every instruction up to and including HALT)."""
    return sum(instruction_cycles(config, i) for i in instructions)
