"""What :class:`~sparsa.sim.backends.soc.driver.SocDriver` needs of a link to the SoC.

Two kinds of transport (:class:`Transport`, :class:`RegisterTransport`), the errors every
link raises, and the constants the simulated links share.  The implementations, one module
per target:

* :mod:`~sparsa.sim.backends.soc.amaranth_transport` - the UART SoC
  (:class:`~sparsa.sim.backends.soc.amaranth_transport.AmaranthSimTransport`) and the AXI SoC
  (:class:`~sparsa.sim.backends.soc.amaranth_transport.AxiSimTransport`) in ``amaranth.sim``
* :mod:`~sparsa.sim.backends.soc.verilator_transport` - the same two as exported Verilog under
  Verilator + cocotb (:class:`~sparsa.sim.backends.soc.verilator_transport.VerilatorTransport`,
  :class:`~sparsa.sim.backends.soc.verilator_transport.AxiVerilatorTransport`)
* :mod:`~sparsa.sim.backends.soc.serial_transport` - a board's UART through pyserial
  (:class:`~sparsa.sim.backends.soc.serial_transport.SerialTransport`)

This module is pure Python (no Amaranth, no pyserial).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sparsa.errors import SparsaError

__all__ = ["Transport", "RegisterTransport", "TransportBase", "SocError", "SocTimeout", "SIM_DIVISOR",
           "SIM_TIMEOUT"]

#: UART divisor used by simulations (clock cycles per bit).
SIM_DIVISOR = 4

#: Wall-clock seconds a :class:`~sparsa.sim.backends.soc.driver.SocDriver` waits on a simulated SoC by
#: default: generous, because a simulator's speed depends on the machine's load (a DMA run of
#: 1500 cycles took over 10 s in Amaranth on a loaded 2-core machine); the simulation transports
#: bound a run in cycles themselves.
SIM_TIMEOUT = 600.0


class SocError(SparsaError, RuntimeError):
    """The device answered something the protocol does not allow, or is not the expected SoC."""


class SocTimeout(SocError, TimeoutError):
    """The device did not answer (or did not finish a run) in time."""


@runtime_checkable
class Transport(Protocol):
    """A byte pipe to the SoC's UART."""

    def write(self, data: bytes) -> None:  # pragma: no cover - protocol
        """Send ``data``."""
        ...

    def read(self, n: int, timeout: "float | None" = None) -> bytes:  # pragma: no cover - protocol
        """Receive exactly ``n`` bytes or raise :class:`SocTimeout`."""
        ...

    def close(self) -> None:  # pragma: no cover - protocol
        """Release the link."""
        ...


@runtime_checkable
class RegisterTransport(Protocol):
    """Word access to the SoC's registers and memory windows (AXI4-Lite, XRT ``xrt::ip``)."""

    def read_words(self, addr: int, count: int) -> "list[int]":  # pragma: no cover - protocol
        """Read ``count`` words from word address ``addr`` on."""
        ...

    def write_words(self, addr: int, words: Sequence[int]) -> None:  # pragma: no cover - protocol
        """Write ``words`` to word addresses ``addr`` on."""
        ...

    def close(self) -> None:  # pragma: no cover - protocol
        """Release the link."""
        ...


class TransportBase:
    """Base of the transports: ``with SomeTransport(...) as link:`` closes the link at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
