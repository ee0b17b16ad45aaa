"""Cycle costs of the machine's instructions - its timing contract.

The machine executes one instruction at a time (no overlap between units yet: docs/isa.md,
"The machine").  An instruction costs ``FETCH_CYCLES`` per header and operand word plus its body:

==========  ===========================================================================================
SFU         :func:`sparsa.sfu.schedule.command_cycles` of its command (``sfu.lanes``, the lanes'
            :data:`~sparsa.sfu.timing.LANE_LATENCY`, :data:`~sparsa.sfu.timing.SCALAR_CYCLES`)
GEMM        ``GEMM_START_CYCLES`` + the datapath's cycles for its words
            (:meth:`sparsa.datapath.MatrixDatapath.program_cycles`: every datapath word's own fetch and
            body, exactly as a stand-alone GEMM program without its HALT) + ``GEMM_END_CYCLES``
LOAD/STORE  ``DM_LATENCY`` + one VMEM word per cycle: ``rows * ceil(n / lanes)``
KV_STORE    ``DM_LATENCY`` + ``rows * ceil(row_elements / lanes)``
MOVE        ``VMEM_READ_LATENCY`` + ``rows * words``
HALT        0
==========  ===========================================================================================

``GEMM_START_CYCLES`` is the activation former's prefetch (a VMEM read and its register) before
the first datapath word; ``GEMM_END_CYCLES`` the last output beat's VMEM write.  The device
memory is modelled as delivering one weight beat (and one VMEM word) per cycle after
``DM_LATENCY``: the bandwidth of a real memory is the estimator's roofline
(:mod:`sparsa.memory_model`), reported beside these cycles, not folded into them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsa.datapath import matrix_datapath
from sparsa.errors import ConfigError
from sparsa.isa import decode
from sparsa.machine.isa import (
    OPERAND_WORDS,
    GemmInstr,
    HaltInstr,
    KvStoreInstr,
    LoadInstr,
    MachineInstr,
    MachineOp,
    MoveInstr,
    SfuInstr,
    StoreInstr,
)
from sparsa.sfu.command import row_words
from sparsa.sfu.schedule import command_cycles
from sparsa.sfu.timing import LANE_LATENCY, SCALAR_CYCLES
from sparsa.timing import FETCH_CYCLES

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig

__all__ = ["GEMM_START_CYCLES", "GEMM_END_CYCLES", "DM_LATENCY", "VMEM_READ_LATENCY", "UNITS", "unit_of",
           "instruction_cycles", "gemm_body_cycles", "machine_cycles", "GemmCounts"]

#: The activation former's prefetch before a GEMM's first datapath word.
GEMM_START_CYCLES = 2
#: The last output beat's write into VMEM after the GEMM's last datapath word.
GEMM_END_CYCLES = 1
#: Device-memory access latency of LOAD / STORE / KV_STORE.
DM_LATENCY = 2
#: VMEM read latency of MOVE.
VMEM_READ_LATENCY = 1

#: The units cycles are attributed to (``cycles_by_unit``).
UNITS = ("matrix", "sfu", "memory")


@dataclass(frozen=True)
class GemmCounts:
    """A GEMM instruction known by its datapath instructions' multiplicities (``Counter``, HALT
    included, as :func:`sparsa.compiler.datapath.gemm_instruction_counts` gives them): what the
    estimator costs without compiling the GEMM; its cycles equal the compiled :class:`GemmInstr`'s."""

    counts: Counter

    def body_cycles(self, config: "AcceleratorConfig") -> int:
        """The datapath's cycles for the GEMM's words (the program's without its HALT)."""
        dp = matrix_datapath(config)
        return sum(mult * dp.instruction_cycles(config, ins) for ins, mult in self.counts.items()) - FETCH_CYCLES


def unit_of(instr: "MachineInstr | GemmCounts") -> str:
    """The unit an instruction's cycles count for: GEMM matrix, SFU sfu, moves and HALT memory."""
    if isinstance(instr, (GemmInstr, GemmCounts)):
        return "matrix"
    if isinstance(instr, SfuInstr):
        return "sfu"
    return "memory"


def gemm_body_cycles(config: "AcceleratorConfig", instr: GemmInstr) -> int:
    """The datapath's cycles for a GEMM's words (each word's fetch and body)."""
    return matrix_datapath(config).program_cycles(config, (decode(w, index=i) for i, w in enumerate(instr.words)))


def _fetch(op: MachineOp) -> int:
    return FETCH_CYCLES * (1 + OPERAND_WORDS[op])


def instruction_cycles(config: "AcceleratorConfig", instr: "MachineInstr | GemmCounts") -> int:
    """Cycles of one machine instruction, fetch included (the module docstring's table)."""
    if config.sfu is None:
        raise ConfigError("the machine's timing needs the config's sfu: section (its lanes)")
    lanes = config.sfu.lanes
    if isinstance(instr, SfuInstr):
        return _fetch(MachineOp.SFU) + command_cycles(instr.command, lanes, LANE_LATENCY, SCALAR_CYCLES)
    if isinstance(instr, (GemmInstr, GemmCounts)):
        body = gemm_body_cycles(config, instr) if isinstance(instr, GemmInstr) else instr.body_cycles(config)
        return _fetch(MachineOp.GEMM) + GEMM_START_CYCLES + body + GEMM_END_CYCLES
    if isinstance(instr, (LoadInstr, StoreInstr)):
        op = MachineOp.STORE if isinstance(instr, StoreInstr) else MachineOp.LOAD
        return _fetch(op) + DM_LATENCY + instr.rows * row_words(instr.n, lanes)
    if isinstance(instr, KvStoreInstr):
        return _fetch(MachineOp.KV_STORE) + DM_LATENCY + instr.rows * row_words(instr.row_elements, lanes)
    if isinstance(instr, MoveInstr):
        return _fetch(MachineOp.MOVE) + VMEM_READ_LATENCY + instr.rows * instr.words
    if isinstance(instr, HaltInstr):
        return FETCH_CYCLES
    raise TypeError(f"not a machine instruction: {instr!r}")


def machine_cycles(config: "AcceleratorConfig", instructions: "list[MachineInstr | GemmCounts]") -> dict[str, int]:
    """Cycles of a whole machine program from its instructions alone (no data): ``{"total", *UNITS}``.

    Equal to the cycle rung's count by construction of the contract (tested); the estimator of a
    compiled block and ``sparsa block``'s ``cycle_model_cycles`` use it.
    """
    out = dict.fromkeys(("total", *UNITS), 0)
    for ins in instructions:
        c = instruction_cycles(config, ins)
        out["total"] += c
        out[unit_of(ins)] += c
    return out
