"""ISA interpreter and cycle-accurate model of the sparse DSP chain (docs/chain.md).

:class:`ChainInterpreter` executes the packed-level streams (instruction words, weight beats,
activation-buffer words) beat by beat on the architectural state: the activation buffer,
the k-tile count and segment count latched by LOAD_A and the output bank.
:class:`ChainCycleModel` runs the same semantics on whole COMPUTEs at once (NumPy) and
advances the cycle counter as :mod:`sparsa.chain_timing` says; tests compare both with NumPy
and the RTL.

Cascade cutting (docs/chain.md): with ``S`` segments (a divisor of ``chain.max_segments``
``Smax``), segment ``s`` of a chain is slices ``s * L .. (s + 1) * L - 1`` (``L = rows / S``)
and its result lands in output-bank slot ``u = (s + 1) * Smax / S - 1`` of the row - the
reduction node at the segment's end, one of the ``Smax`` nodes that can cut.  A bank row holds
``Smax`` slots of ``P * cols`` accumulators; DRAIN pushes ``S`` beats per row (segment order).

Output packing (``chain.packing: both``, LOAD_A ``outputs``; docs/chain.md#packing-for-gemv-chainpacking-both):
a weight lane's value is the pair ``(w1 << 18) + w0`` of two output columns
(:func:`~sparsa.chain_layout.split_weights`), both multiplied by token lane 0's activation;
lane ``p`` of the result is column ``p`` of the pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sparsa.chain_layout import split_weights
from sparsa.chain_timing import FETCH_CYCLES, ILLEGAL_CYCLES, chain_latency
from sparsa.config import AcceleratorConfig
from sparsa.errors import FormatError
from sparsa.isa import Opcode
from sparsa.models.reference import wrap
from sparsa.sim.cycle import CycleStats, run_fetched
from sparsa.sim.interpreter import fetched

__all__ = ["ChainState", "ChainInterpreter", "ChainCycleModel", "ChainStats", "tile_results", "segment_slots",
           "interpret_program"]


@dataclass
class ChainState:
    """Architectural state: activation buffer ``(act_depth, rows, P, M)``, k-tiles and segments
    (latched by LOAD_A), output bank ``(accumulator_depth, max_segments, P * cols)``.

    ``bank_segments`` is the segment count the bank rows were last written with (an
    accumulating COMPUTE must use the same); ``pack_outputs`` the LOAD_A ``outputs`` flag.
    """

    buffer: np.ndarray
    bank: np.ndarray
    ktiles: int = 1
    segments: int = 1
    bank_segments: int = 1
    pack_outputs: bool = False
    outputs: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def reset(cls, config: AcceleratorConfig) -> "ChainState":
        p = config.token_lanes
        return cls(np.zeros((config.chain.act_depth, config.rows, p, config.group_size), np.int64),
                   np.zeros((config.buffers.accumulator_depth, config.chain.max_segments, p * config.cols), np.int64))


def segment_slots(config: AcceleratorConfig, segments: int) -> np.ndarray:
    """Output-bank slot of each of the ``segments`` segments: ``(s + 1) * max_segments / S - 1``."""
    step = config.chain.max_segments // segments
    return (np.arange(segments) + 1) * step - 1


def write_bank(config: AcceleratorConfig, state: ChainState, res: np.ndarray, accumulate: bool) -> None:
    """Write (or add) tile results ``res (tiles, S, P * cols)`` to bank rows ``0 .. tiles-1``."""
    seg = state.segments
    if accumulate and seg != state.bank_segments:
        raise FormatError(f"an accumulating COMPUTE with segments={seg} adds to bank rows written with "
                          f"segments={state.bank_segments}")
    rows, slots = np.arange(res.shape[0])[:, None], segment_slots(config, seg)[None, :]
    base = state.bank[rows, slots] if accumulate else 0
    state.bank[rows, slots] = wrap(base + res, config.accumulator_bits)
    state.bank_segments = seg


def drain_beats(config: AcceleratorConfig, state: ChainState, n: int) -> np.ndarray:
    """The ``n`` output beats of a DRAIN: bank row ``b // S``, segment ``b % S`` -> ``(n, P * cols)``."""
    seg = state.segments
    b = np.arange(n)
    return state.bank[b // seg, segment_slots(config, seg)[b % seg]].copy()


def _take(stream: Iterator, what: str):
    try:
        return next(stream)
    except StopIteration:
        raise FormatError(f"the {what} stream ran out: the program needs more beats than were given") from None


def tile_results(config: AcceleratorConfig, words: np.ndarray, values: np.ndarray, indices: np.ndarray,
                 segments: int = 1, pack_outputs: bool = False) -> np.ndarray:
    """Segment outputs of weight beats ``values/indices (beats, cols, rows)`` against buffer
    words ``(beats, rows, P, M)``: ``(beats, segments, P * cols)``, lane ``p * cols + c`` (exact
    int64 sums; segment ``s`` sums slices ``s * L .. (s + 1) * L - 1``, ``L = rows / segments``).
    ``pack_outputs``: lane ``p`` is weight ``p`` of each value's pair times token 0."""
    # picked[b, c, i, p] = words[b, i, p, indices[b, c, i]]
    beats = words.shape[0]
    b_idx = np.arange(beats)[:, None, None]
    i_idx = np.arange(config.rows)[None, None, :]
    picked = words.transpose(0, 1, 3, 2)[b_idx, i_idx, indices]       # (beats, cols, rows, P)
    seg_len = config.rows // segments
    shape = (beats, config.cols, segments, seg_len)
    picked = picked.reshape(shape + (-1,))
    if pack_outputs:
        pair = np.stack(split_weights(values), axis=-1).reshape(shape + (2,))
        res = np.einsum("bcsi,bcsip->bspc", picked[..., 0], pair)
    else:
        res = np.einsum("bcsip,bcsi->bspc", picked, values.reshape(shape))
    return res.reshape(beats, segments, -1)


#: Signals of the exported chain design each energy component is counted from in an RTL activity
#: run (:func:`sparsa.sim.activity.activity_energy`), as regexes on the signal path.
ACTIVITY_GROUPS: dict[str, str] = {
    "mac": r"^top/chain\d+/group\d+/s\d+_prod$",
    "registers": r"^top/chain\d+/(group\d+/s\d+_(opnd|cascade)|w_s\d+_d\d+)$",
    "ports": r"^top/(act_buffer/lane\d+|bank/mem)/[rw]p__en$",
    "streams": r"^top/(weights|acts)__valid$",
}


class ChainInterpreter:
    """Executes chain instruction streams on :class:`ChainState` (no timing)."""

    def __init__(self, config: AcceleratorConfig) -> None:
        self.config = config

    def check_count(self, op: Opcode, count: int, ktiles: int, segments: int = 1) -> None:
        """Refuse an instruction outside the contract (:class:`FormatError`, one line)."""
        cfg = self.config
        if op is Opcode.LOAD_A and count > cfg.chain.act_depth:
            raise FormatError(f"LOAD_A count {count} exceeds datapath.chain.act_depth={cfg.chain.act_depth}")
        if op is Opcode.COMPUTE and (count % ktiles or count // ktiles > cfg.buffers.accumulator_depth):
            raise FormatError(f"COMPUTE count {count} is not a multiple of the {ktiles} loaded k-tiles "
                              f"or exceeds buffers.accumulator_depth rows")
        if op is Opcode.DRAIN and count > cfg.buffers.accumulator_depth * segments:
            raise FormatError(f"DRAIN count {count} exceeds buffers.accumulator_depth={cfg.buffers.accumulator_depth}"
                              f" rows x {segments} segments")

    def check_segments(self, segments: int) -> None:
        """Refuse a LOAD_A segment count the config does not support (:class:`FormatError`)."""
        chain = self.config.chain
        if segments not in chain.supported_segments():
            raise FormatError(f"LOAD_A segments={segments} is not supported by datapath.chain.max_segments="
                              f"{chain.max_segments}; use one of {list(chain.supported_segments())}")

    def check_packing(self, outputs: bool) -> None:
        """Refuse a LOAD_A ``outputs`` flag on a config without output packing (:class:`FormatError`)."""
        chain = self.config.chain
        if outputs and "outputs" not in chain.packing_modes:
            raise FormatError(f"LOAD_A outputs=1 needs datapath.chain.packing='both', not "
                              f"datapath.chain.packing={chain.packing!r}")

    def run(self, words: Iterable[int], weight_beats: Iterable, act_words: Iterable) -> ChainState:
        cfg = self.config
        state = ChainState.reset(cfg)
        weights, acts = iter(weight_beats), iter(act_words)
        for instr in fetched(words):
            op, n = instr.op, instr.count
            if op is Opcode.LOAD_A:
                self.check_segments(instr.segments)
                self.check_packing(instr.outputs)
            self.check_count(op, n, state.ktiles, state.segments)
            if op is Opcode.LOAD_A:
                for j in range(n):
                    state.buffer[j] = _take(acts, "activation")
                # LOAD_A 0 latches the segments and keeps the k-tiles, as the controller does
                state.ktiles, state.segments = n or state.ktiles, instr.segments
                state.pack_outputs = instr.outputs
            elif op is Opcode.COMPUTE and n:                     # COMPUTE 0: the flush alone
                kt, seg = state.ktiles, state.segments
                beats = [_take(weights, "weight") for _ in range(n)]
                vals = np.stack([np.asarray(v, np.int64) for v, _ in beats])
                idxs = np.stack([np.asarray(i, np.int64) for _, i in beats])
                words_ = state.buffer[np.arange(n) % kt]
                res = tile_results(cfg, words_, vals, idxs, seg, state.pack_outputs)
                res = res.reshape(n // kt, kt, seg, -1).sum(axis=1)
                write_bank(cfg, state, res, instr.accumulate)
            elif op is Opcode.DRAIN:
                state.outputs.extend(drain_beats(cfg, state, n))
            elif op is Opcode.HALT:
                break
        else:
            raise FormatError("the program ended without HALT")
        return state


#: The chain's run statistics are the systolic cycle model's counters (fetch / load / stream /
#: flush / drain cycles, MACs, instructions); one class, so reports treat both datapaths alike.
ChainStats = CycleStats


class ChainCycleModel:
    """Cycle-accurate model of a DSP-chain :class:`AcceleratorConfig` (whole COMPUTEs in NumPy)."""

    def __init__(self, config: AcceleratorConfig) -> None:
        self.config = config

    def run_program(self, program, a: np.ndarray,
                    scales: "np.ndarray | None" = None) -> tuple[np.ndarray, ChainStats]:
        """Run ``program`` on activations ``a``; return ``(Y, stats)`` (the chain takes no ``scales``)."""
        cfg = self.config
        if scales is not None:
            raise FormatError("the DSP chain has per-tensor activation scales only and takes no scales 'S'")
        if program.config != cfg:
            raise FormatError("the program was compiled for a different configuration")
        a = program.check_inputs({"A": a})
        grouped = program.grouped_activations(a)
        state = ChainState.reset(cfg)
        stats = ChainStats()
        lat = chain_latency(cfg)
        loads, computes = iter(program.load_steps), iter(program.computes)
        out = []
        for instr in run_fetched(program, stats, ILLEGAL_CYCLES):
            stats.instructions += 1
            stats.fetch += FETCH_CYCLES
            stats.cycles += FETCH_CYCLES
            op, n = instr.op, instr.count
            if op is Opcode.LOAD_A and n == 0:                   # segments latched, k-tiles kept
                state.segments, state.pack_outputs = instr.segments, instr.outputs
            elif op is Opcode.LOAD_A:
                block, k0, kk = next(loads)
                state.buffer[:kk] = program.buffer_words(grouped, block, k0, kk)
                state.ktiles, state.segments, state.pack_outputs = kk, instr.segments, instr.outputs
                stats.load += n
                stats.cycles += n
            elif op is Opcode.COMPUTE and n == 0:                # the flush alone
                stats.flush += lat
                stats.cycles += lat
            elif op is Opcode.COMPUTE:
                s = next(computes)
                kt, seg = state.ktiles, state.segments
                vals = program.tile_values[s.k0: s.k0 + kt, s.n0: s.n0 + s.nn]     # (kt, nn, rows, cols)
                idxs = program.tile_indices[s.k0: s.k0 + kt, s.n0: s.n0 + s.nn]
                words = np.broadcast_to(state.buffer[:kt, None], (kt, s.nn) + state.buffer.shape[1:])
                res = tile_results(cfg, words.reshape((-1,) + state.buffer.shape[1:]),
                                   vals.transpose(0, 1, 3, 2).reshape(-1, cfg.cols, cfg.rows),
                                   idxs.transpose(0, 1, 3, 2).reshape(-1, cfg.cols, cfg.rows), seg,
                                   state.pack_outputs)
                res = res.reshape(kt, s.nn, seg, -1).sum(axis=0)
                write_bank(cfg, state, res, instr.accumulate)
                stats.stream += n
                stats.flush += lat
                stats.cycles += n + lat
                stats.macs += n * cfg.peak_macs_per_cycle
            elif op is Opcode.DRAIN:
                out.append(drain_beats(cfg, state, n))
                stats.drain += n
                stats.cycles += n
            elif op is Opcode.HALT:
                break
        beats = np.concatenate(out) if out else np.zeros((0, program.output_lanes), np.int64)
        return program.collect_outputs(beats), stats


def interpret_program(config: AcceleratorConfig, program, a: np.ndarray, scales: "np.ndarray | None" = None) -> np.ndarray:
    """The ISA rung of the chain: :class:`ChainInterpreter` fed with exactly the hardware's beats; returns ``Y``."""
    if scales is not None:
        raise FormatError("the DSP chain has per-tensor activation scales only and takes no scales 'S'")
    state = ChainInterpreter(config).run(program.instruction_words(), program.weight_beats(),
                                         program.activation_beats(a))
    beats = np.asarray(state.outputs, dtype=np.int64).reshape(-1, program.output_lanes)
    return program.collect_outputs(beats)
