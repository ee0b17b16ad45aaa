"""ISA interpreter: executes an instruction stream on the architectural state, no timing.

State: the PE weight/index registers (``rows x cols``), the accumulator bank
(``accumulator_depth x cols``, wrapping two's complement) and, with per-token / per-group
activation scales, the scale RAM (``accumulator_depth`` unsigned mantissas): LOAD_S fills it
from the activation stream (low ``mantissa_bits`` bits of each beat) and every COMPUTE result
row ``i`` is multiplied by mantissa ``i`` before it is added to (or overwrites) accumulator
row ``i`` (docs/actscale-hardware.md).  Without the scaling stage LOAD_S is a NOP.

OVP-4 operands are decoded functionally with the NumPy OVP decoder
(:func:`sparsa.formats.ovp.decode_to_exp_int`), as the hardware's border decoders do:
a LOAD_W beat of pair bytes fills two PE rows with ``integer << exponent``, and activation
lanes of 4-bit codes are decoded pair by pair (:func:`decode_lanes`).  Streams are consumed in
order exactly as the hardware consumes them, so a program that pops too few or too many
beats is caught here first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import FormatError
from sparsa.isa import Instruction, Opcode, decode
from sparsa.models.reference import wrap
from sparsa.timing import has_scale_stage

__all__ = ["ArchState", "Interpreter", "decode_lanes", "decode_weight_pairs", "interpret_program", "fetched"]


def fetched(words: Iterable[int]) -> Iterator[Instruction]:
    """Decode instruction words in stream order, as the controller fetches them.

    Raises
    ------
    IllegalInstructionError
        At the first illegal word (an unassigned opcode, or bits set its opcode does not use; naming its index and why); the words
        before it have been yielded (and executed by the caller), none after it.
    """
    for index, word in enumerate(words):
        yield decode(int(word), index=index)


def decode_lanes(config: AcceleratorConfig, lanes: np.ndarray) -> np.ndarray:
    """Activation lanes ``(..., group_size)`` as the PEs see them.

    int8/int4: unchanged.  OVP-4: the entries are 4-bit codes, aligned pairs ``(2j, 2j+1)`` are
    one OVP-4 byte; each element becomes ``integer << exponent`` (int64, int4 units).
    """
    lanes = np.asarray(lanes, dtype=np.int64)
    if not config.activation_is_ovp:
        return lanes
    from sparsa.formats import ovp

    pairs = (lanes[..., 0::2] | (lanes[..., 1::2] << 4)).astype(np.uint8)
    exp, integer = ovp.decode_to_exp_int(pairs, ovp.OVP4_INT4)
    return integer.astype(np.int64) << exp.astype(np.int64)


def decode_weight_pairs(pair_bytes: np.ndarray) -> np.ndarray:
    """OVP-4 pair bytes ``(cols,)`` -> ``(2, cols)`` values (low nibble = first PE row)."""
    from sparsa.formats import ovp

    exp, integer = ovp.decode_to_exp_int(np.asarray(pair_bytes, dtype=np.uint8)[:, None], ovp.OVP4_INT4)
    return (integer.astype(np.int64) << exp.astype(np.int64)).T


@dataclass
class ArchState:
    """Architectural state of the systolic datapath."""

    weights: np.ndarray
    indices: np.ndarray
    acc: np.ndarray
    outputs: list[np.ndarray] = field(default_factory=list)
    halted: bool = False
    scales: "np.ndarray | None" = None

    @classmethod
    def reset(cls, config: AcceleratorConfig) -> "ArchState":
        """State after reset: all registers, accumulators (and scale mantissas) zero."""
        r, c = config.rows, config.cols
        depth = config.buffers.accumulator_depth
        return cls(np.zeros((r, c), np.int64), np.zeros((r, c), np.int64), np.zeros((depth, c), np.int64),
                   scales=np.zeros(depth, np.int64) if has_scale_stage(config) else None)

    def scaled(self, result: np.ndarray) -> np.ndarray:
        """COMPUTE result rows ``(count, cols)`` times the scale mantissas of rows ``0 .. count-1``
        (unchanged without the scaling stage; int64 products wrap like the hardware's, which
        keeps only the low ``accumulator_bits``)."""
        if self.scales is None:
            return result
        return result * self.scales[: result.shape[0], None]


def _take(stream: Iterator, count: int, what: str) -> list:
    beats = []
    for _ in range(count):
        try:
            beats.append(next(stream))
        except StopIteration:
            raise FormatError(f"the {what} stream ran out: the program needs more beats than were given") from None
    return beats


class Interpreter:
    """Executes programs functionally.

    Parameters
    ----------
    config : AcceleratorConfig
        The hardware whose architectural state is modelled.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
        self.config = config

    def array_outputs(self, state: ArchState, lanes: np.ndarray) -> np.ndarray:
        """Column sums for a batch of activation beats ``lanes (beats, rows, group_size)``.

        Each PE selects ``lane[r][index[r, c]]`` (the sparse MUX) and multiplies it by its
        weight; column ``c`` sums its ``rows`` products.
        """
        r = self.config.rows
        sel = lanes[:, np.arange(r)[:, None], state.indices]  # (beats, rows, cols)
        return np.einsum("brc,rc->bc", sel, state.weights, dtype=np.int64)

    def step(self, state: ArchState, instr: Instruction, weight_stream: Iterator, act_stream: Iterator) -> None:
        """Execute one instruction."""
        cfg = self.config
        if instr.op is Opcode.LOAD_W:
            beats = _take(weight_stream, cfg.weight_beats_per_load, "weight")
            if cfg.weight_is_ovp:
                for b, (pair_bytes, indices) in enumerate(beats):
                    state.weights[2 * b : 2 * b + 2] = decode_weight_pairs(pair_bytes)
                    state.indices[2 * b : 2 * b + 2] = indices
            else:
                for row, (values, indices) in enumerate(beats):
                    state.weights[row] = values
                    state.indices[row] = indices
        elif instr.op is Opcode.COMPUTE and instr.count:        # COMPUTE 0: the flush alone, no row written
            self._check_count(instr)
            lanes = decode_lanes(cfg, np.asarray(_take(act_stream, instr.count, "activation"), dtype=np.int64))
            result = state.scaled(self.array_outputs(state, lanes))
            rows = slice(0, instr.count)
            base = state.acc[rows] if instr.accumulate else 0
            state.acc[rows] = wrap(base + result, cfg.accumulator_bits)
        elif instr.op is Opcode.LOAD_S and state.scales is not None:
            self._check_count(instr)
            from sparsa.layout import pack_lanes

            mask = (1 << cfg.act_scale.mantissa_bits) - 1
            for row, beat in enumerate(_take(act_stream, instr.count, "activation")):
                state.scales[row] = pack_lanes(np.asarray(beat, dtype=np.int64), cfg.activation_bits) & mask
        elif instr.op is Opcode.DRAIN:
            self._check_count(instr)
            state.outputs.extend(state.acc[: instr.count].copy())
        elif instr.op is Opcode.HALT:
            state.halted = True

    def _check_count(self, instr: Instruction) -> None:
        depth = self.config.buffers.accumulator_depth
        if instr.count > depth:
            raise FormatError(f"{instr.op.name} count {instr.count} exceeds buffers.accumulator_depth={depth}")

    def run(self, words: Iterable[int], weight_beats: Iterable, activation_beats: Iterable) -> ArchState:
        """Run instruction words until HALT; return the final state (``outputs`` = drained beats).

        An illegal word (unassigned opcode or unused bits set) stops the run with
        :class:`~sparsa.errors.IllegalInstructionError` (:func:`fetched`).
        """
        state = ArchState.reset(self.config)
        wi, ai = iter(weight_beats), iter(activation_beats)
        for instr in fetched(words):
            self.step(state, instr, wi, ai)
            if state.halted:
                break
        else:
            raise FormatError("the program ended without HALT")
        return state


def interpret_program(config: AcceleratorConfig, program, a: np.ndarray, scales: "np.ndarray | None" = None) -> np.ndarray:
    """The ISA rung of the systolic array: :class:`Interpreter` fed with exactly the hardware's beats; returns ``Y``."""
    state = Interpreter(config).run(program.instruction_words(), program.weight_beats(),
                                    program.activation_beats(a, scales))
    return program.collect_outputs(np.asarray(state.outputs, dtype=np.int64).reshape(-1, config.cols))
