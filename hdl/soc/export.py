"""Verilog of the two SoCs (through :func:`sparsa.hdl.export.write_verilog`).

:func:`soc_verilog` writes the UART SoC that ``sparsa synth --design soc`` synthesises and the
Verilator transport simulates; :func:`axi_soc_verilog` writes the shell kernel's SoC the AXI
Verilator transport simulates (the Xilinx export wraps it in :mod:`sparsa.fpga.xilinx`).
"""

from __future__ import annotations

import os
from pathlib import Path

from sparsa.hdl.export import module_name, write_verilog
from sparsa.hdl.soc.params import DmaConfig, SocParams

__all__ = ["soc_module_name", "axi_soc_module_name", "soc_verilog", "axi_soc_verilog"]


def soc_module_name(params: SocParams) -> str:
    """Verilog module name of the UART SoC for a config: ``sparsa_soc_<config name>``."""
    return "sparsa_soc_" + module_name(params.config)[len("sparsa_"):]


def axi_soc_module_name(params: SocParams) -> str:
    """Verilog module name of the AXI SoC for a config: ``sparsa_axisoc_<config name>``."""
    return "sparsa_axisoc_" + module_name(params.config)[len("sparsa_"):]


def soc_verilog(params: SocParams, divisor: int, out_dir: "str | os.PathLike", *, name: "str | None" = None) -> Path:
    """Write the Verilog of a :class:`~sparsa.hdl.soc.top.UartSoc` (ports ``clk``, ``rst``,
    ``uart_rx``, ``uart_tx``, ``status``); return the file path."""
    from sparsa.hdl.soc.top import UartSoc   # Amaranth: the names above work without it

    return write_verilog(UartSoc(params, divisor), name or soc_module_name(params), out_dir)


def axi_soc_verilog(params: SocParams, dma: "DmaConfig | None", out_dir: "str | os.PathLike", *,
                    name: "str | None" = None) -> Path:
    """Write the Verilog of an :class:`~sparsa.hdl.soc.top.AxiSoc` (``s_axi_control`` and, with
    ``dma``, ``m_axi_gmem``); return the file path."""
    from sparsa.hdl.soc.top import AxiSoc   # Amaranth: the names above work without it

    return write_verilog(AxiSoc(params, dma=dma), name or axi_soc_module_name(params), out_dir)
