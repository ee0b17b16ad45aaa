"""AXI4 memory-mapped master DMA: device memory (HBM / DDR) <-> the SoC's on-chip memories.

:class:`AxiDma` runs one *job* at a time: copy ``words`` 32-bit words between device memory
at byte address ``dev_addr`` and the SoC bus at word address ``soc_addr`` - from device
memory into the SoC (``write = 0``: the load of the instruction / weight / activation
memories) or out of it (``write = 1``: the store of the result memory).  The sequence load
-> run -> store, and the registers that set it up, are :class:`~sparsa.hdl.soc.core.SocCore`'s
(``RUN_DMA``, docs/fpga.md).

**Device-memory image = the host window.**  The DMA is a second master of the SoC's 32-bit
bus (behind the host, which has priority: ``grant`` is low in the cycles the host uses the
bus).  It writes exactly the words a host writes through ``s_axi_control`` into a memory's
window - each beat padded to its power-of-two ``stride`` of words, lowest word first - so
an image in device memory is the window's layout, byte for byte (little endian), and the
core's staging register commits each beat when its last word arrives.  Going through the
bus rather than straight into the buffers' host write ports keeps one address decode, one
staging / commit path and one layout for host and DMA (nothing in
:mod:`~sparsa.hdl.soc.buffers` changes) at the price of bandwidth: one 32-bit word per cycle
(400 MB/s at 100 MHz), less than one HBM pseudo channel gives.  A wide path into the
buffers' write ports is the step after this one.

**Bursts** (AXI4, IHI 0022): INCR (``AxBURST = 01``), ``AxSIZE = log2(data_width / 8)``
(full-width beats; device addresses must be aligned to ``data_width / 8`` bytes - the
sequencer checks that before it starts), ``AxLEN = beats - 1`` with ``beats = min(beats
left, max_burst, beats to the next 4 KiB boundary)``, so no burst crosses a 4 KiB boundary.
``AxCACHE = 0011`` (normal, non-cacheable, bufferable), ``AxPROT = 0``, no IDs (one
transaction at a time per direction: address, then all data, then the next burst).  Write
beats carry ``WSTRB`` = the bytes of the words still to store (a partial last beat has its
tail strobed off) and ``WLAST`` on the last beat; ``BRESP`` / ``RRESP`` ``SLVERR`` or
``DECERR`` (bit 1 set) stops the job after the current burst and is reported on
``job.error`` / ``job.resp`` (read data of a failed burst is dropped).  ``RLAST`` is not
needed: the DMA counts the beats it asked for.

Rates: a read beat of ``W = data_width / 32`` words takes ``W + 1`` cycles (unpack one word
per cycle, then take the next beat); a write beat ``W`` bus reads + the bus read latency + 1.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.hdl.soc.bus import DATA_WIDTH, READ_LATENCY, BusSignature
from sparsa.hdl.soc.params import DMA_DATA_WIDTHS, ceil_log2

__all__ = ["axi4_signature", "DmaJobSignature", "AxiDma", "DATA_WIDTHS", "AXI_BOUNDARY", "AXI_ADDR_WIDTH",
           "RESP_OKAY", "RESP_EXOKAY", "RESP_SLVERR", "RESP_DECERR"]

#: AXI data widths the DMA supports (the SoC bus is 32 bits; wider beats are split).
DATA_WIDTHS = DMA_DATA_WIDTHS
#: Device byte-address width of the shell kernels' AXI4 masters (Vitis requires 64).
AXI_ADDR_WIDTH = 64
#: No AXI burst may cross a multiple of this many bytes.
AXI_BOUNDARY = 4096
#: AXI response codes (``xRESP``).
RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = 0, 1, 2, 3


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return value


def axi4_signature(addr_width: int = 64, data_width: int = 64) -> wiring.Signature:
    """AXI4 (full) signature seen from the **master**: the five channels, INCR bursts, no IDs.

    Member names are the AXI names in lower case (``awvalid`` ... ``rlast``); a Vitis kernel
    wrapper prefixes them with ``m_axi_<bundle>_``.

    Parameters
    ----------
    addr_width : int
        Byte-address width (Vitis kernels use 64).
    data_width : int
        One of :data:`DATA_WIDTHS`.
    """
    _check_int("addr_width", addr_width, 12, 64)
    if data_width not in DATA_WIDTHS or isinstance(data_width, bool):
        raise ValueError(f"data_width must be one of {DATA_WIDTHS}, not {data_width!r}")
    return wiring.Signature({
        "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awcache": Out(4), "awprot": Out(3),
        "wvalid": Out(1), "wready": In(1), "wdata": Out(data_width), "wstrb": Out(data_width // 8),
        "wlast": Out(1),
        "bvalid": In(1), "bready": Out(1), "bresp": In(2),
        "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arcache": Out(4), "arprot": Out(3),
        "rvalid": In(1), "rready": Out(1), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
    })


class DmaJobSignature(wiring.Signature):
    """One DMA job, seen from the requester (the SoC's sequencer).

    ``start`` (one cycle) latches ``write``, ``dev_addr``, ``soc_addr`` and ``words``;
    ``busy`` is high from the next cycle until the job is over (it stays low for
    ``words = 0``).  ``error`` / ``resp`` hold the first error response of the job until the
    next ``start``.

    Parameters
    ----------
    addr_width : int
        SoC bus word-address width.
    axi_addr_width : int
        Device byte-address width.
    """

    def __init__(self, addr_width: int, axi_addr_width: int = 64) -> None:
        _check_int("addr_width", addr_width, 1, 30)
        _check_int("axi_addr_width", axi_addr_width, 12, 64)
        self._addr_width = addr_width
        self._axi_addr_width = axi_addr_width
        super().__init__({
            "start": Out(1), "write": Out(1), "dev_addr": Out(axi_addr_width), "soc_addr": Out(addr_width),
            "words": Out(32),
            "busy": In(1), "error": In(1), "resp": In(2),
        })

    def __eq__(self, other) -> bool:
        return (isinstance(other, DmaJobSignature) and other._addr_width == self._addr_width
                and other._axi_addr_width == self._axi_addr_width)

    def __hash__(self) -> int:
        return hash(("DmaJobSignature", self._addr_width, self._axi_addr_width))

    def __repr__(self) -> str:
        return f"DmaJobSignature({self._addr_width}, {self._axi_addr_width})"


class AxiDma(wiring.Component):
    """AXI4 master that copies words between device memory and the SoC bus, one job at a time.

    Parameters
    ----------
    addr_width : int
        SoC bus word-address width (:attr:`SocParams.addr_width`).
    data_width : int
        AXI data width in bits, one of :data:`DATA_WIDTHS` (default 64).
    max_burst : int
        Most beats per burst, 1..256 (AXI4 INCR limit; default 16).
    axi_addr_width : int
        Device byte-address width (default 64, the Vitis kernel convention).

    Attributes
    ----------
    job : In(DmaJobSignature(addr_width, axi_addr_width))
        The job to run and its state.
    bus : Out(BusSignature(addr_width))
        Second master of the SoC bus; an access happens only in a cycle with ``grant``.
    grant : In(1)
        The bus is free for the DMA in this cycle (the host does not use it).
    axi : Out(axi4_signature(axi_addr_width, data_width))
        The AXI4 master port (``m_axi_gmem`` in the shell kernel).
    """

    def __init__(self, addr_width: int, *, data_width: int = 64, max_burst: int = 16,
                 axi_addr_width: int = 64) -> None:
        _check_int("addr_width", addr_width, 1, 30)
        if data_width not in DATA_WIDTHS or isinstance(data_width, bool):
            raise ValueError(f"data_width must be one of {DATA_WIDTHS}, not {data_width!r}")
        _check_int("max_burst", max_burst, 1, 256)
        _check_int("axi_addr_width", axi_addr_width, 12, 64)
        self._addr_width = addr_width
        self._data_width = data_width
        self._max_burst = max_burst
        self._axi_addr_width = axi_addr_width
        super().__init__({
            "job": In(DmaJobSignature(addr_width, axi_addr_width)),
            "bus": Out(BusSignature(addr_width)),
            "grant": In(1),
            "axi": Out(axi4_signature(axi_addr_width, data_width)),
        })

    @property
    def data_width(self) -> int:
        """AXI data width in bits."""
        return self._data_width

    @property
    def max_burst(self) -> int:
        """Most beats per burst."""
        return self._max_burst

    @property
    def axi_addr_width(self) -> int:
        """Device byte-address width."""
        return self._axi_addr_width

    @property
    def words_per_beat(self) -> int:
        """32-bit words per AXI beat."""
        return self._data_width // DATA_WIDTH

    def elaborate(self, platform) -> Module:
        m = Module()
        job, bus, axi = self.job, self.bus, self.axi
        n_words = self.words_per_beat
        lw = ceil_log2(n_words)
        lb = ceil_log2(self._data_width // 8)

        dev = Signal(self._axi_addr_width)          # byte address of the next burst
        soc = Signal(self._addr_width)              # next SoC word address
        left = Signal(32)                           # words still to copy
        write = Signal()
        failed = Signal()
        resp = Signal(2)
        blen = Signal(range(self._max_burst + 1))   # beats of the current burst (1..max_burst)
        beat = Signal(range(self._max_burst + 1))   # beats transferred in it

        m.d.comb += [
            job.error.eq(failed), job.resp.eq(resp),
            axi.araddr.eq(dev), axi.awaddr.eq(dev),
            axi.arlen.eq(blen - 1), axi.awlen.eq(blen - 1),
            axi.arsize.eq(lb), axi.awsize.eq(lb),
            axi.arburst.eq(0b01), axi.awburst.eq(0b01),          # INCR
            axi.arcache.eq(0b0011), axi.awcache.eq(0b0011),      # normal, non-cacheable, bufferable
            axi.arprot.eq(0), axi.awprot.eq(0),
        ]

        # Burst length: the beats left, at most max_burst, never across a 4 KiB boundary.
        beats_left = (left + (n_words - 1)) >> lw
        to_boundary = (AXI_BOUNDARY - dev[:12]) >> lb
        shorter = Mux(beats_left < to_boundary, beats_left, to_boundary)
        plan = Mux(shorter < self._max_burst, shorter, self._max_burst)
        next_dev = dev + (blen << lb)

        # Read side: one AXI beat held while its words go onto the bus, lowest first.
        rbuf = Signal(self._data_width)
        have = Signal()
        widx = Signal(max(1, lw))
        # Write side: words read from the bus (READ_LATENCY later) gathered into one beat.
        wbuf = Signal(self._data_width)
        strb = Signal(self._data_width // 8)
        issued = Signal(range(n_words + 1))
        arrived = Signal(range(n_words + 1))
        inflight = [Signal(name=f"inflight{i}") for i in range(READ_LATENCY)]
        inflight_idx = [Signal(max(1, lw), name=f"inflight_idx{i}") for i in range(READ_LATENCY)]
        issue = Signal()

        def word(value, index, width=DATA_WIDTH):
            return value if n_words == 1 else value.word_select(index, width)
        m.d.sync += [inflight[0].eq(issue), inflight_idx[0].eq(issued)]
        m.d.sync += [inflight[i].eq(inflight[i - 1]) for i in range(1, READ_LATENCY)]
        m.d.sync += [inflight_idx[i].eq(inflight_idx[i - 1]) for i in range(1, READ_LATENCY)]
        with m.If(inflight[-1]):                  # r_data is the word issued READ_LATENCY cycles ago
            m.d.sync += [word(wbuf, inflight_idx[-1]).eq(bus.r_data),
                         word(strb, inflight_idx[-1], DATA_WIDTH // 8).eq(0b1111),
                         arrived.eq(arrived + 1)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(job.start):
                    m.d.sync += [dev.eq(Cat(Const(0, lb), job.dev_addr[lb:])),
                                 soc.eq(job.soc_addr), left.eq(job.words), write.eq(job.write),
                                 failed.eq(0), resp.eq(0)]
                    with m.If(job.words != 0):
                        m.next = "PLAN"
            with m.State("PLAN"):
                m.d.comb += job.busy.eq(1)
                m.d.sync += [blen.eq(plan), beat.eq(0)]
                with m.If(write):
                    m.next = "AW"
                with m.Else():
                    m.next = "AR"

            # ------------------------------------------------------------ read: device -> SoC
            with m.State("AR"):
                m.d.comb += [job.busy.eq(1), axi.arvalid.eq(1)]
                with m.If(axi.arready):
                    m.next = "R"
            with m.State("R"):
                m.d.comb += [job.busy.eq(1), axi.rready.eq(~have)]
                with m.If(axi.rvalid & ~have):
                    m.d.sync += [rbuf.eq(axi.rdata), have.eq(1), beat.eq(beat + 1)]
                    with m.If(axi.rresp[1] & ~failed):
                        m.d.sync += [failed.eq(1), resp.eq(axi.rresp)]
                with m.If(have):
                    with m.If((left != 0) & ~failed):
                        m.d.comb += [bus.w_en.eq(1), bus.addr.eq(soc),
                                     bus.w_data.eq(word(rbuf, widx))]
                        with m.If(self.grant):
                            m.d.sync += [soc.eq(soc + 1), left.eq(left - 1), widx.eq(widx + 1)]
                            with m.If((widx == n_words - 1) | (left == 1)):
                                m.d.sync += [have.eq(0), widx.eq(0)]
                    with m.Else():                # past the last word, or the burst failed: drop
                        m.d.sync += [have.eq(0), widx.eq(0)]
                with m.Elif(beat == blen):        # every beat of the burst received and unpacked
                    m.d.sync += dev.eq(next_dev)
                    with m.If((left == 0) | failed):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "PLAN"

            # ------------------------------------------------------------ write: SoC -> device
            with m.State("AW"):
                m.d.comb += [job.busy.eq(1), axi.awvalid.eq(1)]
                m.d.sync += [issued.eq(0), arrived.eq(0), strb.eq(0)]
                with m.If(axi.awready):
                    m.next = "W"
            with m.State("W"):
                m.d.comb += job.busy.eq(1)
                full = (issued == n_words) | (left == 0)
                beat_ready = (issued != 0) & (arrived == issued) & full
                with m.If(~full):
                    m.d.comb += [bus.r_en.eq(1), bus.addr.eq(soc)]
                    with m.If(self.grant):
                        m.d.comb += issue.eq(1)
                        m.d.sync += [soc.eq(soc + 1), left.eq(left - 1), issued.eq(issued + 1)]
                m.d.comb += [axi.wvalid.eq(beat_ready), axi.wdata.eq(wbuf), axi.wstrb.eq(strb),
                             axi.wlast.eq(beat == blen - 1)]
                with m.If(beat_ready & axi.wready):
                    m.d.sync += [beat.eq(beat + 1), issued.eq(0), arrived.eq(0), strb.eq(0)]
                    with m.If(beat == blen - 1):
                        m.next = "B"
            with m.State("B"):
                m.d.comb += [job.busy.eq(1), axi.bready.eq(1)]
                with m.If(axi.bvalid):
                    m.d.sync += dev.eq(next_dev)
                    with m.If(axi.bresp[1]):
                        m.d.sync += [failed.eq(1), resp.eq(axi.bresp)]
                    with m.If((left == 0) | axi.bresp[1]):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "PLAN"
        return m
