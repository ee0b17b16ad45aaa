"""Amaranth 0.5 hardware of the sparse systolic accelerator (``import sparsa.hdl``).

Components (each a :class:`amaranth.lib.wiring.Component`):

* :class:`~sparsa.hdl.pe.SparsePE` - stationary N:M weight, sparse MUX, MAC
* :class:`~sparsa.hdl.array.SystolicArray` - PE grid with input skew, output deskew, valid tag
* :class:`~sparsa.hdl.accumulator.AccumulatorBank` - accumulator RAM with read-modify-write
* :class:`~sparsa.hdl.controller.Controller` - instruction sequencer and cycle counter
* :class:`~sparsa.hdl.top.SparseSystolicAccelerator` - all of it behind four streams
* :class:`~sparsa.hdl.chain.top.SparseChainAccelerator` - the FlightLLM-style sparse DSP chain
  (streamed weights, activation buffer, packed multipliers; docs/chain.md), built from the
  components of :mod:`sparsa.hdl.chain` (slice, DSP group, chain, buffer, bank, controller)

plus :mod:`~sparsa.hdl.layouts` (stream/instruction layouts), :mod:`~sparsa.hdl.export`
(:func:`generate_verilog`) and :mod:`~sparsa.hdl.verilator` (:func:`lint_verilog`).  Names are imported lazily so that
``import sparsa.hdl`` works without Amaranth; using one then raises
:class:`~sparsa.errors.MissingToolError` with the install command.  See docs/hdl.md.
"""

from __future__ import annotations

import importlib

__all__ = [
    "SparsePE",
    "SystolicArray",
    "AccumulatorBank",
    "Controller",
    "SparseSystolicAccelerator",
    "SparseChainAccelerator",
    "generate_verilog",
    "lint_verilog",
    "resource_summary",
    "VerilogArtifact",
]

_WHERE = {
    "SparsePE": "pe",
    "SystolicArray": "array",
    "AccumulatorBank": "accumulator",
    "Controller": "controller",
    "SparseSystolicAccelerator": "top",
    "SparseChainAccelerator": "chain.top",
    "generate_verilog": "export",
    "lint_verilog": "verilator",
    "resource_summary": "export",
    "VerilogArtifact": "export",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'sparsa.hdl' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"sparsa.hdl.{_WHERE[name]}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "amaranth":
            from sparsa.errors import MissingToolError

            raise MissingToolError("sparsa.hdl needs Amaranth 0.5: pip install 'sparsa[hdl]'") from None
        raise
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
