"""The accelerator as a complete system (gateware): memories, stream DMA, registers, host interfaces.

* :mod:`~sparsa.hdl.soc.params` - memory sizes, address map, register map, UART command bytes
  (pure Python, shared with the host driver)
* :mod:`~sparsa.hdl.soc.core` - :class:`SocCore`: accelerator + memories + registers on a 32-bit bus
* :mod:`~sparsa.hdl.soc.uart` - UART and the UART-to-bus bridge (byte protocol)
* :mod:`~sparsa.hdl.soc.axi` - AXI4-Lite slave to the bus (Xilinx shells)
* :mod:`~sparsa.hdl.soc.dma` - AXI4 master DMA between device memory (HBM / DDR) and the bus
* :mod:`~sparsa.hdl.soc.top` - :class:`UartSoc`, :class:`AxiSoc`
* :mod:`~sparsa.hdl.soc.board` - board wrappers (clock generation, reset, pins)
* :mod:`~sparsa.hdl.soc.export` - the SoCs' Verilog

The host side (driver, transports, device-memory and AXI slave models, cocotb benches) is
:mod:`sparsa.sim.backends.soc`.  Names are imported lazily so the parameters work without
Amaranth.  See docs/fpga.md.
"""

from __future__ import annotations

import importlib

__all__ = ["SocParams", "SocCore", "UartSoc", "AxiSoc"]

_WHERE = {
    "SocParams": "sparsa.hdl.soc.params",
    "SocCore": "sparsa.hdl.soc.core",
    "UartSoc": "sparsa.hdl.soc.top",
    "AxiSoc": "sparsa.hdl.soc.top",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sparsa.hdl.soc' has no attribute {name!r}")
