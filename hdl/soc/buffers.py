"""On-chip memories with DMA-like stream ports: memory -> stream (sources), stream -> memory (sink).

:class:`SourceBuffer` holds one input stream's memory image (instructions, weights or
activations).  The host writes it a whole beat at a time; at ``start`` its reader streams
beats ``0 .. count-1`` out, one per cycle while the consumer is ready, from a synchronous
read port::

    advance = ~valid | ready                 (the output register is free or being taken)
    if advance and remaining:  read mem[addr] (data appears next cycle), valid <= 1
    if advance and not remaining:  valid <= 0

The read port's enable is ``advance``, so the payload holds still while ``valid & ~ready`` -
the stream rule - and the reader sustains one beat per cycle, so an always-ready consumer
never waits: the accelerator's cycle count equals the timing contract.  By default two
register stages follow the RAM's read latch (``stages=2``; all stages advance together): the
first is the block RAM's own output register (:class:`sparsa.hdl.bram.PipelinedBlockRam`; on
ECP5 the DP16KD's ``REGMODE_B = "OUTREG"``, which takes the RAM's slow clock-to-out, ~5.8 ns
without it, off the fabric), the second, a fabric register, carries the beat across the chip
to the accelerator.  With one fabric stage the RAM -> routing -> register path was the
critical path of the 8x8 SoC at 86.5 MHz, and with two fabric stages still (95.0 MHz: nextpnr
put the first far from its RAM; docs/fpga.md).  ``valid`` depends on the reader's state only.

Host reads of every buffer come out of the same registers, so they answer
:data:`HOST_READ_LATENCY` cycles after the address.  Host writes are registered once before
the RAM (a beat is in the memory one cycle after ``host_wen``).

:class:`ResultBuffer` is always ready while running and writes every result beat to the
next row (beats past the depth are dropped and flagged).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsa.hdl.bram import PipelinedBlockRam, check_memory_geometry
from sparsa.hdl.soc.params import ceil_log2

__all__ = ["SourceBuffer", "ResultBuffer", "COUNTER_BITS", "HOST_READ_LATENCY"]

#: Width of the beat counters (count, taken, result count).
COUNTER_BITS = 32
#: Cycles from ``host_raddr`` to the beat on ``host_rdata``: block-RAM read, then the two reader
#: registers (so the first register after a RAM feeds only the second and can sit next to it).
HOST_READ_LATENCY = 3


class SourceBuffer(wiring.Component):
    """A memory the host fills and a reader streams out.

    Parameters
    ----------
    width : int
        Beat width in bits.
    depth : int
        Beats the memory holds.
    stages : int
        Register stages after the block RAM's read latch: 0, 1 or 2 (default).  The first is
        the RAM's output register (:class:`~sparsa.hdl.bram.PipelinedBlockRam`; 0: a plain
        ``Memory``, read straight from its latch), the second a fabric register that takes the
        beat to its consumer.
        The reader needs :attr:`prime_cycles` = ``1 + stages`` cycles after ``start`` before
        its first beat is valid.  With ``stages >= 1`` host reads answer from the first stage
        (``1 + stages`` cycles; :data:`HOST_READ_LATENCY` with the default 2), with 0 straight
        from the RAM (1 cycle).

    Attributes
    ----------
    host_wen, host_waddr, host_wdata : In
        Host write port (one whole beat per cycle; registered, the RAM is written in the next
        cycle).
    host_raddr : In(abits)
        Host read address while not ``running``; ``host_rdata`` shows the beat
        :attr:`host_read_latency` cycles later.
    host_rdata : Out(width)
        Read data (while ``running`` it is the reader's, not the host's).
    start : In(1)
        Load the reader: next beat 0, ``count`` beats to go, output empty.
    count : In(32)
        Beats to stream after ``start``.
    running : In(1)
        The reader owns the read port and streams.
    stream : Out(stream.Signature(width))
        The beats.
    taken : Out(32)
        Beats transferred since ``start``.
    """

    def __init__(self, width: int, depth: int, *, stages: int = 2) -> None:
        check_memory_geometry(width, depth)
        if stages not in (0, 1, 2) or isinstance(stages, bool):
            raise ValueError(f"stages must be 0, 1 or 2, not {stages!r}")
        self._width = width
        self._depth = depth
        self._stages = stages
        abits = max(1, ceil_log2(depth))
        super().__init__({
            "host_wen": In(1),
            "host_waddr": In(abits),
            "host_wdata": In(width),
            "host_raddr": In(abits),
            "host_rdata": Out(width),
            "start": In(1),
            "count": In(COUNTER_BITS),
            "running": In(1),
            "stream": Out(stream.Signature(width)),
            "taken": Out(COUNTER_BITS),
        })

    @property
    def width(self) -> int:
        """Beat width in bits."""
        return self._width

    @property
    def depth(self) -> int:
        """Beats the memory holds."""
        return self._depth

    @property
    def stages(self) -> int:
        """Register stages after the block RAM's read latch."""
        return self._stages

    @property
    def prime_cycles(self) -> int:
        """Cycles from ``start`` (with ``running``) until the first beat is valid."""
        return 1 + self._stages

    @property
    def host_read_latency(self) -> int:
        """Cycles from ``host_raddr`` to the beat on ``host_rdata``."""
        return 1 + self._stages

    def elaborate(self, platform) -> Module:
        m = Module()
        abits = len(self.host_raddr)
        ren = Signal()                 # the read port's enable: every read stage advances with it
        raddr = Signal(abits)
        # Host writes are registered and reach the RAM one cycle after ``host_wen``: the bus
        # decode (from the UART bridge's receiver state) -> block-RAM write-data path was the
        # critical path of the 8x8 once the reads used the DP16KD output register (docs/fpga.md).
        wen = Signal()
        waddr = Signal(abits)
        wdata = Signal(self._width)
        m.d.sync += [wen.eq(self.host_wen), waddr.eq(self.host_waddr), wdata.eq(self.host_wdata)]
        if self._stages:
            # The RAM's read latch and output register (on ECP5 the DP16KD's own, REGMODE_B =
            # OUTREG), then stages - 1 fabric registers.
            m.submodules.ram = ram = PipelinedBlockRam(self._width, self._depth)
            m.d.comb += [ram.wen.eq(wen), ram.waddr.eq(waddr), ram.wdata.eq(wdata), ram.ren.eq(ren),
                         ram.raddr.eq(raddr)]
            first = ram.rdata
        else:
            m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth, init=[])
            wport = mem.write_port(domain="sync")
            rport = mem.read_port(domain="sync", transparent_for=())
            m.d.comb += [wport.en.eq(wen), wport.addr.eq(waddr), wport.data.eq(wdata), rport.en.eq(ren),
                         rport.addr.eq(raddr)]
            first = rport.data

        addr = Signal(abits)
        remaining = Signal(COUNTER_BITS)
        ram_valid = Signal()           # the RAM's read latch holds a beat
        valid = Signal()               # the stream's output holds a beat
        advance = ~valid | self.stream.ready
        fetch = self.running & advance & (remaining != 0)

        m.d.comb += [
            raddr.eq(Mux(self.running, addr, self.host_raddr)),
            ren.eq(Mux(self.running, advance, 1)),
            self.stream.valid.eq(valid),
        ]
        # data[0] is the RAM's read latch (stages = 0) or its output register; data[i] the i-th
        # fabric register after that.  full[i] says stage i holds a beat (full[0]: the latch).
        data = [first] + [Signal(self._width, name=f"stage{i}") for i in range(2, self._stages + 1)]
        full = [ram_valid] + [Signal(name=f"stage{i}_valid") for i in range(1, self._stages)]
        m.d.comb += self.stream.payload.eq(data[-1])
        # Every register follows the read port's enable (``advance`` while running, always for
        # host reads), so host reads come out of the last one too: the first register after
        # the RAM then feeds only the second and can be placed next to the RAM.
        with m.If(ren):
            m.d.sync += [data[i + 1].eq(data[i]) for i in range(len(data) - 1)]
        m.d.comb += self.host_rdata.eq(data[-1])
        with m.If(self.start):
            m.d.sync += [addr.eq(0), remaining.eq(self.count), valid.eq(0), self.taken.eq(0)]
            m.d.sync += [f.eq(0) for f in full]
        with m.Elif(self.running):
            with m.If(self.stream.valid & self.stream.ready):
                m.d.sync += self.taken.eq(self.taken + 1)
            with m.If(advance):
                with m.If(fetch):
                    m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
                if self._stages:
                    chain = [fetch] + full
                    m.d.sync += [dst.eq(src) for dst, src in zip(full + [valid], chain)]
                else:
                    m.d.sync += valid.eq(fetch)
        return m


class ResultBuffer(wiring.Component):
    """A memory the result stream fills (always ready while running) and the host reads.

    An accepted beat is registered twice (payload, row, write enable) and written to the
    memory two cycles later: the accelerator's result payload is its accumulator block RAM's
    output, and RAM clock-to-out -> routing -> register is one of the longest paths of the SoC
    (ECP5: ~5.6 ns clock-to-out alone), so the first register should sit next to that RAM.
    ``count`` still counts in the cycle of the transfer; the last beat is in the memory two
    cycles after it, long before a host can read it.

    Parameters
    ----------
    width : int
        Beat width in bits.
    depth : int
        Beats the memory holds.

    Attributes
    ----------
    stream : In(stream.Signature(width))
        Result beats; ``ready`` is ``running``.
    start : In(1)
        Restart at row 0, clear ``count`` and ``overflow``.
    running : In(1)
        Accept beats.
    host_raddr : In(abits)
        Host read address; ``host_rdata`` shows the beat :data:`HOST_READ_LATENCY` cycles later.
    host_rdata : Out(width)
    count : Out(32)
        Beats received since ``start`` (including dropped ones).
    overflow : Out(1)
        A beat arrived with the memory full (it was dropped).
    """

    def __init__(self, width: int, depth: int) -> None:
        check_memory_geometry(width, depth)
        self._width = width
        self._depth = depth
        abits = max(1, ceil_log2(depth))
        super().__init__({
            "stream": In(stream.Signature(width)),
            "start": In(1),
            "running": In(1),
            "host_raddr": In(abits),
            "host_rdata": Out(width),
            "count": Out(COUNTER_BITS),
            "overflow": Out(1),
        })

    @property
    def width(self) -> int:
        """Beat width in bits."""
        return self._width

    @property
    def depth(self) -> int:
        """Beats the memory holds."""
        return self._depth

    @property
    def host_read_latency(self) -> int:
        """Cycles from ``host_raddr`` to the beat on ``host_rdata``."""
        return HOST_READ_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        abits = len(self.host_raddr)
        # The RAM's read latch and output register (on ECP5 the DP16KD's own), for host reads.
        m.submodules.ram = ram = PipelinedBlockRam(self._width, self._depth)

        ptr = Signal(abits)
        full = Signal()
        take = self.stream.valid & self.running
        # Write stages: the accepted beat is registered twice and written two cycles later.
        # The first register sits next to the beat's source (the accelerator's accumulator
        # RAM, ~5.6 ns clock-to-out on ECP5), the second carries it to this memory: with one
        # register, accumulator RAM -> routing -> register was the critical path of the 8x8.
        beat = Signal(self._width)
        beat_wen = Signal()
        beat_addr = Signal(abits)
        wen = Signal()
        waddr = Signal(abits)
        wdata = Signal(self._width)
        m.d.sync += [beat_wen.eq(take & ~full), beat_addr.eq(ptr), beat.eq(self.stream.payload),
                     wen.eq(beat_wen), waddr.eq(beat_addr), wdata.eq(beat)]
        m.d.comb += [
            self.stream.ready.eq(self.running),
            ram.waddr.eq(waddr),
            ram.wdata.eq(wdata),
            ram.wen.eq(wen),
            ram.raddr.eq(self.host_raddr),
            ram.ren.eq(1),
        ]
        # Host reads: the RAM's read latch and output register, then one fabric register
        # (HOST_READ_LATENCY cycles).
        m.d.sync += self.host_rdata.eq(ram.rdata)
        with m.If(self.start):
            m.d.sync += [ptr.eq(0), full.eq(0), self.count.eq(0), self.overflow.eq(0)]
        with m.Elif(take):
            m.d.sync += self.count.eq(self.count + 1)
            with m.If(full):
                m.d.sync += self.overflow.eq(1)
            with m.Else():
                m.d.sync += ptr.eq(ptr + 1)
                with m.If(ptr == self._depth - 1):
                    m.d.sync += full.eq(1)
        return m
