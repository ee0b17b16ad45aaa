"""The accumulator bank: ``accumulator_depth`` rows of ``cols`` wrapping accumulators.

One :class:`amaranth.lib.memory.Memory` with one write port and one **synchronous**,
non-transparent read port: a simple dual-port RAM that maps to block RAM (ECP5 DP16KD,
Xilinx RAMB18/36) - a 256 x 256-bit bank is 64 kbit, too big for LUTRAM - and to LUTRAM
plus an output register when the synthesiser prefers that for small banks.

The read port is shared by the read-modify-write of COMPUTE (``accumulate=1``) and by DRAIN,
which never run at the same time.  Because the read is synchronous, the controller presents
the *next* cycle's row on ``raddr`` (see :class:`~sparsa.hdl.controller.Controller`);
``rdata`` then holds that row during the cycle the write (or the output beat) needs it.

Write semantics, lane by lane (two's complement, modulo ``2**accumulator_bits``)::

    mem[waddr] <= accumulate ? rdata + wdata : wdata        when wen
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import AcceleratorConfig
from sparsa.hdl.layouts import check_config, output_beat_layout

__all__ = ["AccumulatorBank", "address_bits"]


def address_bits(config: AcceleratorConfig) -> int:
    """Width of a row address of the bank: ``ceil(log2(accumulator_depth))`` (at least 1)."""
    check_config(config)
    return max(1, (config.buffers.accumulator_depth - 1).bit_length())


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
    wen : In(1)
        Write row ``waddr`` this cycle.
    waddr : In(address_bits)
        Row to write.
    wdata : In(output beat layout)
        Incoming result row.
    accumulate : In(1)
        Write ``rdata + wdata`` (lane-wise, wrapping) instead of ``wdata``.  The caller must
        have addressed ``waddr`` on ``raddr`` in the previous cycle.
    """

    def __init__(self, config: AcceleratorConfig) -> None:
        check_config(config)
        self._config = config
        abits = address_bits(config)
        super().__init__({
            "raddr": In(abits),
            "rdata": Out(output_beat_layout(config)),
            "wen": In(1),
            "waddr": In(abits),
            "wdata": In(output_beat_layout(config)),
            "accumulate": In(1),
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
            wport.addr.eq(self.waddr),
            wport.en.eq(self.wen),
        ]
        for c in range(cfg.cols):
            m.d.comb += wport.data[c].eq(Mux(self.accumulate, rport.data[c] + self.wdata[c], self.wdata[c]))
        return m
