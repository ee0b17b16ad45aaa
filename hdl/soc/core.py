"""The SoC core: the accelerator, its four memories, stream readers/writer, registers, run control.

::

    bus (32-bit words) --+--> registers (ID, CTRL, STATUS, CYCLES, counts ...)
                         +--> instr   SourceBuffer --stream--> +--------------------------+
                         +--> weights SourceBuffer --stream--> | SparseSystolicAccelerator | --> done, cycles
                         +--> acts    SourceBuffer --stream--> |  (held in reset until    |
                         +<-- results ResultBuffer <--stream-- |   START)                 |
                                                               +--------------------------+

Run control (``STATUS`` shows it)::

    IDLE --START--> PRIME (the readers' prime_cycles, 3 with two register stages: they fetch
                           beat 0 into their output registers; the accelerator is held in reset)
         --> RUN (accelerator out of reset: its cycle 0 finds every stream's first beat valid)
         --done--> DONE (accelerator frozen; CYCLES final) --START--> PRIME ...
                   (STATUS.ILLEGAL as well when it stopped on an illegal word)
    any  --CLEAR--> IDLE

With ``dma`` (the Xilinx shell kernel) an :class:`~sparsa.hdl.soc.dma.AxiDma` is a second bus
master behind the host, and RUN_DMA runs the whole sequence from device memory::

    RUN_DMA --> check addresses / counts --> load instr, weights, acts (AXI4 reads -> bus writes)
            --> START (as above) --> DONE --> store the result beats (bus reads -> AXI4 writes)

Because the readers sustain one beat per cycle and the result writer is always ready, the
accelerator never stalls on the SoC: ``CYCLES`` equals the timing contract
(:func:`sparsa.sim.cycle.program_cycles`).  The bus and the address map are documented in
:mod:`sparsa.hdl.soc.bus` and :mod:`sparsa.hdl.soc.params`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from sparsa.hdl.soc.buffers import COUNTER_BITS, HOST_READ_LATENCY, ResultBuffer, SourceBuffer
from sparsa.hdl.soc.bus import DATA_WIDTH, BusSignature
from sparsa.hdl.soc.params import DMA_REGS, Ctrl, DmaConfig, DmaPhase, Reg, Region, SocParams, Status, ceil_log2

__all__ = ["SocCore", "RunState", "DmaState"]


class RunState(enum.Enum, shape=2):
    """Run-control states."""

    IDLE = 0
    PRIME = 1
    RUN = 2
    DONE = 3


class DmaState(enum.Enum, shape=4):
    """States of the RUN_DMA sequencer (load -> run -> store)."""

    IDLE = 0
    LOAD_INSTR = 1      # start the instruction job ...
    WAIT_INSTR = 2      # ... and wait for it
    LOAD_WEIGHTS = 3
    WAIT_WEIGHTS = 4
    LOAD_ACTS = 5
    WAIT_ACTS = 6
    START = 7           # START the accelerator (as a host CTRL write would)
    STARTED = 8         # START is registered: the run state leaves IDLE / DONE now
    RUN = 9             # wait for DONE
    STORE = 10          # start the result job ...
    WAIT_STORE = 11     # ... and wait for it
    DRAIN = 12          # CLEAR: let the current job finish (AXI bursts cannot be abandoned)


class SocCore(wiring.Component):
    """Accelerator + memories + registers behind the 32-bit SoC bus.

    Parameters
    ----------
    params : SocParams
        Memory depths and address map (from the accelerator config).
    dma : DmaConfig, optional
        Add the AXI4 master DMA, its registers (``DMA_*``) and the RUN_DMA sequencer: load the
        instruction, weight and activation memories from device memory, run, store the result
        beats.  The DMA is a second bus master behind the host (the host has priority).

    Attributes
    ----------
    bus : In(BusSignature(params.addr_width))
        Host access to registers and memories.
    busy, done : Out(1)
        Run state (for LEDs / an interrupt line).
    m_axi : Out(axi4_signature(64, dma.data_width))
        Only with ``dma``: the AXI4 master to device memory (:class:`~sparsa.hdl.soc.dma.AxiDma`).
    dma_busy, dma_error : Out(1)
        Only with ``dma``: a RUN_DMA sequence is running / the last one failed.
    """

    def __init__(self, params: SocParams, *, dma: "DmaConfig | None" = None) -> None:
        if not isinstance(params, SocParams):
            raise TypeError(f"params must be a SocParams, not {params!r}")
        if dma is not None and not isinstance(dma, DmaConfig):
            raise TypeError(f"dma must be a DmaConfig or None, not {dma!r}")
        from sparsa.hdl.top import SparseSystolicAccelerator

        self._params = params
        self._dma = dma
        self._accel = SparseSystolicAccelerator(params.config)
        members = {
            "bus": In(BusSignature(params.addr_width)),
            "busy": Out(1),
            "done": Out(1),
        }
        if dma is not None:
            from sparsa.hdl.soc.dma import AXI_ADDR_WIDTH, AxiDma

            self._engine = AxiDma(params.addr_width, data_width=dma.data_width, max_burst=dma.max_burst,
                                  axi_addr_width=AXI_ADDR_WIDTH)
            members.update({
                "m_axi": Out(self._engine.axi.signature),
                "dma_busy": Out(1),
                "dma_error": Out(1),
            })
        else:
            self._engine = None
        super().__init__(members)

    @property
    def dma(self) -> "DmaConfig | None":
        """The AXI4 master's shape (None: no DMA)."""
        return self._dma

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
        # ``state == RUN`` as a flip-flop of its own (kept equal to it by the run control below):
        # it is the result stream's ready, which the controller's DRAIN read address depends on
        # in the same cycle; the state decode in front of that multiplexer was the critical path
        # of the 8x8 on ECP5 once the accumulator read its DP16KD directly (docs/fpga.md).
        in_run = Signal()
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
            results.running.eq(in_run),
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
                    m.d.sync += [state.eq(RunState.RUN), in_run.eq(1), accel_reset.eq(0)]
            with m.Case(RunState.RUN):
                with m.If(accel.done):
                    m.d.sync += [state.eq(RunState.DONE), in_run.eq(0)]
                with m.Else():
                    m.d.sync += run_cycles.eq(run_cycles + 1)
        with m.If(clear):
            m.d.sync += [state.eq(RunState.IDLE), in_run.eq(0), accel_reset.eq(1)]

        # ---------------------------------------------------------------- bus decode
        # START / CLEAR act one cycle after the CTRL write: registered, so the bus decode
        # (the UART bridge's state, the address compare) does not reach the synchronous
        # resets of the buffers and the accelerator in the same cycle - that path was the
        # critical path of the 8x8 on ECP5 once the array enable was registered (docs/fpga.md).
        start_req = Signal()
        clear_req = Signal()
        seq_start = Signal()            # the RUN_DMA sequencer starts the accelerator
        m.d.sync += [start.eq(start_req | seq_start), clear.eq(clear_req)]
        engine = self._engine
        if engine is None:
            bus = self.bus
        else:
            # Two bus masters: the host (AXI4-Lite bridge) has priority, the DMA takes the
            # cycles the host leaves free (``grant``).  Read data returns READ_LATENCY cycles
            # after each access, so both share r_data, each sampling its own cycles.
            m.submodules.dma = engine
            wiring.connect(m, wiring.flipped(self.m_axi), engine.axi)
            host, dbus = self.bus, engine.bus
            bus = BusSignature(p.addr_width).create(path=("soc_bus",))
            host_active = host.r_en | host.w_en
            m.d.comb += [
                engine.grant.eq(~host_active),
                bus.addr.eq(Mux(host_active, host.addr, dbus.addr)),
                bus.w_data.eq(Mux(host_active, host.w_data, dbus.w_data)),
                bus.w_en.eq(host.w_en | dbus.w_en & ~host_active),
                bus.r_en.eq(host.r_en | dbus.r_en & ~host_active),
                host.r_data.eq(bus.r_data),
                dbus.r_data.eq(bus.r_data),
            ]
        # Every bus request is registered before the decode (READ_LATENCY counts that cycle): the
        # host bridge's strobe (UART receiver timer -> byte done -> word complete) reached the
        # register file and the buffers' staging registers in the same cycle, a critical path of
        # the 8x8 on ECP5 (docs/fpga.md).  Everything below decodes ``bus``, the registered copy.
        request = BusSignature(p.addr_width).create(path=("bus_request",))
        m.d.sync += [request.addr.eq(bus.addr), request.w_data.eq(bus.w_data), request.w_en.eq(bus.w_en),
                     request.r_en.eq(bus.r_en)]
        m.d.comb += bus.r_data.eq(request.r_data)
        bus = request
        shift = p.region_shift
        region = bus.addr[shift:shift + 3]
        offset = bus.addr[:shift]
        scratch = Signal(32)
        # A pending (registered) START already reads as busy, a pending CLEAR as idle, so a
        # STATUS read right after the CTRL write sees its effect.
        finished = (state == RunState.DONE) & ~start & ~clear
        flags = {Status.BUSY: running | start, Status.DONE: finished,
                 Status.RESULT_OVERFLOW: results.overflow,
                 # the accelerator stopped on an illegal word (docs/isa.md#illegal-instructions)
                 Status.ILLEGAL: finished & accel.illegal}
        dma_busy = Const(0)
        run_dma_req = Signal()
        if engine is not None:
            dma_busy, dma_live, dma_writes = self._sequencer(m, engine, state, start, clear, counts, run_dma_req,
                                                             seq_start)
            flags.update(dma_live)
        # bit i = flag 1 << i; the DMA bits read 0 without the DMA engine
        status = Cat(*(flags.get(Status(1 << bit), Const(0)) for bit in range(max(flags).bit_length())))
        if engine is not None:
            m.d.comb += [self.dma_busy.eq(flags[Status.DMA_BUSY]), self.dma_error.eq(flags[Status.DMA_ERROR])]

        # Writes: registers, and beats staged word by word (the last word commits the beat).
        staging = Signal(p.staging_words * DATA_WIDTH)
        with m.If(bus.w_en):
            with m.If(region == Region.REGS):
                with m.Switch(offset):
                    with m.Case(Reg.CTRL):
                        want_start = (bus.w_data & int(Ctrl.START)).any()
                        want_clear = (bus.w_data & int(Ctrl.CLEAR)).any()
                        m.d.comb += [start_req.eq(want_start & ~running & ~dma_busy & ~want_clear),
                                     clear_req.eq(want_clear)]
                        if engine is not None:
                            want_dma = (bus.w_data & int(Ctrl.RUN_DMA)).any()
                            m.d.comb += run_dma_req.eq(want_dma & ~want_start & ~running & ~dma_busy & ~want_clear)
                    with m.Case(Reg.INSTR_COUNT):
                        m.d.sync += counts[Region.INSTR].eq(bus.w_data)
                    with m.Case(Reg.WEIGHT_COUNT):
                        m.d.sync += counts[Region.WEIGHTS].eq(bus.w_data)
                    with m.Case(Reg.ACT_COUNT):
                        m.d.sync += counts[Region.ACTS].eq(bus.w_data)
                    with m.Case(Reg.SCRATCH):
                        m.d.sync += scratch.eq(bus.w_data)
                    if engine is not None:
                        for reg, target in dma_writes.items():
                            with m.Case(reg):
                                m.d.sync += target.eq(bus.w_data)
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

        # Reads answer READ_LATENCY = HOST_READ_LATENCY + 2 cycles after r_en: the request
        # register, then HOST_READ_LATENCY + 1 cycles after the registered r_en: the buffers' host
        # ports answer HOST_READ_LATENCY cycles after the address (block RAM, then the readers'
        # two registers), the next cycle registers the whole word of the addressed buffer (the
        # region mux) and selects the 32-bit word combinationally.  The register value waits
        # alongside.
        values = p.register_values()
        if engine is not None:
            values[Reg.DMA_CAPS] = self._dma.caps
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
                    if engine is not None:
                        live.update(self._dma_reads)
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

    # ---------------------------------------------------------------------------- DMA
    def _sequencer(self, m: Module, engine, state, start, clear, counts, run_dma_req, seq_start):
        """RUN_DMA: check the addresses and counts, load the three memories, START, wait for
        DONE, store the result beats.  Returns (busy, STATUS flags, register writes); the
        register reads are left in ``self._dma_reads``."""
        p, cfg = self._params, self._dma
        mems = p.memories
        job = engine.job
        seq = Signal(DmaState, init=DmaState.IDLE)
        run_dma = Signal()                       # RUN_DMA, registered like START
        m.d.sync += run_dma.eq(run_dma_req)
        addrs = {region: Signal(64, name=f"dma_{region.name.lower()}_addr") for region in DMA_REGS}
        store_count = Signal(32)
        error_info = Signal(5)                   # phase << 2 | resp
        dma_cycles = Signal(32)
        done_flag = Signal()
        error_flag = Signal()
        writes = {}
        reads = {}
        for region, lo in DMA_REGS.items():
            writes[lo] = addrs[region][:32]
            writes[Reg(lo + 1)] = addrs[region][32:]
            reads[lo] = addrs[region][:32]
            reads[Reg(lo + 1)] = addrs[region][32:]
        writes[Reg.DMA_RESULT_COUNT] = store_count
        reads.update({Reg.DMA_RESULT_COUNT: store_count, Reg.DMA_ERROR_INFO: error_info,
                      Reg.DMA_CYCLES: dma_cycles})
        self._dma_reads = reads

        all_counts = {**counts, Region.RESULTS: store_count}
        misaligned = Cat(*(addr[:ceil_log2(cfg.beat_bytes)].any() for addr in addrs.values())).any() \
            if cfg.beat_bytes > 1 else Const(0)
        too_many = Cat(*(all_counts[r] > mems[r].depth for r in DMA_REGS)).any()

        def words(region):
            return all_counts[region] << ceil_log2(mems[region].stride)

        loads = [(DmaState.LOAD_INSTR, DmaState.WAIT_INSTR, Region.INSTR, DmaPhase.INSTR, DmaState.LOAD_WEIGHTS),
                 (DmaState.LOAD_WEIGHTS, DmaState.WAIT_WEIGHTS, Region.WEIGHTS, DmaPhase.WEIGHTS, DmaState.LOAD_ACTS),
                 (DmaState.LOAD_ACTS, DmaState.WAIT_ACTS, Region.ACTS, DmaPhase.ACTS, DmaState.START),
                 (DmaState.STORE, DmaState.WAIT_STORE, Region.RESULTS, DmaPhase.RESULTS, DmaState.IDLE)]
        with m.If(seq != DmaState.IDLE):
            m.d.sync += dma_cycles.eq(dma_cycles + 1)
        with m.Switch(seq):
            with m.Case(DmaState.IDLE):
                with m.If(run_dma):
                    m.d.sync += [done_flag.eq(0), error_flag.eq(0), error_info.eq(0), dma_cycles.eq(0)]
                    with m.If(misaligned):
                        m.d.sync += [error_flag.eq(1), error_info.eq(int(DmaPhase.ALIGN) << 2)]
                    with m.Elif(too_many):
                        m.d.sync += [error_flag.eq(1), error_info.eq(int(DmaPhase.RANGE) << 2)]
                    with m.Else():
                        m.d.sync += seq.eq(DmaState.LOAD_INSTR)
            for go, wait, region, phase, after in loads:
                with m.Case(go):
                    m.d.comb += [job.start.eq(1), job.write.eq(int(region == Region.RESULTS)),
                                 job.dev_addr.eq(addrs[region]), job.soc_addr.eq(p.base(region)),
                                 job.words.eq(words(region))]
                    m.d.sync += seq.eq(wait)
                with m.Case(wait):
                    with m.If(~job.busy):
                        with m.If(job.error):
                            m.d.sync += [seq.eq(DmaState.IDLE), error_flag.eq(1),
                                         error_info.eq(int(phase) << 2 | job.resp)]
                        with m.Else():
                            m.d.sync += seq.eq(after)
                            if after == DmaState.IDLE:
                                m.d.sync += done_flag.eq(1)
            with m.Case(DmaState.START):
                m.d.comb += seq_start.eq(1)
                m.d.sync += seq.eq(DmaState.STARTED)
            with m.Case(DmaState.STARTED):
                m.d.sync += seq.eq(DmaState.RUN)
            with m.Case(DmaState.RUN):
                with m.If(state == RunState.DONE):
                    m.d.sync += seq.eq(DmaState.STORE)
            with m.Case(DmaState.DRAIN):
                with m.If(~job.busy):
                    m.d.sync += seq.eq(DmaState.IDLE)
        with m.If(clear):
            m.d.sync += [done_flag.eq(0), error_flag.eq(0)]
            with m.If(seq != DmaState.IDLE):
                m.d.sync += seq.eq(DmaState.DRAIN)
        busy = (seq != DmaState.IDLE) | run_dma
        flags = {Status.DMA_BUSY: busy, Status.DMA_DONE: done_flag & ~busy, Status.DMA_ERROR: error_flag & ~busy}
        return busy, flags, writes
