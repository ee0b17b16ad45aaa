"""AXI4-Lite slave in front of the SoC bus (the Xilinx shells' control interface).

Byte addresses; the word address is ``awaddr >> 2`` / ``araddr >> 2``.  Only full 32-bit
writes are meaningful (``wstrb`` is accepted but ignored: every write writes the whole
word).  Responses are always OKAY.  One transaction at a time per direction; a write and a
read arriving together are served write first.

Channel signals follow the AXI names in lower case (``awvalid``, ``awready``, ``awaddr``,
``awprot``, ``wvalid``, ``wready``, ``wdata``, ``wstrb``, ``bvalid``, ``bready``,
``bresp``, ``arvalid``, ``arready``, ``araddr``, ``arprot``, ``rvalid``, ``rready``,
``rdata``, ``rresp``); :func:`axi_lite_signature` gives the slave's view.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.hdl.soc.bus import DATA_WIDTH, READ_LATENCY, BusSignature

__all__ = ["axi_lite_signature", "AxiLiteBridge"]


def axi_lite_signature(byte_addr_width: int) -> wiring.Signature:
    """AXI4-Lite signature seen from the **master** (flip it for a slave port)."""
    if not isinstance(byte_addr_width, int) or isinstance(byte_addr_width, bool) or not 3 <= byte_addr_width <= 64:
        raise ValueError(f"byte_addr_width must be an integer in 3..64, not {byte_addr_width!r}")
    return wiring.Signature({
        "awvalid": Out(1), "awready": In(1), "awaddr": Out(byte_addr_width), "awprot": Out(3),
        "wvalid": Out(1), "wready": In(1), "wdata": Out(DATA_WIDTH), "wstrb": Out(DATA_WIDTH // 8),
        "bvalid": In(1), "bready": Out(1), "bresp": In(2),
        "arvalid": Out(1), "arready": In(1), "araddr": Out(byte_addr_width), "arprot": Out(3),
        "rvalid": In(1), "rready": Out(1), "rdata": In(DATA_WIDTH), "rresp": In(2),
    })


class AxiLiteBridge(wiring.Component):
    """AXI4-Lite slave -> SoC bus master.

    Parameters
    ----------
    addr_width : int
        Word-address width of the SoC bus (the AXI address has two more bits).

    Attributes
    ----------
    axi : In(axi_lite_signature(addr_width + 2))
        The slave port.
    bus : Out(BusSignature(addr_width))
    """

    def __init__(self, addr_width: int) -> None:
        super().__init__({
            "axi": In(axi_lite_signature(addr_width + 2)),
            "bus": Out(BusSignature(addr_width)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        axi, bus = self.axi, self.bus
        m.d.comb += [axi.bresp.eq(0), axi.rresp.eq(0)]
        rdata = Signal(DATA_WIDTH)
        wait = Signal(range(READ_LATENCY + 1))
        m.d.comb += axi.rdata.eq(rdata)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(axi.awvalid & axi.wvalid):
                    m.d.comb += [
                        axi.awready.eq(1), axi.wready.eq(1),
                        bus.addr.eq(axi.awaddr[2:]), bus.w_data.eq(axi.wdata), bus.w_en.eq(1),
                    ]
                    m.next = "BRESP"
                with m.Elif(axi.arvalid):
                    m.d.comb += [axi.arready.eq(1), bus.addr.eq(axi.araddr[2:]), bus.r_en.eq(1)]
                    m.d.sync += wait.eq(0)
                    m.next = "RDATA"
            with m.State("BRESP"):
                m.d.comb += axi.bvalid.eq(1)
                with m.If(axi.bready):
                    m.next = "IDLE"
            with m.State("RDATA"):                 # READ_LATENCY cycles after r_en
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == READ_LATENCY - 1):
                    m.d.sync += rdata.eq(bus.r_data)
                    m.next = "RRESP"
            with m.State("RRESP"):
                m.d.comb += axi.rvalid.eq(1)
                with m.If(axi.rready):
                    m.next = "IDLE"
        return m
