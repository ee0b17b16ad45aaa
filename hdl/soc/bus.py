"""The SoC's internal register bus: 32-bit words, one access per cycle, fixed read latency.

Seen from the master (the UART bridge or the AXI4-Lite adapter)::

    addr    word address (SocParams.addr_width bits)
    w_en    write ``w_data`` to ``addr`` in this cycle
    w_data  32-bit write data
    r_en    read ``addr`` in this cycle
    r_data  the word read, valid READ_LATENCY (5) cycles after ``r_en`` (and only then)

There is no back-pressure: the slave accepts every access in the cycle it is presented.
``w_en`` and ``r_en`` are never high together.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BusSignature", "DATA_WIDTH", "READ_LATENCY"]

#: Data width of the bus.
DATA_WIDTH = 32
#: Cycles from ``r_en`` to valid ``r_data``: block-RAM read, a register next to the RAM (its
#: clock-to-out is ~5.8 ns on ECP5), then a register after the region multiplexer (measured on
#: ECP5: with one cycle, RAM -> mux -> bridge was the critical path of a pipelined 8x8 design;
#: with two, RAM -> routing -> register was, in the stream readers that share the read port;
#: with three, the readers' first register still fed the host path and sat far from its RAM),
#: and before all that the SoC registers the request itself (the bridge's strobe -> decode
#: path was critical once the rest was pipelined).
READ_LATENCY = 5


class BusSignature(wiring.Signature):
    """Signature of the bus from the master's side.

    Parameters
    ----------
    addr_width : int
        Word-address width.
    """

    def __init__(self, addr_width: int) -> None:
        if not isinstance(addr_width, int) or isinstance(addr_width, bool) or not 1 <= addr_width <= 30:
            raise ValueError(f"addr_width must be an integer in 1..30, not {addr_width!r}")
        self._addr_width = addr_width
        super().__init__({
            "addr": Out(addr_width),
            "w_en": Out(1),
            "w_data": Out(DATA_WIDTH),
            "r_en": Out(1),
            "r_data": In(DATA_WIDTH),
        })

    @property
    def addr_width(self) -> int:
        """Word-address width."""
        return self._addr_width

    def __eq__(self, other) -> bool:
        return isinstance(other, BusSignature) and other.addr_width == self.addr_width

    def __hash__(self) -> int:
        return hash(("BusSignature", self._addr_width))

    def __repr__(self) -> str:
        return f"BusSignature({self._addr_width})"
