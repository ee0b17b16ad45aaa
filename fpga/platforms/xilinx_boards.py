"""Alveo U280 (xcu280-fsvh2892-2L-e) and VCU1525 (xcvu9p-fsgd2104-2L-e) for Amaranth's Vivado flow.

Pin facts (board master XDC files as published with the boards; also used by the
LiteX board files):

* U280: ``SYSCLK0`` 100 MHz LVDS on BJ43 (P) / BJ44 (N); the FPGA's USB-UART (through the
  FT4232) rx A28, tx B33 (LVCMOS18).  The U280 has no user LEDs wired to the FPGA in its
  XDC; status goes out over the UART only.
* VCU1525: ``clk300`` (the DDR4 C0 reference, 300 MHz) on AY37 (P) / AY38 (N), DIFF_SSTL12;
  USB-UART rx BF18, tx BB20 (LVCMOS12); user LEDs BC21, BB21, BA20 (LVCMOS12).

Not verified on hardware here (no Vivado, no boards); check them against your board's XDC.
"""

from __future__ import annotations

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource, Subsignal
from amaranth.vendor import XilinxPlatform

__all__ = ["AlveoU280Platform", "VCU1525Platform"]


def _uart(rx: str, tx: str, iostandard: str) -> Resource:
    return Resource("uart", 0,
                    Subsignal("rx", Pins(rx, dir="i")), Subsignal("tx", Pins(tx, dir="o")),
                    Attrs(IOSTANDARD=iostandard))


class AlveoU280Platform(XilinxPlatform):
    """Xilinx Alveo U280 data-center card (UltraScale+ with HBM2)."""

    device = "xcu280"
    package = "fsvh2892"
    speed = "2L-e"
    default_clk = "sysclk"
    resources = [
        Resource("sysclk", 0, DiffPairs("BJ43", "BJ44", dir="i"), Clock(100e6), Attrs(IOSTANDARD="LVDS")),
        _uart(rx="A28", tx="B33", iostandard="LVCMOS18"),
    ]
    connectors = []


class VCU1525Platform(XilinxPlatform):
    """Xilinx VCU1525 acceleration development kit (Virtex UltraScale+ VU9P)."""

    device = "xcvu9p"
    package = "fsgd2104"
    speed = "2L-e"
    default_clk = "clk300"
    resources = [
        Resource("clk300", 0, DiffPairs("AY37", "AY38", dir="i"), Clock(300e6), Attrs(IOSTANDARD="DIFF_SSTL12")),
        _uart(rx="BF18", tx="BB20", iostandard="LVCMOS12"),
        Resource("led", 0, Pins("BC21", dir="o"), Attrs(IOSTANDARD="LVCMOS12")),
        Resource("led", 1, Pins("BB21", dir="o"), Attrs(IOSTANDARD="LVCMOS12")),
        Resource("led", 2, Pins("BA20", dir="o"), Attrs(IOSTANDARD="LVCMOS12")),
    ]
    connectors = []
