"""ISA interpreter and cycle-accurate model of the sparse DSP chain (docs/chain.md).

:class:`ChainInterpreter` executes the packed-level streams (instruction words, weight beats,
activation-buffer words) beat by beat on the architectural state: the activation buffer,
the k-tile count latched by LOAD_A and the output bank.  :class:`ChainCycleModel` runs the
same semantics on whole COMPUTEs at once (NumPy) and advances the cycle counter as
:mod:`sparsa.chain_timing` says; tests compare both with NumPy and the RTL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sparsa.chain_timing import FETCH_CYCLES, chain_latency
from sparsa.config import AcceleratorConfig
from sparsa.errors import FormatError
from sparsa.isa import Opcode, decode
from sparsa.models.reference import wrap
from sparsa.sim.cycle import CycleStats

__all__ = ["ChainState", "ChainInterpreter", "ChainCycleModel", "ChainStats"]


@dataclass
class ChainState:
    """Architectural state: activation buffer ``(act_depth, rows, P, M)``, k-tiles, output bank."""

    buffer: np.ndarray
    bank: np.ndarray
    ktiles: int = 1
    outputs: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def reset(cls, config: AcceleratorConfig) -> "ChainState":
        p = config.token_lanes
        return cls(np.zeros((config.chain.act_depth, config.rows, p, config.group_size), np.int64),
                   np.zeros((config.buffers.accumulator_depth, p * config.cols), np.int64))


def _take(stream: Iterator, what: str):
    try:
        return next(stream)
    except StopIteration:
        raise FormatError(f"the {what} stream ran out: the program needs more beats than were given") from None


def tile_results(config: AcceleratorConfig, words: np.ndarray, values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Chain outputs of weight beats ``values/indices (beats, cols, rows)`` against buffer words
    ``(beats, rows, P, M)``: ``(beats, P, cols)`` (exact int64 sums)."""
    # picked[b, c, i, p] = words[b, i, p, indices[b, c, i]]
    b_idx = np.arange(words.shape[0])[:, None, None]
    i_idx = np.arange(config.rows)[None, None, :]
    picked = words.transpose(0, 1, 3, 2)[b_idx, i_idx, indices]       # (beats, cols, rows, P)
    return np.einsum("bcip,bci->bpc", picked, values)


class ChainInterpreter:
    """Executes chain instruction streams on :class:`ChainState` (no timing)."""

    def __init__(self, config: AcceleratorConfig) -> None:
        self.config = config

    def check_count(self, op: Opcode, count: int, ktiles: int) -> None:
        cfg = self.config
        if op is Opcode.LOAD_A and count > cfg.chain.act_depth:
            raise FormatError(f"LOAD_A count {count} exceeds datapath.chain.act_depth={cfg.chain.act_depth}")
        if op is Opcode.COMPUTE and (count % ktiles or count // ktiles > cfg.buffers.accumulator_depth):
            raise FormatError(f"COMPUTE count {count} is not a multiple of the {ktiles} loaded k-tiles "
                              f"or exceeds buffers.accumulator_depth rows")
        if op is Opcode.DRAIN and count > cfg.buffers.accumulator_depth:
            raise FormatError(f"DRAIN count {count} exceeds buffers.accumulator_depth={cfg.buffers.accumulator_depth}")

    def run(self, words: Iterable[int], weight_beats: Iterable, act_words: Iterable) -> ChainState:
        cfg = self.config
        state = ChainState.reset(cfg)
        weights, acts = iter(weight_beats), iter(act_words)
        for word in words:
            instr = decode(int(word))
            op, n = instr.op, instr.count
            self.check_count(op, n, state.ktiles)
            if op is Opcode.LOAD_A:
                for j in range(n):
                    state.buffer[j] = _take(acts, "activation")
                state.ktiles = n
            elif op is Opcode.COMPUTE:
                kt = state.ktiles
                beats = [_take(weights, "weight") for _ in range(n)]
                vals = np.stack([np.asarray(v, np.int64) for v, _ in beats])
                idxs = np.stack([np.asarray(i, np.int64) for _, i in beats])
                words_ = state.buffer[np.arange(n) % kt]
                res = tile_results(cfg, words_, vals, idxs).reshape(n // kt, kt, -1).sum(axis=1)
                rows = slice(0, n // kt)
                base = state.bank[rows] if instr.accumulate else 0
                state.bank[rows] = wrap(base + res, cfg.accumulator_bits)
            elif op is Opcode.DRAIN:
                state.outputs.extend(state.bank[:n].copy())
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

    def run_program(self, program, a: np.ndarray) -> tuple[np.ndarray, ChainStats]:
        cfg = self.config
        if program.config != cfg:
            raise FormatError("the program was compiled for a different configuration")
        a = program.check_inputs({"A": a})
        grouped = program.grouped_activations(a)
        state = ChainState.reset(cfg)
        stats = ChainStats()
        lat = chain_latency(cfg)
        loads, computes = iter(program.load_steps), iter(program.computes)
        out = []
        for instr in program.instructions:
            stats.instructions += 1
            stats.fetch += FETCH_CYCLES
            stats.cycles += FETCH_CYCLES
            op, n = instr.op, instr.count
            if op is Opcode.LOAD_A:
                block, k0, kk = next(loads)
                state.buffer[:kk] = program.buffer_words(grouped, block, k0, kk)
                state.ktiles = kk
                stats.load += n
                stats.cycles += n
            elif op is Opcode.COMPUTE:
                s = next(computes)
                kt = state.ktiles
                vals = program.tile_values[s.k0: s.k0 + kt, s.n0: s.n0 + s.nn]     # (kt, nn, rows, cols)
                idxs = program.tile_indices[s.k0: s.k0 + kt, s.n0: s.n0 + s.nn]
                words = np.broadcast_to(state.buffer[:kt, None], (kt, s.nn) + state.buffer.shape[1:])
                res = tile_results(cfg, words.reshape((-1,) + state.buffer.shape[1:]),
                                   vals.transpose(0, 1, 3, 2).reshape(-1, cfg.cols, cfg.rows),
                                   idxs.transpose(0, 1, 3, 2).reshape(-1, cfg.cols, cfg.rows))
                res = res.reshape(kt, s.nn, -1).sum(axis=0)
                rows = slice(0, s.nn)
                base = state.bank[rows] if instr.accumulate else 0
                state.bank[rows] = wrap(base + res, cfg.accumulator_bits)
                stats.stream += n
                stats.flush += lat
                stats.cycles += n + lat
                stats.macs += n * cfg.peak_macs_per_cycle
            elif op is Opcode.DRAIN:
                out.append(state.bank[:n].copy())
                stats.drain += n
                stats.cycles += n
            elif op is Opcode.HALT:
                break
        beats = np.concatenate(out) if out else np.zeros((0, program.output_lanes), np.int64)
        return program.collect_outputs(beats), stats
