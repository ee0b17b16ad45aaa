"""The accelerator as a complete system: memories, stream DMA, registers, host interfaces.

* :mod:`~sparsa.hdl.soc.params` - memory sizes, address map, register map (pure Python)
* :mod:`~sparsa.hdl.soc.core` - :class:`SocCore`: accelerator + memories + registers on a 32-bit bus
* :mod:`~sparsa.hdl.soc.uart` - UART and the UART-to-bus bridge (byte protocol)
* :mod:`~sparsa.hdl.soc.axi` - AXI4-Lite slave to the bus (Xilinx shells)
* :mod:`~sparsa.hdl.soc.dma` - AXI4 master DMA between device memory (HBM / DDR) and the bus
* :mod:`~sparsa.hdl.soc.devmem` - device memory as the driver sees it (allocate / write / read)
* :mod:`~sparsa.hdl.soc.axi_model` - cycle model of a stalling, rule-checking AXI4 slave memory
* :mod:`~sparsa.hdl.soc.top` - :class:`UartSoc`, :class:`AxiSoc`
* :mod:`~sparsa.hdl.soc.board` - board wrappers (clock generation, reset, pins)
* :mod:`~sparsa.hdl.soc.driver` - the host driver, one protocol over any transport
* :mod:`~sparsa.hdl.soc.transport` - transports: Amaranth simulation, Verilator, pyserial (UART);
  Amaranth simulation and Verilator of the AXI SoC (register port + device memory)

Names are imported lazily so the driver and the parameters work without Amaranth.
See docs/fpga.md.
"""

from __future__ import annotations

import importlib

__all__ = ["SocParams", "SocCore", "UartSoc", "AxiSoc", "SocDriver"]

_WHERE = {
    "SocParams": "sparsa.hdl.soc.params",
    "SocCore": "sparsa.hdl.soc.core",
    "UartSoc": "sparsa.hdl.soc.top",
    "AxiSoc": "sparsa.hdl.soc.top",
    "SocDriver": "sparsa.hdl.soc.driver",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sparsa.hdl.soc' has no attribute {name!r}")
