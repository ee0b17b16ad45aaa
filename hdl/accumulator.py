"""The accumulator bank: ``accumulator_depth`` rows of ``cols`` wrapping accumulators.

One :class:`amaranth.lib.memory.Memory` with one write port and one **synchronous**,
non-transparent read port: a simple dual-port RAM that maps to block RAM (ECP5 DP16KD,
Xilinx RAMB18/36) - a 256 x 256-bit bank is 64 kbit, too big for LUTRAM - and to LUTRAM
plus an output register when the synthesiser prefers that for small banks.

The read port is shared by the read-modify-write of COMPUTE (``accumulate=1``) and by DRAIN,
which never run at the same time.  Because the read is synchronous, the controller presents
the *next* cycle's row on ``raddr`` (see :class:`~sparsa.hdl.controller.Controller`);
``rdata`` then holds that row during the cycle the write request (or the output beat) needs it.

**Write stage** (:data:`sparsa.timing.ACCUMULATOR_WRITE_LATENCY` = 1): a write request
(``wen``, ``waddr``, ``wdata``, ``accumulate``) is registered together with ``rdata`` in an
enabled cycle (``en``), and the RAM is written in the **next enabled** cycle::

    cycle k (en):      req <= (wen, waddr, wdata, accumulate);  old <= rdata
    next enabled cycle: mem[req.waddr] <= req.accumulate ? old + req.wdata : req.wdata   if req.wen

lane by lane, two's complement, modulo ``2**accumulator_bits``.  So the block RAM's
clock-to-out ends in a register, and the adder sits between registers and the RAM's
write-data input, instead of one RAM-out -> adder -> RAM-in path.  No forwarding is needed:
within a COMPUTE the rows are written in increasing order, so the row read for request ``k``
is never the one pending from request ``k - 1``; the flush (:func:`sparsa.timing.
compute_flush_cycles`) lasts until the pending write is done, so a following DRAIN or
COMPUTE reads finished rows.  Like the array, the stage freezes while ``en`` is low.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.layouts import check_config, output_beat_layout

__all__ = ["AccumulatorBank", "address_bits", "register_bits"]


def address_bits(config: AcceleratorConfig) -> int:
    """Width of a row address of the bank: ``ceil(log2(accumulator_depth))`` (at least 1)."""
    check_config(config)
    return max(1, (config.buffers.accumulator_depth - 1).bit_length())


def register_bits(config: AcceleratorConfig) -> int:
    """Flip-flops of the write stage: request (wen, address, row, accumulate) and the read row."""
    check_config(config)
    return 1 + address_bits(config) + 2 * config.output_beat_bits + 1


class AccumulatorBank(wiring.Component):
    """Accumulator rows with a read-modify-write (or overwrite) write path.

    Parameters
    ----------
    config : AcceleratorConfig
        ``buffers.accumulator_depth`` rows of ``cols`` x ``accumulator_bits``.

    Attributes
    ----------
    raddr : In(address_bits)
        Row to read; ``rdata`` shows it in the **next** cycle (synchronous read).
    rdata : Out(output beat layout)
        The row addressed by ``raddr`` one cycle earlier (contents before that cycle's write).
    en : In(1)
        Advance the write stage (the array's enable): register a request, perform the pending one.
    wen : In(1)
        Request a write of row ``waddr`` (registered when ``en``; the RAM is written in the
        next enabled cycle).
    waddr : In(address_bits)
        Row to write.
    wdata : In(output beat layout)
        Incoming result row.
    accumulate : In(1)
        Write ``rdata + wdata`` (lane-wise, wrapping) instead of ``wdata``.  The caller must
        have addressed ``waddr`` on ``raddr`` in the previous cycle.
    mem_wen : Out(1)
        The RAM is written this cycle (the pending request, for tests and monitors).
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_config(config)
        self._config = config
        abits = address_bits(config)
        super().__init__({
            "raddr": In(abits),
            "rdata": Out(output_beat_layout(config)),
            "en": In(1),
            "wen": In(1),
            "waddr": In(abits),
            "wdata": In(output_beat_layout(config)),
            "accumulate": In(1),
            "mem_wen": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration the bank was built for."""
        return self._config

    @property
    def depth(self) -> int:
        """Rows in the bank (``buffers.accumulator_depth``)."""
        return self._config.buffers.accumulator_depth

    @property
    def memory_bits(self) -> int:
        """Storage bits: ``depth * cols * accumulator_bits``."""
        return self.depth * self._config.output_beat_bits

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=output_beat_layout(cfg), depth=self.depth, init=[])
        rport = mem.read_port(domain="sync", transparent_for=())
        wport = mem.write_port(domain="sync")
        m.d.comb += [
            rport.addr.eq(self.raddr),
            rport.en.eq(1),
            self.rdata.eq(rport.data),
        ]
        # Write stage: the request and the row read for it, registered in an enabled cycle.
        req_wen = Signal(name="req_wen")
        req_waddr = Signal.like(self.waddr, name="req_waddr")
        req_wdata = Signal(output_beat_layout(cfg), name="req_wdata")
        req_accumulate = Signal(name="req_accumulate")
        old = Signal(output_beat_layout(cfg), name="req_old")
        with m.If(self.en):
            m.d.sync += [
                req_wen.eq(self.wen),
                req_waddr.eq(self.waddr),
                req_wdata.eq(self.wdata),
                req_accumulate.eq(self.accumulate),
                old.eq(rport.data),
            ]
        m.d.comb += [
            self.mem_wen.eq(self.en & req_wen),
            wport.addr.eq(req_waddr),
            wport.en.eq(self.mem_wen),
        ]
        for c in range(cfg.cols):
            m.d.comb += wport.data[c].eq(Mux(req_accumulate, old[c] + req_wdata[c], req_wdata[c]))
        return m
