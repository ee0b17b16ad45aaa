"""The gateware floor of the matrix-datapath interface (see :mod:`sparsa.datapath`).

Each matrix datapath provides its top-level :class:`~amaranth.lib.wiring.Component` (behind the
same four streams: ``instr``, ``weights``, ``acts``, ``results``, plus ``done`` / ``cycles``) and
an architectural resource estimate; :func:`hdl_datapath` finds them by ``datapath.kind``.
Amaranth is imported only when a top is built, so this module imports without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.hdl import export

__all__ = ["HdlDatapath", "HDL_DATAPATHS", "hdl_datapath"]


def _systolic_top(config: AcceleratorConfig, *, pe_modules: bool = False) -> Any:
    from sparsa.hdl.top import SparseSystolicAccelerator

    return SparseSystolicAccelerator(config, pe_modules=pe_modules)


def _chain_top(config: AcceleratorConfig, *, pe_modules: bool = False) -> Any:
    from sparsa.hdl.chain.top import SparseChainAccelerator

    return SparseChainAccelerator(config)


@dataclass(frozen=True)
class HdlDatapath:
    """What one matrix datapath provides to the gateware flows.

    Attributes
    ----------
    kind : str
        ``datapath.kind``.
    top : callable
        ``(config, *, pe_modules=False) -> Component``: the accelerator behind the four streams
        (``pe_modules`` keeps the systolic PEs as separate Verilog modules; the chain ignores it).
    resource_summary : callable
        ``(config) -> ResourceSummary``: registers, multipliers and memories, without elaboration.
    soc : bool
        The UART / AXI SoC (``sparsa.hdl.soc``) can wrap this datapath.
    """

    kind: str
    top: Callable[..., Any]
    resource_summary: Callable[[AcceleratorConfig], "export.ResourceSummary"]
    soc: bool


#: Every matrix datapath's gateware, by ``datapath.kind``.
HDL_DATAPATHS: dict[str, HdlDatapath] = {
    "systolic": HdlDatapath("systolic", _systolic_top, export.systolic_resource_summary, soc=True),
    "dsp_chain": HdlDatapath("dsp_chain", _chain_top, export.chain_resource_summary, soc=False),
}


def hdl_datapath(config: AcceleratorConfig) -> HdlDatapath:
    """The gateware of ``config``'s datapath."""
    return HDL_DATAPATHS[matrix_datapath(config).kind]
