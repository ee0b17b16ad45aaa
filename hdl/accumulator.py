"""The accumulator bank: ``accumulator_depth`` rows of ``cols`` wrapping accumulators.

One simple dual-port RAM with one write port and one **synchronous**, non-transparent read
port: a :class:`sparsa.hdl.bram.PipelinedBlockRam` without its output register (read latency
1).  Off ECP5 that is an :class:`amaranth.lib.memory.Memory`, which maps to block RAM (Xilinx
RAMB18/36) - a 256 x 256-bit bank is 64 kbit, too big for LUTRAM - or to LUTRAM plus an
output register when the synthesiser prefers that for small banks.  On ECP5 it is a grid of
``DP16KD`` (``REGMODE_B = "NOREG"``, x18 tiles) instantiated directly: inferred by Yosys, every
read-data bit passed a LUT multiplexer of its read-during-write emulation, and
``DP16KD DOB`` -> LUT -> the write stage's ``old`` register was the critical path of the 8x8
(docs/fpga.md).  The bank never reads the row it writes in the same cycle (below), so the
DP16KD's undefined result for that case is never seen.

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

**Scaling stage** (only with ``act_scale.granularity`` token / group; nothing of it is built for
per-tensor scales): a second memory, the *scale RAM* (``accumulator_depth`` x ``mantissa_bits``,
unsigned, written by LOAD_S through ``scale_wen`` / ``scale_waddr`` / ``scale_wdata``), is read at
the same address as the accumulator, so the registered request also holds the row's mantissa.
One more enabled cycle (:data:`sparsa.timing.SCALE_STAGE_LATENCY`) registers the ``cols``
products ``wdata[c] x mantissa`` (kept to ``accumulator_bits``, i.e. modulo
``2**accumulator_bits``; each a registered ``accumulator_bits x mantissa_bits`` multiplier that
maps to DSP blocks) together with the request and the old row, and the RAM write becomes::

    mem[req.waddr] <= (req.accumulate ? old : 0) + product

The pending rows of a COMPUTE are distinct, so the extra stage needs no forwarding either.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.bram import PipelinedBlockRam
from sparsa.hdl.layouts import check_config, output_beat_layout
from sparsa.timing import has_scale_stage

__all__ = ["AccumulatorBank", "address_bits", "register_bits", "scale_register_bits"]


def address_bits(config: AcceleratorConfig) -> int:
    """Width of a row address of the bank: ``ceil(log2(accumulator_depth))`` (at least 1)."""
    check_config(config)
    return max(1, (config.buffers.accumulator_depth - 1).bit_length())


def register_bits(config: AcceleratorConfig) -> int:
    """Flip-flops of the write stage: request (wen, address, row, accumulate) and the read row.

    With the scaling stage also the request's mantissa and a second copy of the request
    (wen, address, accumulate, old row) next to the ``cols`` registered products.
    """
    check_config(config)
    bits = 1 + address_bits(config) + 2 * config.output_beat_bits + 1
    if has_scale_stage(config):
        bits += scale_register_bits(config)
    return bits


def scale_register_bits(config: AcceleratorConfig) -> int:
    """Flip-flops the scaling stage adds: the mantissa, then request, old row and products."""
    check_config(config)
    if not has_scale_stage(config):
        return 0
    return config.act_scale.mantissa_bits + 1 + address_bits(config) + 1 + 2 * config.output_beat_bits


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
    scale_wen, scale_waddr, scale_wdata : In(1), In(address_bits), In(mantissa_bits)
        Scaling stage only (``act_scale`` token / group): write mantissa ``scale_wdata`` to
        scale-RAM row ``scale_waddr`` (LOAD_S; not enabled by ``en``).
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_config(config)
        self._config = config
        abits = address_bits(config)
        members = {
            "raddr": In(abits),
            "rdata": Out(output_beat_layout(config)),
            "en": In(1),
            "wen": In(1),
            "waddr": In(abits),
            "wdata": In(output_beat_layout(config)),
            "accumulate": In(1),
            "mem_wen": Out(1),
        }
        if has_scale_stage(config):
            members.update({
                "scale_wen": In(1),
                "scale_waddr": In(abits),
                "scale_wdata": In(config.act_scale.mantissa_bits),
            })
        super().__init__(members)

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

    @property
    def scaled(self) -> bool:
        """The bank has the activation-scaling stage and the scale RAM."""
        return has_scale_stage(self._config)

    @property
    def scale_memory_bits(self) -> int:
        """Scale-RAM bits: ``depth * mantissa_bits`` (0 without the scaling stage)."""
        return self.depth * self._config.act_scale.mantissa_bits if self.scaled else 0

    def elaborate(self, platform) -> Module:
        cfg = self._config
        m = Module()
        m.submodules.ram = mem = PipelinedBlockRam(cfg.output_beat_bits, self.depth, output_register=False)
        read_row = Signal(output_beat_layout(cfg), name="read_row")     # the RAM's read latch
        write_row = Signal(output_beat_layout(cfg), name="write_row")
        m.d.comb += [
            mem.raddr.eq(self.raddr),
            mem.ren.eq(1),
            read_row.eq(mem.rdata),
            self.rdata.eq(read_row),
            mem.wdata.eq(write_row),
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
                old.eq(read_row),
            ]
        if not self.scaled:
            m.d.comb += [
                self.mem_wen.eq(self.en & req_wen),
                mem.waddr.eq(req_waddr),
                mem.wen.eq(self.mem_wen),
            ]
            for c in range(cfg.cols):
                m.d.comb += write_row[c].eq(Mux(req_accumulate, old[c] + req_wdata[c], req_wdata[c]))
            return m

        # Scaling stage: the scale RAM is read at the accumulator's address, so its (synchronous)
        # output is the mantissa of the row the request writes; products are registered one
        # enabled cycle later with the rest of the request.
        mb = cfg.act_scale.mantissa_bits
        m.submodules.scales = scales = memory.Memory(shape=mb, depth=self.depth, init=[])
        sread = scales.read_port(domain="sync", transparent_for=())
        swrite = scales.write_port(domain="sync")
        m.d.comb += [
            sread.addr.eq(self.raddr),
            sread.en.eq(1),
            swrite.addr.eq(self.scale_waddr),
            swrite.data.eq(self.scale_wdata),
            swrite.en.eq(self.scale_wen),
        ]
        req_scale = Signal(mb, name="req_scale")
        prod_wen = Signal(name="prod_wen")
        prod_waddr = Signal.like(self.waddr, name="prod_waddr")
        prod_accumulate = Signal(name="prod_accumulate")
        prod_old = Signal(output_beat_layout(cfg), name="prod_old")
        product = Signal(output_beat_layout(cfg), name="product")
        with m.If(self.en):
            m.d.sync += [
                req_scale.eq(sread.data),
                prod_wen.eq(req_wen),
                prod_waddr.eq(req_waddr),
                prod_accumulate.eq(req_accumulate),
                prod_old.eq(old),
            ]
            for c in range(cfg.cols):
                # signed x unsigned, kept to accumulator_bits (wraps modulo 2**accumulator_bits)
                m.d.sync += product[c].eq(req_wdata[c] * req_scale)
        m.d.comb += [
            self.mem_wen.eq(self.en & prod_wen),
            mem.waddr.eq(prod_waddr),
            mem.wen.eq(self.mem_wen),
        ]
        for c in range(cfg.cols):
            m.d.comb += write_row[c].eq(Mux(prod_accumulate, prod_old[c] + product[c], product[c]))
        return m
