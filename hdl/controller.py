"""The instruction sequencer: fetch, LOAD_W, COMPUTE (stream + flush), DRAIN, HALT.

State machine (one instruction at a time, see :mod:`sparsa.timing`)::

    FETCH --LOAD_W--> LOAD_W  (rows weight beats; rows/2 with OVP-4)     --> FETCH
          --COMPUTE-> STREAM  (count activation beats) -> FLUSH (F cycles) --> FETCH
          --DRAIN---> DRAIN   (count output beats)                        --> FETCH
          --LOAD_S--> LOAD_S  (count scale beats; scaling stage only)     --> FETCH
          --HALT----> DONE    (done = 1, cycle counter frozen)
          --illegal word--> ILLEGAL (done = illegal = 1, cycle counter frozen)
          --NOP, or an opcode the datapath lacks (LOAD_A; LOAD_S without scales)--> FETCH

LOAD_S exists only with per-token / per-group activation scales (the accumulator's scaling
stage, ``act_scale``): it pops ``count`` beats from the activation stream and writes beat ``i``
to scale-RAM row ``i`` (``scale_wen`` / ``scale_waddr``; the data is the beat's low bits,
wired in the top).  Without the scaling stage it is a NOP like any opcode the datapath lacks.
An illegal word - an opcode that :class:`sparsa.isa.Opcode` does not assign, or an assigned one
with a bit set that it does not use (:func:`sparsa.isa.unused_mask`: reserved bits,
``accumulate`` outside COMPUTE, ...; :func:`illegal_word`) - stops the controller in ILLEGAL
after its fetch cycle (docs/isa.md#illegal-instructions): ``done`` and ``illegal`` rise, the
cycle counter freezes, no further word or beat is taken.

``F = flush_cycles`` defaults to :func:`sparsa.timing.compute_flush_cycles`.  A COMPUTE with
``count = 0`` runs only the flush, a DRAIN with ``count = 0`` is a NOP - both as
:func:`sparsa.timing.instruction_cycles` counts them.  Counts above
``buffers.accumulator_depth`` are outside the contract (the compiler never emits them).

The array's global enable is ``acts.valid & acts.ready`` in STREAM and ``1`` in FLUSH, else
0, **registered** (:data:`sparsa.timing.ARRAY_INPUT_LATENCY`): the array side (enable, valid
tag, flush flag, and in the top the activation beat) runs one cycle behind the stream, so the
enable that fans out to every PE register is a flip-flop output.  It also advances the
accumulator bank's write stage.  A result row leaving the array
(``array_valid_out``) in an enabled cycle is a write request (``acc_wen``) to the bank, which
writes the RAM in the next enabled cycle; the write row counts up from 0 for each COMPUTE.
``F = rows + cols + 3`` covers the input register, the array (``rows + cols + 1``) and that
write stage (``+ 1`` for the scaling stage), so the last RAM write of a COMPUTE happens in its
last flush cycle.

Every ready/valid output depends on the state only (never on the partner's valid/ready).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.accumulator import address_bits
from sparsa.hdl.layouts import check_config, instruction_layout
from sparsa.isa import FIELDS, Opcode, is_legal_opcode, unused_mask
from sparsa.timing import compute_flush_cycles, has_scale_stage, load_weights_cycles

__all__ = ["Controller", "State", "CYCLE_COUNTER_BITS", "COUNT_FIELD_BITS", "UNASSIGNED_OPCODES", "illegal_word",
           "register_bits"]

#: Width of the ``cycles`` counter (wraps after 2**32 cycles).
CYCLE_COUNTER_BITS = 32

#: Width of the instruction's count field (the latched count and the beat counter).
COUNT_FIELD_BITS = {f.name: f.width for f in FIELDS}["count"]

#: Opcode values :class:`sparsa.isa.Opcode` does not assign: fetching one stops the controller
#: (shared with the DSP-chain controller).
UNASSIGNED_OPCODES = tuple(v for v in range(1 << {f.name: f.width for f in FIELDS}["opcode"])
                           if not is_legal_opcode(v))


def illegal_word(m: Module, instr: object) -> Value:
    """A 1-bit signal that is high when the instruction word ``instr`` is illegal.

    Illegal: an opcode in :data:`UNASSIGNED_OPCODES`, or an assigned opcode with a bit of its
    :func:`sparsa.isa.unused_mask` set - the words :func:`sparsa.isa.decode` refuses with
    :class:`~sparsa.errors.IllegalInstructionError` (shared with the DSP-chain controller; the
    masks come from :data:`sparsa.isa.OPERANDS`, not from this module).

    Parameters
    ----------
    m : Module
        The module the combinational check is added to.
    instr : data.View
        The instruction word, a view of :func:`sparsa.hdl.layouts.instruction_layout`.
    """
    if not isinstance(m, Module):
        raise TypeError(f"m must be an amaranth Module, not {m!r}")
    raw = Value.cast(instr)
    if len(raw) != sum(f.width for f in FIELDS):
        raise TypeError(f"instr must be a {sum(f.width for f in FIELDS)}-bit instruction word, not {instr!r}")
    bad = Signal(name="illegal_word")
    with m.Switch(instr.opcode):
        for op in Opcode:
            with m.Case(op):
                m.d.comb += bad.eq((raw & unused_mask(op)) != 0)
        with m.Default():                        # UNASSIGNED_OPCODES
            m.d.comb += bad.eq(1)
    return bad


class State(enum.Enum, shape=3):
    """Controller states (the encoding is an implementation detail)."""

    FETCH = 0
    LOAD_W = 1
    STREAM = 2
    FLUSH = 3
    DRAIN = 4
    DONE = 5
    LOAD_S = 6
    ILLEGAL = 7


def register_bits(config: AcceleratorConfig) -> int:
    """Flip-flops of the controller: state, count, beat and beat + 1, write row and row + 1,
    accumulate flag, cycles and the three array-control registers (enable, valid tag, flush)."""
    check_config(config)
    return State.as_shape().width + 3 * COUNT_FIELD_BITS + 2 * config.count_bits + 1 + CYCLE_COUNTER_BITS + 3


class Controller(wiring.Component):
    """Decodes instruction words and sequences the array, the accumulator and the streams.

    Parameters
    ----------
    config : AcceleratorConfig
        Geometry (``rows``, ``cols``) and ``buffers.accumulator_depth``.
    flush_cycles : int, optional
        Length of COMPUTE's flush phase; defaults to
        :func:`sparsa.timing.compute_flush_cycles` (the contract).  Only tests pass another
        value (to show that one cycle less loses the last result row).

    Attributes
    ----------
    instr : In(stream.Signature(instruction layout))
        Instruction words; ``ready`` only in FETCH.
    weights_valid, weights_ready : In(1), Out(1)
        Handshake of the weight stream (``ready`` in LOAD_W).
    acts_valid, acts_ready : In(1), Out(1)
        Handshake of the activation stream (``ready`` in STREAM).
    results_valid, results_ready : Out(1), In(1)
        Handshake of the result stream (``valid`` in DRAIN).
    load, load_row : Out(1), Out(range(rows))
        Weight-register write strobe and PE row for the array (the beat number, i.e. the PE
        row pair, with OVP-4 weights).
    array_en, array_valid_in, array_flush : Out(1)
        Global array enable, tag of the beat entering the array, and "feed zero lanes".
    array_valid_out : In(1)
        Tag of the result row leaving the array.
    acc_raddr, acc_wen, acc_waddr, acc_accumulate : Out
        Accumulator bank control (``acc_raddr`` is the row needed in the next cycle; ``acc_wen``
        is a write request, performed by the bank in the next enabled cycle).
    scale_wen, scale_waddr : Out(1), Out(address_bits)
        Scaling stage only: LOAD_S writes the accepted activation beat to scale-RAM row
        ``scale_waddr``.
    done : Out(1)
        High once HALT (or an illegal opcode) has been fetched.
    illegal : Out(1)
        High once an illegal instruction word (unassigned opcode, or unused bits set) has been fetched (the controller stopped on it).
    cycles : Out(32)
        Cycles from reset release up to and including the HALT (or illegal-opcode) fetch.
    state : Out(State)
        Current state (for tests and debugging).
    """

    def __init__(self, config: AcceleratorConfig, *, flush_cycles: "int | None" = None) -> None:
        check_config(config)
        if flush_cycles is None:
            flush_cycles = compute_flush_cycles(config)
        if not isinstance(flush_cycles, int) or isinstance(flush_cycles, bool) or flush_cycles < 1:
            raise ValueError(f"flush_cycles must be a positive integer, not {flush_cycles!r}")
        self._config = config
        self._flush_cycles = flush_cycles
        abits = address_bits(config)
        members = {
            "instr": In(stream.Signature(instruction_layout())),
            "weights_valid": In(1),
            "weights_ready": Out(1),
            "acts_valid": In(1),
            "acts_ready": Out(1),
            "results_valid": Out(1),
            "results_ready": In(1),
            "load": Out(1),
            "load_row": Out(range(config.rows)),
            "array_en": Out(1),
            "array_valid_in": Out(1),
            "array_flush": Out(1),
            "array_valid_out": In(1),
            "acc_raddr": Out(abits),
            "acc_wen": Out(1),
            "acc_waddr": Out(abits),
            "acc_accumulate": Out(1),
            "done": Out(1),
            "illegal": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "state": Out(State),
        }
        if has_scale_stage(config):
            members.update({"scale_wen": Out(1), "scale_waddr": Out(abits)})
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the controller was built for."""
        return self._config

    @property
    def flush_cycles(self) -> int:
        """Length of the COMPUTE flush phase in cycles."""
        return self._flush_cycles

    def elaborate(self, platform) -> Module:
        cfg = self._config
        depth = cfg.buffers.accumulator_depth
        abits = address_bits(cfg)
        m = Module()

        state = Signal(State, init=State.FETCH)
        count = Signal(COUNT_FIELD_BITS)     # latched instruction count
        beat = Signal(COUNT_FIELD_BITS)      # transfers (LOAD_W, STREAM, DRAIN) or flush cycles
        row = Signal(cfg.count_bits)         # next accumulator row to write (COMPUTE)
        # ``beat + 1`` and ``row + 1``, kept in registers: the accumulator's read address is then
        # a multiplexer of flip-flops, with no adder (carry chain) in front of the block RAM's
        # address pins - with the adders that was the critical path of the 8x8 on ECP5
        # (10.17 ns, docs/fpga.md step 7).
        beat_next = Signal(COUNT_FIELD_BITS, init=1)
        row_next = Signal(cfg.count_bits, init=1)
        accumulate = Signal()
        m.d.comb += self.state.eq(state)

        def row_addr(value):
            # Rows past the bank never occur within the contract; keep the read address in
            # range anyway (an out-of-range read is undefined in Verilog).
            if depth == 1 << abits:
                return value[:abits]
            return Mux(value < depth, value[:abits], 0)

        # Cycle counter: every cycle until (and including) the one that fetches HALT (or an
        # illegal opcode).
        stopped = (state == State.DONE) | (state == State.ILLEGAL)
        with m.If(~stopped):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += [self.done.eq(stopped), self.illegal.eq(state == State.ILLEGAL)]

        # Array enable and accumulator write path (active in STREAM and FLUSH).
        in_stream = state == State.STREAM
        in_flush = state == State.FLUSH
        acts_ready = (in_stream | (state == State.LOAD_S)) if has_scale_stage(cfg) else in_stream
        # The array side runs ARRAY_INPUT_LATENCY = 1 cycle behind the stream: the enable, the
        # valid tag and the flush flag are registered here (the top registers the accepted
        # activation beat), so the enable's fan-out to every PE starts at a flip-flop.
        advance = Signal()                   # controller side: a beat accepted or a flush cycle
        array_en = Signal()
        array_valid_in = Signal()
        array_flush = Signal()
        m.d.comb += advance.eq((in_stream & self.acts_valid) | in_flush)
        m.d.sync += [
            array_en.eq(advance),
            array_valid_in.eq(in_stream & self.acts_valid),
            array_flush.eq(in_flush),
        ]
        m.d.comb += [
            self.acts_ready.eq(acts_ready),
            self.array_en.eq(array_en),
            self.array_valid_in.eq(array_valid_in),
            self.array_flush.eq(array_flush),
            self.acc_wen.eq(self.array_en & self.array_valid_out),
            self.acc_waddr.eq(row_addr(row)),
            self.acc_accumulate.eq(accumulate),
        ]
        with m.If(self.acc_wen):
            m.d.sync += [row.eq(row + 1), row_next.eq(row_next + 1)]

        # Read address: the row the next cycle needs (row 0 by default, so a DRAIN or a
        # COMPUTE starting after FETCH finds row 0 already read).
        m.d.comb += self.acc_raddr.eq(0)

        instr = self.instr.payload
        with m.Switch(state):
            with m.Case(State.FETCH):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += [
                        count.eq(instr.count),
                        accumulate.eq(instr.accumulate),
                        beat.eq(0),
                        beat_next.eq(1),
                        row.eq(0),
                        row_next.eq(1),
                    ]
                    with m.If(illegal_word(m, instr)):
                        m.d.sync += state.eq(State.ILLEGAL)
                    with m.Else(), m.Switch(instr.opcode):
                        with m.Case(Opcode.LOAD_W):
                            m.d.sync += state.eq(State.LOAD_W)
                        with m.Case(Opcode.COMPUTE):
                            with m.If(instr.count == 0):
                                m.d.sync += state.eq(State.FLUSH)
                            with m.Else():
                                m.d.sync += state.eq(State.STREAM)
                        with m.Case(Opcode.DRAIN):
                            with m.If(instr.count != 0):
                                m.d.sync += state.eq(State.DRAIN)
                        if has_scale_stage(cfg):
                            with m.Case(Opcode.LOAD_S):
                                with m.If(instr.count != 0):
                                    m.d.sync += state.eq(State.LOAD_S)
                        with m.Case(Opcode.HALT):
                            m.d.sync += state.eq(State.DONE)
                        # NOP and opcodes this datapath lacks: stay in FETCH.

            with m.Case(State.LOAD_W):
                m.d.comb += [
                    self.weights_ready.eq(1),
                    self.load.eq(self.weights_valid),
                    self.load_row.eq(beat),
                ]
                with m.If(self.weights_valid):
                    m.d.sync += [beat.eq(beat + 1), beat_next.eq(beat_next + 1)]
                    with m.If(beat == load_weights_cycles(cfg) - 1):
                        m.d.sync += state.eq(State.FETCH)

            with m.Case(State.STREAM, State.FLUSH):
                m.d.comb += self.acc_raddr.eq(row_addr(Mux(self.acc_wen, row_next, row)))
                with m.If(advance):
                    m.d.sync += [beat.eq(beat + 1), beat_next.eq(beat_next + 1)]
                with m.If(in_stream & self.acts_valid & (beat == count - 1)):
                    m.d.sync += [beat.eq(0), beat_next.eq(1), state.eq(State.FLUSH)]
                with m.If(in_flush & (beat == self._flush_cycles - 1)):
                    m.d.sync += state.eq(State.FETCH)

            with m.Case(State.DRAIN):
                m.d.comb += self.results_valid.eq(1)
                # The next beat's row, also after the last beat (FETCH reads row 0 anyway and
                # nothing uses the row read in the FETCH cycle): keeps the instruction count
                # compare (a carry chain) out of the block-RAM address path - with it, this was
                # the critical path of the 8x8 on ECP5 (12.4 ns, docs/fpga.md).
                m.d.comb += self.acc_raddr.eq(row_addr(Mux(self.results_ready, beat_next, beat)))
                with m.If(self.results_ready):
                    m.d.sync += [beat.eq(beat + 1), beat_next.eq(beat_next + 1)]
                    with m.If(beat == count - 1):
                        m.d.sync += state.eq(State.FETCH)

            if has_scale_stage(cfg):
                with m.Case(State.LOAD_S):
                    m.d.comb += [
                        self.scale_wen.eq(self.acts_valid),
                        self.scale_waddr.eq(row_addr(beat)),
                    ]
                    with m.If(self.acts_valid):
                        m.d.sync += [beat.eq(beat + 1), beat_next.eq(beat_next + 1)]
                        with m.If(beat == count - 1):
                            m.d.sync += state.eq(State.FETCH)

            with m.Case(State.DONE, State.ILLEGAL):
                pass
        return m
