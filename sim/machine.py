"""The machine's ISA and cycle rungs: a machine instruction stream run on VMEM and device memory.

Both rungs decode the word stream (:func:`sparsa.machine.isa.decode_machine`) and execute it one
instruction at a time on the same state - the SFU's VMEM (:class:`sparsa.sim.sfu.SfuState`) and the
device memory bytes:

* ``isa``: SFU commands by :func:`sparsa.sim.sfu.execute` (the op-level definition), GEMMs on the
  datapath's stream interpreter fed with the beats the hardware's formers make - weight beats
  unpacked from the device memory's image (or formed from the KV cache's codes), activation beats
  from the VMEM rows;
* ``cycle``: SFU commands by the sequencer's microcode (:func:`sparsa.sim.sfu.run_microcode`),
  GEMMs on the datapath's cycle model; the cycle count is the machine's timing contract
  (:mod:`sparsa.machine.timing`), with each GEMM's datapath cycles as its cycle model counted them.

A GEMM's words must be the schedule its formers follow: the compiled program of its weight image,
or of the dense ``K^T`` / ``V`` of the cache for its shape; anything else is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sparsa.compiler.attention import split_nibbles
from sparsa.compiler.datapath import compile_gemm
from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.errors import ConfigError, FormatError
from sparsa.isa import Instruction, Opcode, encode
from sparsa.machine.isa import (
    GemmInstr,
    HaltInstr,
    KvStoreInstr,
    LoadInstr,
    MoveInstr,
    Plane,
    SfuInstr,
    StoreInstr,
    WeightKind,
    decode_machine,
)
from sparsa.machine.memory import FX_BYTES, bytes_fx, fx_bytes
from sparsa.machine.timing import UNITS, gemm_body_cycles, instruction_cycles, unit_of
from sparsa.models.reference import wrap
from sparsa.sim.datapath import sim_datapath
from sparsa.sim.sfu import SfuState, execute, run_microcode
from sparsa.timing import FETCH_CYCLES

__all__ = ["MachineRun", "run_machine", "RUNGS"]

#: The rungs :func:`run_machine` runs.
RUNGS = ("isa", "cycle")
_HALT = encode(Instruction(Opcode.HALT))


@dataclass
class MachineRun:
    """What a run left: the device memory, the VMEM, and the cycles (cycle rung) by unit."""

    dm: bytearray
    sfu: SfuState
    cycles: int = 0
    cycles_by_unit: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNITS, 0))
    instructions: int = 0


class _Machine:
    def __init__(self, config: AcceleratorConfig, dm: bytearray, programs: Mapping[int, object], rung: str,
                 copy: bool = True) -> None:
        if rung not in RUNGS:
            raise ConfigError(f"machine rung must be one of {', '.join(RUNGS)}, not {rung!r}")
        if config.sfu is None:
            raise ConfigError("the machine needs an sfu: section in the config")
        self.cfg, self.programs, self.rung = config, programs, rung
        self.dp = matrix_datapath(config)
        self.run = MachineRun(bytearray(dm) if copy else dm, SfuState(config.sfu.lanes, config.sfu.vmem_words))

    # -- device memory ------------------------------------------------------------------------
    def _dm(self, addr: int, size: int, what: str) -> slice:
        if addr + size > len(self.run.dm):
            raise FormatError(f"{what}: DM bytes {addr}..{addr + size - 1} are beyond the device memory's "
                              f"{len(self.run.dm)} bytes")
        return slice(addr, addr + size)

    def _weight_beats(self, ins: GemmInstr, prog) -> list:
        """IMAGE: the program's beats read back from DM (the bytes must hold them)."""
        nbytes = -(-self.dp.stream_beat_bits(self.cfg)["weights"] // 8)
        count = sum(1 for _ in prog.weight_beats())
        raw = bytes(self.run.dm[self._dm(ins.w_addr, count * nbytes, "GEMM weight image")])
        return [self.dp.unpack_weight_beat(self.cfg, int.from_bytes(raw[i * nbytes:(i + 1) * nbytes], "little"))
                for i in range(count)]

    def _cache_program(self, ins: GemmInstr):
        """KEYS / VALUES: the dense program of the cache head's codes (the weight former's beats)."""
        hd, positions = (ins.k, ins.n) if ins.w_kind is WeightKind.KEYS else (ins.n, ins.k)
        codes = np.frombuffer(bytes(self.run.dm[self._dm(ins.w_addr, positions * hd, "GEMM KV head")]),
                              dtype=np.int8).astype(np.int64).reshape(positions, hd)
        if ins.plane is not Plane.WHOLE:
            hi, lo = split_nibbles(codes)
            codes = hi if ins.plane is Plane.HIGH else lo
        w = codes.T if ins.w_kind is WeightKind.KEYS else codes
        return compile_gemm(self.cfg, w, ins.m, "dense", prune=False)

    # -- instructions -------------------------------------------------------------------------
    def gemm(self, ins: GemmInstr) -> int:
        if ins.w_kind is WeightKind.IMAGE:
            if ins.w_addr not in self.programs:
                raise FormatError(f"GEMM weight image at DM {ins.w_addr}: no compiled schedule for it")
            prog = self.programs[ins.w_addr]
        else:
            prog = self._cache_program(ins)
        if tuple(prog.instruction_words()[:-1]) != ins.words:
            raise FormatError(f"GEMM at DM {ins.w_addr}: its datapath words are not the schedule of its "
                              f"{ins.m}x{ins.k}x{ins.n} weights the beat formers follow")
        st = self.run.sfu
        a = np.concatenate([st.read_rows(ins.a_addr + t * ins.a_stride, 1, ins.k) for t in range(ins.m)])
        a = wrap(a, self.cfg.activation_bits)                                  # the former takes the low bits
        sim = sim_datapath(self.cfg)
        body = 0
        if self.rung == "isa":
            beats = self._weight_beats(ins, prog) if ins.w_kind is WeightKind.IMAGE else prog.weight_beats()
            state = sim.stream_interpreter(self.cfg).run(list(ins.words) + [_HALT], beats, prog.activation_beats(a))
            out = np.asarray(state.outputs, dtype=np.int64).reshape(-1, self.dp.output_lanes(self.cfg))
            y = prog.collect_outputs(out)
        else:
            y, stats = sim.cycle_model(self.cfg).run_program(prog, a)
            body = stats.cycles - FETCH_CYCLES                                 # without the program's HALT
        for t in range(ins.m):
            st.write_rows(ins.y_addr + t * ins.y_stride, y[t:t + 1])
        return body

    def step(self, ins) -> None:
        st, dm = self.run.sfu, self.run.dm
        if isinstance(ins, SfuInstr):
            (execute if self.rung == "isa" else run_microcode)(st, ins.command)
        elif isinstance(ins, GemmInstr):
            self.gemm(ins)
        elif isinstance(ins, StoreInstr):
            dm[self._dm(ins.dm_addr, ins.rows * ins.n * FX_BYTES, "STORE")] = fx_bytes(st.read_rows(ins.vmem_addr,
                                                                                                     ins.rows, ins.n))
        elif isinstance(ins, LoadInstr):
            data = dm[self._dm(ins.dm_addr, ins.rows * ins.n * FX_BYTES, "LOAD")]
            st.write_rows(ins.vmem_addr, bytes_fx(data, (ins.rows, ins.n)))
        elif isinstance(ins, KvStoreInstr):
            codes = st.read_rows(ins.vmem_addr, ins.rows, ins.row_elements)
            if codes.size and np.abs(codes).max() > 127:
                raise FormatError(f"KV_STORE: codes must be int8, got {int(np.abs(codes).max())}")
            size = ins.rows * ins.row_elements
            dm[self._dm(ins.dm_addr + ins.position * ins.row_elements, size, "KV_STORE")] = \
                codes.astype(np.int8).tobytes()
        elif isinstance(ins, MoveInstr):
            words = np.stack([st.vmem[ins.src + r * ins.src_stride: ins.src + r * ins.src_stride + ins.words]
                              for r in range(ins.rows)])
            for r in range(ins.rows):
                st.vmem[ins.dst + r * ins.dst_stride: ins.dst + r * ins.dst_stride + ins.words] = words[r]


def run_machine(config: AcceleratorConfig, words: "list[int]", dm: bytearray,
                programs: Mapping[int, object], rung: str = "isa", *, copy: bool = True) -> MachineRun:
    """Run a machine instruction stream until HALT.

    Parameters
    ----------
    config : AcceleratorConfig
        The machine (``sfu:`` required).
    words : list of int
        The instruction stream (:func:`sparsa.machine.isa.encode_machine`).
    dm : bytearray
        The device memory's initial bytes (copied unless ``copy`` is False, when the run writes
        into ``dm`` itself; the run's final bytes are in the result).
    programs : mapping
        The compiled datapath program of each weight image, by its DM address.
    rung : str
        ``isa`` or ``cycle`` (the module docstring).

    Returns
    -------
    MachineRun
        ``cycles`` and ``cycles_by_unit`` are counted on both rungs from the timing contract; on
        the cycle rung each GEMM's datapath part is its cycle model's count.
    """
    m = _Machine(config, dm, programs, rung, copy)
    run = m.run
    for ins in decode_machine(words):
        cycles = instruction_cycles(config, ins)
        if isinstance(ins, GemmInstr) and rung == "cycle":
            body = m.gemm(ins)
            if body != gemm_body_cycles(config, ins):
                raise AssertionError(f"GEMM datapath cycles {body} differ from the contract's "
                                     f"{gemm_body_cycles(config, ins)}")
        elif not isinstance(ins, HaltInstr):
            m.step(ins)
        run.cycles += cycles
        run.cycles_by_unit[unit_of(ins)] += cycles
        run.instructions += 1
    return run
