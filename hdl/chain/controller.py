"""The chain's instruction sequencer: fetch, LOAD_A, COMPUTE (stream + flush), DRAIN, HALT.

State machine (one instruction at a time, timing contract :mod:`sparsa.chain_timing`)::

    FETCH --LOAD_A n--> LOAD_A (n activation beats -> buffer words 0 .. n-1)   --> FETCH
          --COMPUTE n-> STREAM (n weight beats)  -> FLUSH (F cycles)          --> FETCH
          --DRAIN n---> DRAIN  (n output beats)                               --> FETCH
          --HALT------> DONE   (done = 1, cycle counter frozen)
          --illegal word--> ILLEGAL (done = illegal = 1, cycle counter frozen; an
                                     unassigned opcode or unused bits set,
                                     sparsa.hdl.controller.illegal_word;
                                     docs/isa.md#illegal-instructions)
          --NOP, LOAD_W, LOAD_S, count 0--> FETCH   (COMPUTE 0: FLUSH only)

``F = flush_cycles`` defaults to :func:`sparsa.chain_timing.chain_latency`.  LOAD_A also
latches ``count`` as the k-tiles per output tile (``ktiles``) of the following COMPUTEs and the
segment count ``S`` (field ``segments_m1 = S - 1``) as ``step = Smax / S``; a count the config
does not support runs uncut (the ISA interpreter refuses it).  With ``chain.packing: both`` it
latches the ``outputs`` field as ``pack_outputs`` (output packing for the following
COMPUTEs); other configs ignore the field (the ISA interpreter refuses it).

**Datapath control.**  ``en`` (a weight beat taken in STREAM, or a FLUSH cycle) advances every
datapath register.  A beat taken in STREAM reads activation-buffer word ``ktc`` (its k-tile,
counting ``0 .. ktiles-1`` round) and starts a **tag** (``valid``, ``first``: ``ktc == 0``,
``last``: ``ktc == ktiles - 1``) down a line of ``chain_latency`` registers that advance with
``en``, so the tag leaves the line with the beat's tap results.  There it drives the tile
accumulators (``bank.acc_en = en & valid``, ``bank.first``) and, on a tile's last k-tile, the
bank write (``bank.wen``) of output row ``row`` (0, 1, ... per COMPUTE).  ``bank.raddr``
addresses the row the next cycle writes (for ``accumulate``), or in DRAIN the row of the
next beat: beat ``b`` is bank row ``b // S``, slot ``(b % S + 1) * step - 1`` (``bank.slot``).
``cut[u]``: tap ``u`` ends a segment at the latched ``S`` (``(u + 1) % step == 0``).

Every ready/valid output depends on the state only (never on the partner's valid/ready).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_layout import weight_values
from sparsa.chain_timing import chain_latency
from sparsa.config import AcceleratorConfig
from sparsa.hdl.accumulator import address_bits
from sparsa.hdl.chain.act_buffer import act_address_bits, act_control_signature
from sparsa.hdl.chain.layouts import chain_tag_layout, check_chain_config
from sparsa.hdl.chain.output_bank import bank_control_signature
from sparsa.hdl.controller import COUNT_FIELD_BITS, CYCLE_COUNTER_BITS, illegal_word
from sparsa.hdl.layouts import instruction_layout
from sparsa.isa import Opcode

__all__ = ["ChainController", "ChainState"]


class ChainState(enum.Enum, shape=3):
    """Controller states."""

    FETCH = 0
    LOAD_A = 1
    STREAM = 2
    FLUSH = 3
    DRAIN = 4
    DONE = 5
    ILLEGAL = 6


class ChainController(wiring.Component):
    """Instruction sequencer, cycle counter and datapath control of the DSP chain.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.
    flush_cycles : int, optional
        Override of the COMPUTE flush length, for tests only (default:
        :func:`sparsa.chain_timing.chain_latency`).

    Attributes
    ----------
    instr : In(stream.Signature(instruction layout))
        Instruction words (``ready`` in FETCH).
    weights_valid, weights_ready : In(1), Out(1)
        Handshake of the weight stream (``ready`` in STREAM).
    acts_valid, acts_ready : In(1), Out(1)
        Handshake of the activation stream (``ready`` in LOAD_A).
    results_valid, results_ready : Out(1), In(1)
        Handshake of the output stream (``valid`` in DRAIN).
    done : Out(1)
        High once HALT (or an illegal opcode) has been fetched.
    illegal : Out(1)
        High once an illegal instruction word (unassigned opcode, or unused bits set) has been fetched (the controller stopped on it).
    cycles : Out(32)
        Cycles from reset release up to and including the HALT (or illegal-opcode) fetch.
    state : Out(ChainState)
        Controller state.
    en : Out(1)
        Advance the datapath: a weight beat taken, or a FLUSH cycle.
    cut : Out(chain.max_segments)
        Bit ``u``: tap ``u`` ends a segment at the latched segment count (the last always does).
    act : Out(:func:`~sparsa.hdl.chain.act_buffer.act_control_signature`)
        Activation-buffer control: LOAD_A writes, the skewed reads' word and enable.
    bank : Out(:func:`~sparsa.hdl.chain.output_bank.bank_control_signature`)
        Tile-accumulator and output-bank control.
    pack_outputs : Out(1)
        Only with ``chain.packing: both``: the last LOAD_A's ``outputs`` field.
    """

    def __init__(self, config: AcceleratorConfig, *, flush_cycles: "int | None" = None) -> None:
        check_chain_config(self, config)
        if flush_cycles is None:
            flush_cycles = chain_latency(config)
        if not isinstance(flush_cycles, int) or isinstance(flush_cycles, bool) or flush_cycles < 1:
            self._MustUse__silence = True
            raise ValueError(f"flush_cycles must be a positive integer, not {flush_cycles!r}")
        self._config = config
        self._flush_cycles = flush_cycles
        members = {
            "instr": In(stream.Signature(instruction_layout())),
            "weights_valid": In(1),
            "weights_ready": Out(1),
            "acts_valid": In(1),
            "acts_ready": Out(1),
            "results_valid": Out(1),
            "results_ready": In(1),
            "done": Out(1),
            "illegal": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "state": Out(ChainState),
            "en": Out(1),
            "cut": Out(config.chain.max_segments),
            "act": Out(act_control_signature(config)),
            "bank": Out(bank_control_signature(config)),
        }
        if weight_values(config) == 2:
            members["pack_outputs"] = Out(1, init=0)
        super().__init__(members)

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the controller was built for."""
        return self._config

    @property
    def flush_cycles(self) -> int:
        """Cycles of a COMPUTE's FLUSH state."""
        return self._flush_cycles

    @property
    def latency(self) -> int:
        """Registers of the tag line: :func:`sparsa.chain_timing.chain_latency` (not ``flush_cycles``)."""
        return chain_latency(self._config)

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        lat = chain_latency(cfg)
        bank_abits = address_bits(cfg)
        act_abits = act_address_bits(cfg)
        smax = cfg.chain.max_segments
        steps = [smax // seg for seg in cfg.chain.supported_segments()]
        bank, act = self.bank, self.act

        state = Signal(ChainState, init=ChainState.FETCH)
        count = Signal(COUNT_FIELD_BITS)
        beat = Signal(COUNT_FIELD_BITS)
        ktiles = Signal(COUNT_FIELD_BITS, init=1)
        ktc = Signal(COUNT_FIELD_BITS)           # k-tile of the next weight beat
        row = Signal(bank_abits + 1)             # next output-bank row to write
        accumulate = Signal()
        step = Signal(range(smax + 1), init=smax)   # smax / S, latched by LOAD_A
        drow = Signal(bank_abits + 1)               # DRAIN: bank row of the current beat
        # DRAIN: bank slot (tap) of the current beat (no register when there is one slot)
        dseg = Signal(range(smax)) if smax > 1 else None
        last_slot = dseg == smax - 1 if smax > 1 else Const(1)
        m.d.comb += self.state.eq(state)
        stopped = (state == ChainState.DONE) | (state == ChainState.ILLEGAL)
        with m.If(~stopped):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += [self.done.eq(stopped), self.illegal.eq(state == ChainState.ILLEGAL)]

        in_stream = state == ChainState.STREAM
        in_flush = state == ChainState.FLUSH
        take = in_stream & self.weights_valid
        en = self.en
        m.d.comb += [en.eq(take | in_flush), self.weights_ready.eq(in_stream)]

        # Activation buffer: LOAD_A writes word `beat`; the beat taken reads its k-tile's word.
        m.d.comb += [
            act.wen.eq((state == ChainState.LOAD_A) & self.acts_valid),
            act.waddr.eq(beat[:act_abits]),
            act.en.eq(en),
            act.raddr.eq(ktc[:act_abits]),
        ]

        # Tag line: a beat's tag reaches the bank with its tap results.
        tag0 = Signal(chain_tag_layout(), name="tag0")
        m.d.comb += [tag0.valid.eq(take), tag0.first.eq(ktc == 0), tag0.last.eq(ktc == ktiles - 1)]
        tags = [tag0]
        for k in range(lat):
            reg = Signal(chain_tag_layout(), name=f"tag{k + 1}")
            with m.If(en):
                m.d.sync += reg.eq(tags[-1])
            tags.append(reg)
        tag = tags[lat]

        # Cut control: cut[u]: tap u ends a segment at the latched S (the last tap always does).
        for u in range(smax):
            hit = [st for st in steps if (u + 1) % st == 0]
            if u == smax - 1:
                term = Const(1)
            elif not hit:
                term = Const(0)
            else:
                term = Const(0)
                for st in hit:
                    term = term | (step == st)
            m.d.comb += self.cut[u].eq(term)

        # Tile accumulators and bank write.
        wen = Signal()
        m.d.comb += [
            wen.eq(en & tag.valid & tag.last),
            bank.acc_en.eq(en & tag.valid),
            bank.first.eq(tag.first),
            bank.wen.eq(wen),
            bank.waddr.eq(row[:bank_abits]),
            bank.accumulate.eq(accumulate),
            bank.raddr.eq(0),
        ]
        if dseg is not None:
            m.d.comb += bank.slot.eq(dseg)
        with m.If(wen):
            m.d.sync += row.eq(row + 1)

        # Sequencing.
        instr = self.instr.payload
        with m.Switch(state):
            with m.Case(ChainState.FETCH):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += [count.eq(instr.count), accumulate.eq(instr.accumulate), beat.eq(0),
                                 row.eq(0), ktc.eq(0), drow.eq(0)]
                    if dseg is not None:
                        m.d.sync += dseg.eq(step - 1)
                    with m.If(illegal_word(m, instr)):
                        m.d.sync += state.eq(ChainState.ILLEGAL)
                    with m.Else(), m.Switch(instr.opcode):
                        with m.Case(Opcode.LOAD_A):
                            with m.If(instr.count != 0):
                                m.d.sync += [state.eq(ChainState.LOAD_A), ktiles.eq(instr.count)]
                            # Segment count S (field S - 1): step = smax / S; a count the config
                            # does not support runs uncut (the ISA interpreter refuses it).
                            with m.Switch(instr.segments_m1):
                                for seg in cfg.chain.supported_segments():
                                    with m.Case(seg - 1):
                                        m.d.sync += step.eq(smax // seg)
                                with m.Default():
                                    m.d.sync += step.eq(smax)
                            if weight_values(cfg) == 2:
                                m.d.sync += self.pack_outputs.eq(instr.outputs)
                        with m.Case(Opcode.COMPUTE):
                            with m.If(instr.count == 0):
                                m.d.sync += state.eq(ChainState.FLUSH)
                            with m.Else():
                                m.d.sync += state.eq(ChainState.STREAM)
                        with m.Case(Opcode.DRAIN):
                            with m.If(instr.count != 0):
                                m.d.sync += state.eq(ChainState.DRAIN)
                        with m.Case(Opcode.HALT):
                            m.d.sync += state.eq(ChainState.DONE)

            with m.Case(ChainState.LOAD_A):
                m.d.comb += self.acts_ready.eq(1)
                with m.If(self.acts_valid):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == count - 1):
                        m.d.sync += state.eq(ChainState.FETCH)

            with m.Case(ChainState.STREAM, ChainState.FLUSH):
                m.d.comb += bank.raddr.eq(row[:bank_abits] + wen)
                with m.If(take):
                    m.d.sync += [beat.eq(beat + 1), ktc.eq(Mux(ktc == ktiles - 1, 0, ktc + 1))]
                    with m.If(beat == count - 1):
                        m.d.sync += [beat.eq(0), state.eq(ChainState.FLUSH)]
                with m.If(in_flush):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == self._flush_cycles - 1):
                        m.d.sync += state.eq(ChainState.FETCH)

            with m.Case(ChainState.DRAIN):
                # Beat b of the DRAIN: bank row b // S, slot (b % S + 1) * step - 1; the read
                # port is addressed one beat ahead (the same row again until its last slot).
                m.d.comb += self.results_valid.eq(1)
                with m.If(self.results_ready):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == count - 1):
                        m.d.sync += state.eq(ChainState.FETCH)
                    with m.Elif(last_slot):
                        m.d.sync += drow.eq(drow + 1)
                        if dseg is not None:
                            m.d.sync += dseg.eq(step - 1)
                        m.d.comb += bank.raddr.eq(drow + 1)
                    with m.Else():
                        if dseg is not None:
                            m.d.sync += dseg.eq(dseg + step)
                        m.d.comb += bank.raddr.eq(drow)
                with m.Else():
                    m.d.comb += bank.raddr.eq(drow)
        return m
