"""The sparse DSP-chain accelerator (FlightLLM-style second datapath), docs/chain.md.

::

    instr ---> ChainController ------------------------------------------> done, cycles
    acts ----> activation buffer (one RAM per slice lane, LOAD_A writes)
                    | read (address skewed per slice)
    weights -> [skew] -> chain c: group 0 [MUX+MUL -> MUL ...] -> reduction node 0 --link--> ... node G-1
                                                                                       |
                                                                    tile accumulator -> output bank -> results

``cols`` chains (vector units) of ``rows`` MAC slices, in DSP groups of ``chain.group``
slices.  Each slice has a sparse MUX that picks 1 of ``group_size`` activations of its
buffer lane by the weight's N:M index, and one multiplier.  With ``chain.packing`` the
multiplier is one wide (27 x 18 on a DSP48E2) product ``w * ((a1 << 18) + a0)`` of the
weight and two tokens' activations; the group cascade sums the packed products, and the
group's reduction node splits the 48-bit group sum into its two lanes (LSP = low 18 bits
sign-extended, MSP = the rest plus the LSP's sign bit), which is exact because a group sums
at most :meth:`~sparsa.config.AcceleratorConfig.max_packed_group` products (proof in
docs/chain.md).  The reduction node adds its group's lanes to the previous node's output
(the inter-group link) and registers them; the last node's output is a k-tile's partial
dot product per token, summed over the tile's k-tiles and written to the output bank.

Cascade cutting ("Cutting the cascade" in docs/chain.md): with ``Smax = chain.max_segments``
the reduction nodes ``j = (u + 1) * groups / Smax - 1`` (``u = 0 .. Smax-1``) are *taps*.
LOAD_A latches the run-time segment count ``S`` (a divisor of ``Smax``) as ``step = Smax / S``;
tap ``u`` cuts the cascade (the next node's link input is 0) when ``(u + 1) % step == 0``.
Every tap's output is delayed by ``groups - 1 - j`` registers so that all taps reach their
tile accumulators with the last node (the latency is unchanged); an output-bank row holds
``Smax`` slots of ``P * cols`` accumulators (slot ``u`` = tap ``u``), written in one cycle;
DRAIN pushes the ``S`` cut slots ``step - 1, 2 * step - 1, ...`` of each row as ``S`` beats.

Timing is :mod:`sparsa.chain_timing`.  Stream rules as the systolic top: every valid/ready
the accelerator drives depends on its state only, ``results.payload`` is the registered
output of the bank's synchronous read port.
"""

from __future__ import annotations

from collections.abc import Iterable

from amaranth.hdl import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.chain_timing import chain_latency
from sparsa.config import PACK_SHIFT, AcceleratorConfig
from sparsa.errors import UnsupportedError
from sparsa.hdl.layouts import check_config, instruction_layout
from sparsa.isa import FIELDS, Opcode

__all__ = ["SparseChainAccelerator", "ChainState", "chain_weight_lane_layout", "chain_weight_beat_layout",
           "chain_act_word_layout", "chain_act_beat_layout", "chain_output_beat_layout", "chain_bank_row_layout",
           "PACKED_SUM_BITS"]

CYCLE_COUNTER_BITS = 32
COUNT_BITS = {f.name: f.width for f in FIELDS}["count"]
#: Width of the packed group sum (the DSP48E2's P register).
PACKED_SUM_BITS = 48


def _any(terms: "Iterable[Value]") -> Value:
    """OR of 1-bit terms (``Const(0)`` for none)."""
    out = Const(0)
    for t in terms:
        out = out | t
    return out


class ChainState(enum.Enum, shape=3):
    """Controller states."""

    FETCH = 0
    LOAD_A = 1
    STREAM = 2
    FLUSH = 3
    DRAIN = 4
    DONE = 5


def chain_weight_lane_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One slice's weight: ``value`` (signed) at the LSBs, N:M ``index`` above."""
    return data.StructLayout({"value": signed(config.weight_bits), "index": unsigned(config.index_bits)})


def chain_weight_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """``cols`` chains x ``rows`` slices of weight lanes (lane ``c * rows + i``)."""
    return data.ArrayLayout(data.ArrayLayout(chain_weight_lane_layout(config), config.rows), config.cols)


def chain_act_word_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One slice lane of an activation-buffer word: ``P`` tokens x ``group_size`` activations."""
    return data.ArrayLayout(data.ArrayLayout(signed(config.activation_bits), config.group_size),
                            config.token_lanes)


def chain_act_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One LOAD_A beat: ``rows`` slice lanes."""
    return data.ArrayLayout(chain_act_word_layout(config), config.rows)


def chain_output_beat_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One output beat: ``P * cols`` accumulators, lane ``p * cols + c``."""
    return data.ArrayLayout(signed(config.accumulator_bits), config.token_lanes * config.cols)


def chain_bank_row_layout(config: AcceleratorConfig) -> data.ArrayLayout:
    """One output-bank row: ``chain.max_segments`` slots (one per tap) of an output beat."""
    return data.ArrayLayout(chain_output_beat_layout(config), config.chain.max_segments)


class SparseChainAccelerator(wiring.Component):
    """N:M-sparse int8/int4 GEMM/GEMV accelerator built from sparse DSP chains.

    Parameters
    ----------
    config : AcceleratorConfig
        ``datapath.kind`` must be ``'dsp_chain'``.
    flush_cycles : int, optional
        Override of the COMPUTE flush length, for tests only (default: the timing contract).

    Attributes
    ----------
    instr, weights, acts, results : streams
        Instruction words; weight beats (COMPUTE); activation-buffer words (LOAD_A); output rows (DRAIN).
    done : Out(1)
        High once HALT has been fetched.
    cycles : Out(32)
        Cycles from reset release up to and including the HALT fetch.
    state : Out(ChainState)
        Controller state (tests, debugging).
    """

    def __init__(self, config: AcceleratorConfig, *, flush_cycles: "int | None" = None) -> None:
        check_config(config)
        if config.datapath.kind != "dsp_chain":
            self._MustUse__silence = True     # no UnusedElaboratable warning for a refused design
            raise UnsupportedError(f"SparseChainAccelerator needs datapath.kind='dsp_chain', "
                                   f"not {config.datapath.kind!r}")
        config.require_supported()
        if flush_cycles is None:
            flush_cycles = chain_latency(config)
        if not isinstance(flush_cycles, int) or isinstance(flush_cycles, bool) or flush_cycles < 1:
            raise ValueError(f"flush_cycles must be a positive integer, not {flush_cycles!r}")
        self._config = config
        self._flush_cycles = flush_cycles
        super().__init__({
            "instr": In(stream.Signature(instruction_layout())),
            "weights": In(stream.Signature(chain_weight_beat_layout(config))),
            "acts": In(stream.Signature(chain_act_beat_layout(config))),
            "results": Out(stream.Signature(chain_output_beat_layout(config))),
            "done": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "state": Out(ChainState),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def controller(self):
        """Compatibility with the stream harness (``dut.controller.state``)."""
        return self

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        rows, cols, group = cfg.rows, cfg.cols, cfg.chain.group
        groups, tokens = cfg.chain_groups, cfg.token_lanes
        acc_bits = cfg.accumulator_bits
        depth = cfg.buffers.accumulator_depth
        act_depth = cfg.chain.act_depth
        lat = chain_latency(cfg)
        bank_abits = max(1, (depth - 1).bit_length())
        smax = cfg.chain.max_segments
        gps = groups // smax                     # DSP groups per tap (per segment at S = smax)
        steps = [smax // seg for seg in cfg.chain.supported_segments()]

        # ------------------------------------------------------------ controller
        state = Signal(ChainState, init=ChainState.FETCH)
        count = Signal(COUNT_BITS)
        beat = Signal(COUNT_BITS)
        ktiles = Signal(COUNT_BITS, init=1)
        ktc = Signal(COUNT_BITS)                 # k-tile of the next weight beat
        row = Signal(bank_abits + 1)             # next output-bank row to write
        accumulate = Signal()
        step = Signal(range(smax + 1), init=smax)   # smax / S, latched by LOAD_A
        drow = Signal(bank_abits + 1)               # DRAIN: bank row of the current beat
        dseg = Signal(range(smax))                  # DRAIN: bank slot (tap) of the current beat
        m.d.comb += self.state.eq(state)
        with m.If(state != ChainState.DONE):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += self.done.eq(state == ChainState.DONE)

        in_stream = state == ChainState.STREAM
        in_flush = state == ChainState.FLUSH
        take = in_stream & self.weights.valid
        en = Signal()
        m.d.comb += [en.eq(take | in_flush), self.weights.ready.eq(in_stream)]

        # ------------------------------------------------------------ output bank
        m.submodules.bank = bank = memory.Memory(shape=chain_bank_row_layout(cfg), depth=depth, init=[])
        bank_r = bank.read_port(domain="sync", transparent_for=())
        bank_w = bank.write_port(domain="sync")
        m.d.comb += [bank_r.en.eq(1), self.results.payload.eq(bank_r.data[dseg] if smax > 1 else bank_r.data[0]),
                     bank_r.addr.eq(0)]

        # ------------------------------------------------------------ activation buffer
        act_abits = max(1, (act_depth - 1).bit_length())
        reads = []
        for i in range(rows):
            mem = memory.Memory(shape=chain_act_word_layout(cfg), depth=act_depth, init=[])
            m.submodules[f"act_buf{i}"] = mem
            wp = mem.write_port(domain="sync")
            rp = mem.read_port(domain="sync", transparent_for=())
            m.d.comb += [
                wp.addr.eq(beat[:act_abits]),
                wp.data.eq(self.acts.payload[i]),
                wp.en.eq((state == ChainState.LOAD_A) & self.acts.valid),
                rp.en.eq(en),
            ]
            reads.append(rp)

        # ------------------------------------------------------------ operand skew
        kaddr = ktc[:act_abits]
        max_delay = groups - 1 + group - 1
        addr_line = [kaddr]
        for k in range(max_delay):
            reg = Signal(act_abits, name=f"addr_d{k + 1}")
            with m.If(en):
                m.d.sync += reg.eq(addr_line[-1])
            addr_line.append(reg)
        tag_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1})
        tag0 = Signal(tag_layout, name="tag0")
        m.d.comb += [tag0.valid.eq(take), tag0.first.eq(ktc == 0), tag0.last.eq(ktc == ktiles - 1)]
        tags = [tag0]
        for k in range(lat):
            reg = Signal(tag_layout, name=f"tag{k + 1}")
            with m.If(en):
                m.d.sync += reg.eq(tags[-1])
            tags.append(reg)
        tag = tags[lat]

        packed = tokens == 2
        for i in range(rows):
            j, s = divmod(i, group)
            m.d.comb += reads[i].addr.eq(addr_line[j + s])

        # ------------------------------------------------------------ cut control
        # cut[u]: tap u ends a segment at the latched S (the last tap always does).
        cut = []
        for u in range(smax):
            hit = [st for st in steps if (u + 1) % st == 0]
            sig = Signal(name=f"cut{u}")
            m.d.comb += sig.eq(1 if u == smax - 1 else Const(0) if not hit
                               else _any(step == st for st in hit))
            cut.append(sig)

        # ------------------------------------------------------------ chains
        results = []     # per chain: per tap u, list of token lanes (signed acc_bits), aligned to the last node
        for c in range(cols):
            link = None
            taps = []
            for j in range(groups):
                gsum = None
                for s in range(group):
                    i = j * group + s
                    d = j + s
                    w = self.weights.payload[c][i]
                    for k in range(d + 1):
                        reg = Signal(chain_weight_lane_layout(cfg), name=f"w_c{c}_s{i}_d{k}")
                        with m.If(en):
                            m.d.sync += reg.eq(w)
                        w = reg
                    word = reads[i].data
                    picked = [word[p][w.index] for p in range(tokens)]
                    # Operand register (the DSP's A/B input registers): MUX output (packed: the
                    # 27-bit (a1 << 18) + a0) and the weight value, one stage before the multiply.
                    if packed:
                        operand = Signal(signed(PACK_SHIFT + cfg.activation_bits + 1), name=f"opnd_c{c}_s{i}")
                        value = (picked[1] << PACK_SHIFT) + picked[0]
                        prod = Signal(signed(PACKED_SUM_BITS), name=f"prod_c{c}_s{i}")
                    else:
                        operand = Signal(signed(cfg.activation_bits), name=f"opnd_c{c}_s{i}")
                        value = picked[0]
                        prod = Signal(signed(acc_bits), name=f"prod_c{c}_s{i}")
                    weight = Signal(signed(cfg.weight_bits), name=f"wval_c{c}_s{i}")
                    with m.If(en):
                        m.d.sync += [operand.eq(value), weight.eq(w.value)]
                    with m.If(en):
                        m.d.sync += prod.eq(weight * operand)
                    nxt = Signal.like(prod, name=f"gsum_c{c}_g{j}_s{s}")
                    with m.If(en):
                        m.d.sync += nxt.eq(prod if gsum is None else gsum + prod)
                    gsum = nxt
                # Reduction node: split the packed group sum into token lanes, add the link.
                if packed:
                    low = gsum[:PACK_SHIFT].as_signed()
                    high = gsum[PACK_SHIFT:].as_signed() + gsum[PACK_SHIFT - 1]
                    lanes = [low, high]
                else:
                    lanes = [gsum]
                red = [Signal(signed(acc_bits), name=f"red_c{c}_g{j}_t{p}") for p in range(tokens)]
                with m.If(en):
                    for p in range(tokens):
                        m.d.sync += red[p].eq(lanes[p] if link is None else link[p] + lanes[p])
                link = red
                if (j + 1) % gps == 0:
                    # Tap u: emit this node's output (delayed to the last node's cycle) and, when
                    # the latched S cuts here, feed the next node a zero link.
                    u = (j + 1) // gps - 1
                    out = red
                    for k in range(groups - 1 - j):
                        delayed = [Signal(signed(acc_bits), name=f"tap_c{c}_u{u}_t{p}_d{k + 1}")
                                   for p in range(tokens)]
                        with m.If(en):
                            m.d.sync += [delayed[p].eq(out[p]) for p in range(tokens)]
                        out = delayed
                    taps.append(out)
                    if j < groups - 1:
                        link = [Mux(cut[u], 0, red[p]) for p in range(tokens)]
            results.append(taps)

        # ------------------------------------------------------------ tile accumulator + bank write
        wen = Signal()
        m.d.comb += [
            wen.eq(en & tag.valid & tag.last),
            bank_w.en.eq(wen),
            bank_w.addr.eq(row[:bank_abits]),
        ]
        for c in range(cols):
            for u in range(smax):
                for p in range(tokens):
                    accr = Signal(signed(acc_bits), name=f"acc_c{c}_u{u}_t{p}")
                    total = Signal(signed(acc_bits), name=f"sum_c{c}_u{u}_t{p}")
                    m.d.comb += total.eq(results[c][u][p] + Mux(tag.first, 0, accr))
                    with m.If(en & tag.valid):
                        m.d.sync += accr.eq(total)
                    lane = p * cols + c
                    m.d.comb += bank_w.data[u][lane].eq(Mux(accumulate, total + bank_r.data[u][lane], total))
        with m.If(wen):
            m.d.sync += row.eq(row + 1)

        # ------------------------------------------------------------ sequencing
        instr = self.instr.payload
        with m.Switch(state):
            with m.Case(ChainState.FETCH):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += [count.eq(instr.count), accumulate.eq(instr.accumulate), beat.eq(0),
                                 row.eq(0), ktc.eq(0), drow.eq(0), dseg.eq(step - 1)]
                    with m.Switch(instr.opcode):
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
                m.d.comb += self.acts.ready.eq(1)
                with m.If(self.acts.valid):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == count - 1):
                        m.d.sync += state.eq(ChainState.FETCH)

            with m.Case(ChainState.STREAM, ChainState.FLUSH):
                m.d.comb += bank_r.addr.eq(row[:bank_abits] + wen)
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
                m.d.comb += self.results.valid.eq(1)
                with m.If(self.results.ready):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == count - 1):
                        m.d.sync += state.eq(ChainState.FETCH)
                    with m.Elif(dseg == smax - 1):
                        m.d.sync += [drow.eq(drow + 1), dseg.eq(step - 1)]
                        m.d.comb += bank_r.addr.eq(drow + 1)
                    with m.Else():
                        m.d.sync += dseg.eq(dseg + step)
                        m.d.comb += bank_r.addr.eq(drow)
                with m.Else():
                    m.d.comb += bank_r.addr.eq(drow)
        return m
