"""The SoC core: the accelerator, its four memories, stream readers/writer, registers, run control.

::

    bus (32-bit words) --+--> registers (ID, CTRL, STATUS, CYCLES, counts ...)
                         +--> instr   SourceBuffer --stream--> +--------------------------+
                         +--> weights SourceBuffer --stream--> | SparseSystolicAccelerator | --> done, cycles
                         +--> acts    SourceBuffer --stream--> |  (held in reset until    |
                         +<-- results ResultBuffer <--stream-- |   START)                 |
                                                               +--------------------------+

Run control (``STATUS`` shows it)::

    IDLE --START--> PRIME (2 cycles: readers fetch beat 0 into their output registers;
                           the accelerator is held in reset)
         --> RUN (accelerator out of reset: its cycle 0 finds every stream's first beat valid)
         --done--> DONE (accelerator frozen; CYCLES final) --START--> PRIME ...
    any  --CLEAR--> IDLE

Because the readers sustain one beat per cycle and the result writer is always ready, the
accelerator never stalls on the SoC: ``CYCLES`` equals the timing contract
(:func:`sparsa.sim.cycle.program_cycles`).  The bus and the address map are documented in
:mod:`sparsa.hdl.soc.bus` and :mod:`sparsa.hdl.soc.params`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, ResetInserter, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from sparsa.hdl.soc.buffers import COUNTER_BITS, HOST_READ_LATENCY, ResultBuffer, SourceBuffer
from sparsa.hdl.soc.bus import DATA_WIDTH, BusSignature
from sparsa.hdl.soc.params import Ctrl, Reg, Region, SocParams, Status, ceil_log2

__all__ = ["SocCore", "RunState"]


class RunState(enum.Enum, shape=2):
    """Run-control states."""

    IDLE = 0
    PRIME = 1
    RUN = 2
    DONE = 3


class SocCore(wiring.Component):
    """Accelerator + memories + registers behind the 32-bit SoC bus.

    Parameters
    ----------
    params : SocParams
        Memory depths and address map (from the accelerator config).

    Attributes
    ----------
    bus : In(BusSignature(params.addr_width))
        Host access to registers and memories.
    busy, done : Out(1)
        Run state (for LEDs / an interrupt line).
    """

    def __init__(self, params: SocParams) -> None:
        if not isinstance(params, SocParams):
            raise TypeError(f"params must be a SocParams, not {params!r}")
        from sparsa.hdl.top import SparseSystolicAccelerator

        self._params = params
        self._accel = SparseSystolicAccelerator(params.config)
        super().__init__({
            "bus": In(BusSignature(params.addr_width)),
            "busy": Out(1),
            "done": Out(1),
        })

    @property
    def params(self) -> SocParams:
        """Memory depths and address map."""
        return self._params

    @property
    def accelerator(self):
        """The accelerator instance (its ports are for tests)."""
        return self._accel

    def elaborate(self, platform) -> Module:
        p = self._params
        m = Module()
        accel = self._accel
        state = Signal(RunState, init=RunState.IDLE)
        # The accelerator's reset (high in IDLE and PRIME) comes straight from a flip-flop: it
        # fans out to every register of the array, and a state decode in front of that net
        # was the critical path of a pipelined 8x8 design on ECP5.
        accel_reset = Signal(init=1)
        m.submodules.accel = ResetInserter({"sync": accel_reset})(accel)

        mems = p.memories
        sources = {
            Region.INSTR: (SourceBuffer(32, mems[Region.INSTR].depth), accel.instr),
            Region.WEIGHTS: (SourceBuffer(mems[Region.WEIGHTS].bits, mems[Region.WEIGHTS].depth), accel.weights),
            Region.ACTS: (SourceBuffer(mems[Region.ACTS].bits, mems[Region.ACTS].depth), accel.acts),
        }
        m.submodules.instr_mem = sources[Region.INSTR][0]
        m.submodules.weight_mem = sources[Region.WEIGHTS][0]
        m.submodules.act_mem = sources[Region.ACTS][0]
        m.submodules.result_mem = results = ResultBuffer(mems[Region.RESULTS].bits, mems[Region.RESULTS].depth)

        start = Signal()
        running = (state == RunState.PRIME) | (state == RunState.RUN)
        counts = {region: Signal(COUNTER_BITS, name=f"{region.name.lower()}_count") for region in sources}
        for region, (buf, port) in sources.items():
            m.d.comb += [
                buf.start.eq(start),
                buf.count.eq(counts[region]),
                buf.running.eq(running),
                port.payload.eq(buf.stream.payload),
                port.valid.eq(buf.stream.valid),
                buf.stream.ready.eq(port.ready),
            ]
        m.d.comb += [
            results.start.eq(start),
            results.running.eq(state == RunState.RUN),
            results.stream.payload.eq(accel.results.payload),
            results.stream.valid.eq(accel.results.valid),
            accel.results.ready.eq(results.stream.ready),
            self.busy.eq(running),
            self.done.eq(state == RunState.DONE),
        ]

        # ---------------------------------------------------------------- run control
        run_cycles = Signal(32)
        clear = Signal()
        prime_cycles = max(buf.prime_cycles for buf, _ in sources.values())
        prime = Signal(range(prime_cycles + 1))
        with m.Switch(state):
            with m.Case(RunState.IDLE, RunState.DONE):
                with m.If(start):
                    m.d.sync += [state.eq(RunState.PRIME), run_cycles.eq(0), prime.eq(prime_cycles - 1),
                                 accel_reset.eq(1)]
            with m.Case(RunState.PRIME):
                m.d.sync += prime.eq(prime - 1)
                with m.If(prime == 0):
                    m.d.sync += [state.eq(RunState.RUN), accel_reset.eq(0)]
            with m.Case(RunState.RUN):
                with m.If(accel.done):
                    m.d.sync += state.eq(RunState.DONE)
                with m.Else():
                    m.d.sync += run_cycles.eq(run_cycles + 1)
        with m.If(clear):
            m.d.sync += [state.eq(RunState.IDLE), accel_reset.eq(1)]

        # ---------------------------------------------------------------- bus decode
        # START / CLEAR act one cycle after the CTRL write: registered, so the bus decode
        # (the UART bridge's state, the address compare) does not reach the synchronous
        # resets of the buffers and the accelerator in the same cycle - that path was the
        # critical path of the 8x8 on ECP5 once the array enable was registered (docs/fpga.md).
        start_req = Signal()
        clear_req = Signal()
        m.d.sync += [start.eq(start_req), clear.eq(clear_req)]
        bus = self.bus
        shift = p.region_shift
        region = bus.addr[shift:shift + 3]
        offset = bus.addr[:shift]
        scratch = Signal(32)
        # A pending (registered) START already reads as busy, a pending CLEAR as idle, so a
        # STATUS read right after the CTRL write sees its effect.
        flags = {Status.BUSY: running | start, Status.DONE: (state == RunState.DONE) & ~start & ~clear,
                 Status.RESULT_OVERFLOW: results.overflow}
        status = Cat(*(flags[Status(1 << bit)] for bit in range(len(flags))))   # bit i = flag 1 << i

        # Writes: registers, and beats staged word by word (the last word commits the beat).
        staging = Signal(p.staging_words * DATA_WIDTH)
        with m.If(bus.w_en):
            with m.If(region == Region.REGS):
                with m.Switch(offset):
                    with m.Case(Reg.CTRL):
                        want_start = (bus.w_data & int(Ctrl.START)).any()
                        want_clear = (bus.w_data & int(Ctrl.CLEAR)).any()
                        m.d.comb += [start_req.eq(want_start & ~running & ~want_clear), clear_req.eq(want_clear)]
                    with m.Case(Reg.INSTR_COUNT):
                        m.d.sync += counts[Region.INSTR].eq(bus.w_data)
                    with m.Case(Reg.WEIGHT_COUNT):
                        m.d.sync += counts[Region.WEIGHTS].eq(bus.w_data)
                    with m.Case(Reg.ACT_COUNT):
                        m.d.sync += counts[Region.ACTS].eq(bus.w_data)
                    with m.Case(Reg.SCRATCH):
                        m.d.sync += scratch.eq(bus.w_data)
        for reg_region, (buf, _) in sources.items():
            mem = mems[reg_region]
            lstride = ceil_log2(mem.stride)
            beat = offset[lstride:]
            word = offset[:lstride] if lstride else Const(0, 1)
            last = mem.words - 1
            m.d.comb += buf.host_waddr.eq(beat)
            if last:
                m.d.comb += buf.host_wdata.eq(Cat(staging[:last * DATA_WIDTH], bus.w_data))
            else:
                m.d.comb += buf.host_wdata.eq(bus.w_data)
            with m.If(bus.w_en & (region == reg_region) & (beat < mem.depth)):
                with m.If(word == last):
                    m.d.comb += buf.host_wen.eq(1)
                if last:
                    with m.Elif(word < last):
                        m.d.sync += staging.word_select(word, DATA_WIDTH).eq(bus.w_data)

        # Reads answer READ_LATENCY = HOST_READ_LATENCY + 1 cycles after r_en: the buffers' host
        # ports answer HOST_READ_LATENCY cycles after the address (block RAM, then the readers'
        # two registers), the next cycle registers the whole word of the addressed buffer (the
        # region mux) and selects the 32-bit word combinationally.  The register value waits
        # alongside.
        values = p.register_values()
        reg_q = Signal(32)
        region_q = Signal(3)
        word_q = Signal(max(1, ceil_log2(max(mem.stride for mem in mems.values()))))
        with m.If(bus.r_en):
            m.d.sync += [region_q.eq(region), word_q.eq(offset), reg_q.eq(0)]
            with m.If(region == Region.REGS):
                with m.Switch(offset):
                    for reg, value in values.items():
                        with m.Case(reg):
                            m.d.sync += reg_q.eq(value)
                    live = {
                        Reg.STATUS: status, Reg.CYCLES: accel.cycles, Reg.RUN_CYCLES: run_cycles,
                        Reg.INSTR_COUNT: counts[Region.INSTR], Reg.WEIGHT_COUNT: counts[Region.WEIGHTS],
                        Reg.ACT_COUNT: counts[Region.ACTS], Reg.RESULT_COUNT: results.count,
                        Reg.INSTR_TAKEN: sources[Region.INSTR][0].taken,
                        Reg.WEIGHT_TAKEN: sources[Region.WEIGHTS][0].taken,
                        Reg.ACT_TAKEN: sources[Region.ACTS][0].taken, Reg.SCRATCH: scratch,
                    }
                    for reg, value in live.items():
                        with m.Case(reg):
                            m.d.sync += reg_q.eq(value)
        all_buffers = {**{r: b for r, (b, _) in sources.items()}, Region.RESULTS: results}
        for reg_region, buf in all_buffers.items():
            mem = mems[reg_region]
            lstride = ceil_log2(mem.stride)
            m.d.comb += buf.host_raddr.eq(offset[lstride:])
        assert all(buf.host_read_latency == HOST_READ_LATENCY for buf in all_buffers.values())
        # A pipeline of HOST_READ_LATENCY + 1 stages carries (register value, region, word) while
        # the buffers read; the last stage registers the addressed buffer's word (region mux).
        n = HOST_READ_LATENCY + 1
        pending = [Signal(name=f"pending{i}") for i in range(1, n)]
        regs = [reg_q] + [Signal(32, name=f"reg_q{i}") for i in range(2, n + 1)]
        regions = [region_q] + [Signal(3, name=f"region_q{i}") for i in range(2, n + 1)]
        words = [word_q] + [Signal(len(word_q), name=f"word_q{i}") for i in range(2, n + 1)]
        m.d.sync += [pending[0].eq(bus.r_en)] + [pending[i].eq(pending[i - 1]) for i in range(1, n - 1)]
        for i in range(n - 1):
            with m.If(pending[i]):
                m.d.sync += [regs[i + 1].eq(regs[i]), regions[i + 1].eq(regions[i]), words[i + 1].eq(words[i])]
        ram_q = {region: Signal(mems[region].bits, name=f"{region.name.lower()}_rdata") for region in all_buffers}
        with m.If(pending[-1]):
            for reg_region, buf in all_buffers.items():
                with m.If(regions[-2] == reg_region):
                    m.d.sync += ram_q[reg_region].eq(buf.host_rdata)
        reg_q3, region_q3, word_q3 = regs[-1], regions[-1], words[-1]
        with m.Switch(region_q3):
            with m.Case(Region.REGS):
                m.d.comb += bus.r_data.eq(reg_q3)
            for reg_region in all_buffers:
                mem = mems[reg_region]
                with m.Case(reg_region):
                    padded = Cat(ram_q[reg_region], Const(0, mem.stride * DATA_WIDTH - mem.bits))
                    if mem.stride == 1:
                        m.d.comb += bus.r_data.eq(padded)
                    else:
                        m.d.comb += bus.r_data.eq(padded.word_select(word_q3[:ceil_log2(mem.stride)], DATA_WIDTH))
        return m
