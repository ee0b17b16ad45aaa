"""One protocol for every way of running a program: ``Backend.run(program, tensors) -> Result``.

Backends: ``reference`` (NumPy golden), ``isa`` (ISA interpreter on the packed streams),
``cycle`` (cycle-accurate model), ``amaranth`` (Amaranth simulation of the HDL),
``verilator`` and ``icarus`` (cocotb on the exported Verilog, Verilator or Icarus Verilog), and the whole UART SoC driven by the host
driver, ``soc-amaranth`` and ``soc-verilator`` (:mod:`sparsa.sim.backends.soc`).  One test
body is parametrized over them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError

__all__ = ["Result", "Backend", "BACKENDS", "get_backend"]


@dataclass(frozen=True)
class Result:
    """What a backend returns.

    Attributes
    ----------
    outputs : dict[str, np.ndarray]
        Output tensors by name (``"Y"`` for a GEMM).
    cycles : int or None
        Clock cycles of the run; ``None`` for untimed backends.
    stats : dict
        Backend-specific counters (cycles per phase, measured ticks, wall time...).
    """

    outputs: dict[str, np.ndarray]
    cycles: int | None
    stats: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """Anything that runs a compiled program on input tensors."""

    name: str

    def run(self, program: Any, tensors: Mapping[str, np.ndarray]) -> Result:  # pragma: no cover - protocol
        """Run ``program`` with ``tensors`` (``{"A": activations}``) and return the result."""
        ...


#: Backend name -> "module:Class" (imported lazily so optional tools stay optional).
BACKENDS: dict[str, str] = {
    "reference": "sparsa.sim.backends.simple:ReferenceBackend",
    "isa": "sparsa.sim.backends.simple:ISABackend",
    "cycle": "sparsa.sim.backends.simple:CycleBackend",
    "amaranth": "sparsa.sim.backends.amaranth_backend:AmaranthBackend",
    "verilator": "sparsa.sim.backends.verilator_backend:VerilatorBackend",
    "icarus": "sparsa.sim.backends.icarus_backend:IcarusBackend",
    "soc-amaranth": "sparsa.sim.backends.soc.backend:SocAmaranthBackend",
    "soc-verilator": "sparsa.sim.backends.soc.backend:SocVerilatorBackend",
}


def get_backend(name: str, config: AcceleratorConfig, **options: Any) -> Backend:
    """Instantiate backend ``name`` for ``config``.

    Raises
    ------
    ConfigError
        Unknown backend name (the message lists the known ones).
    MissingToolError
        The backend's optional tools are not installed.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, cls_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        from sparsa.errors import MissingToolError

        raise MissingToolError(
            f"backend {name!r} needs the Python package {exc.name!r}: pip install 'sparsa[hdl,sim]'") from None
    return getattr(module, cls_name)(config, **options)
