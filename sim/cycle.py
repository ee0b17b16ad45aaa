"""Cycle-accurate model of the systolic datapath.

It executes the program with the same architectural semantics as the ISA interpreter
and advances a cycle counter phase by phase exactly as the RTL controller does
(:mod:`sparsa.timing` is the contract; tests compare against the Amaranth and Verilator
runs of the exported design).  The functional work of each COMPUTE is done on the whole
batch of beats at once, so large GEMMs run fast; the timing is exact for streams that
are always valid/ready (the configuration every backend measures).

Besides the total it records, per instruction, the start cycle and per phase (fetch,
load, stream, flush, drain, scale_load) the cycles spent, which the reports and the estimator use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsa.compiler.program import Program
from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.errors import FormatError, IllegalInstructionError
from sparsa.isa import Opcode
from sparsa.models.reference import wrap
from sparsa.sim.interpreter import ArchState, Interpreter, decode_lanes, fetched
from sparsa.timing import FETCH_CYCLES, ILLEGAL_CYCLES, compute_flush_cycles, has_scale_stage, load_weights_cycles

__all__ = ["CycleStats", "CycleModel", "program_cycles", "run_fetched"]


def run_fetched(program, stats: "CycleStats", stop_cycles: int = ILLEGAL_CYCLES):
    """The program's instructions as the controller fetches them: its instruction words, decoded.

    An illegal word (unassigned opcode, or bits set its opcode does not use) raises :class:`~sparsa.errors.IllegalInstructionError`
    with ``cycles`` set to the stop cycle: ``stats.cycles`` (the words before it) plus
    ``stop_cycles`` (the datapath's ``ILLEGAL_CYCLES``), which is what the RTL's cycle counter shows.
    """
    try:
        yield from fetched(program.instruction_words())
    except IllegalInstructionError as exc:
        exc.cycles = stats.cycles + stop_cycles
        raise


@dataclass
class CycleStats:
    """Where the cycles of a run went."""

    cycles: int = 0
    fetch: int = 0
    load: int = 0
    stream: int = 0
    flush: int = 0
    drain: int = 0
    scale_load: int = 0
    macs: int = 0
    instructions: int = 0
    timeline: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        """The counters (not the timeline) as a plain dict."""
        return {k: getattr(self, k) for k in
                ("cycles", "fetch", "load", "stream", "flush", "drain", "scale_load", "macs", "instructions")}


#: Signals of the exported systolic design each energy component is counted from in an RTL activity
#: run (:func:`sparsa.sim.activity.activity_energy`), as regexes on the signal path.
ACTIVITY_GROUPS: dict[str, str] = {
    "mac": r"^top/array/pe_r\d+_c\d+_prod$",
    "registers": r"^top/array/pe_r\d+_c\d+_(act|psum|lane)$",
    "ports": r"^top/acc/ram/[rw]en$",
    "streams": r"^top/(weights|acts)__valid$",
}


class CycleModel:
    """Cycle-accurate model of one :class:`AcceleratorConfig`.

    Parameters
    ----------
    config : AcceleratorConfig
        The hardware.
    record_timeline : bool
        Keep ``(start_cycle, instruction)`` for every instruction (memory grows with the program).
    """

    def __init__(self, config: AcceleratorConfig, record_timeline: bool = False) -> None:
        self.config = config
        self.interp = Interpreter(config)
        self.record_timeline = record_timeline

    def run_program(self, program: Program, a: np.ndarray,
                    scales: "np.ndarray | None" = None) -> tuple[np.ndarray, CycleStats]:
        """Run ``program`` on activations ``a`` (and scale mantissas ``scales``); return ``(Y, stats)``.

        Activation lanes are gathered per COMPUTE straight from ``a`` (no packed stream is
        materialised), which is what makes 4096x4096 GEMVs on a 32x32 array take seconds.
        ``scales`` (``S[m, scale_groups]``) is required by programs with activation scales and
        refused by the others.  The instructions executed are the program's instruction words
        (what the hardware fetches): an illegal word raises
        :class:`~sparsa.errors.IllegalInstructionError` with the stop cycle as ``.cycles``.
        """
        cfg = self.config
        if program.config != cfg:
            raise FormatError("the program was compiled for a different configuration")
        a = program.check_inputs({"A": a})
        s = program.check_scales({"A": a, "S": scales} if scales is not None else {"A": a})
        grouped = decode_lanes(cfg, program.grouped_activations(a))   # OVP-4 codes -> values
        state = ArchState.reset(cfg)
        stats = CycleStats()
        flush = compute_flush_cycles(cfg)
        load = load_weights_cycles(cfg)
        beats = program.weight_beats()
        computes = iter(program.computes)
        scale_loads = iter(program.scale_loads)
        scaling = has_scale_stage(cfg)
        out = []
        for instr in run_fetched(program, stats):
            if self.record_timeline:
                stats.timeline.append((stats.cycles, str(instr)))
            stats.instructions += 1
            stats.fetch += FETCH_CYCLES
            stats.cycles += FETCH_CYCLES
            op = instr.op
            if op is Opcode.LOAD_W:
                self.interp.step(state, instr, beats, iter(()))
                stats.load += load
                stats.cycles += load
            elif op is Opcode.COMPUTE and instr.count == 0:     # the flush alone, no row written
                stats.flush += flush
                stats.cycles += flush
            elif op is Opcode.COMPUTE:
                step = next(computes)
                lanes = program.lanes_for(grouped, step)
                result = state.scaled(self.interp.array_outputs(state, lanes))
                rows = slice(0, instr.count)
                base = state.acc[rows] if instr.accumulate else 0
                state.acc[rows] = wrap(base + result, cfg.accumulator_bits)
                stats.stream += instr.count
                stats.flush += flush
                stats.cycles += instr.count + flush
                stats.macs += instr.count * cfg.rows * cfg.cols
            elif op is Opcode.LOAD_S and scaling and instr.count:
                step = next(scale_loads)
                state.scales[: step.rows] = s[step.m0 : step.m0 + step.rows, step.group]
                stats.scale_load += instr.count
                stats.cycles += instr.count
            elif op is Opcode.DRAIN:
                out.append(state.acc[: instr.count].copy())
                stats.drain += instr.count
                stats.cycles += instr.count
            elif op is Opcode.HALT:
                break
        y = program.collect_outputs(np.concatenate(out) if out else np.zeros((0, cfg.cols), np.int64))
        return y, stats


def program_cycles(program: Program) -> int:
    """Cycles of ``program`` from the instruction stream alone (no data needed).

    Equal to :meth:`CycleModel.run_program`'s count by construction of the timing contract;
    the estimator and the "speedup vs dense" figure use it for programs too big to run.
    """
    return matrix_datapath(program.config).program_cycles(program.config, program.instructions)
