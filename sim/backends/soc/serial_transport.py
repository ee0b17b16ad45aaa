"""A board's UART through pyserial: the transport of :class:`~sparsa.sim.backends.soc.driver.SocDriver`
to real hardware (the last rung of the verification ladder).

pyserial is imported only when a :class:`SerialTransport` is made; without it that raises
:class:`~sparsa.errors.MissingToolError` saying how to install it.
"""

from __future__ import annotations

import time

from sparsa.errors import MissingToolError
from sparsa.sim.backends.soc.transport import SocTimeout, TransportBase

__all__ = ["SerialTransport"]


class SerialTransport(TransportBase):
    """A board's UART through pyserial (8N1, no flow control).

    Parameters
    ----------
    port : str
        e.g. ``/dev/ttyUSB0``.
    baud : int
        Must match the bitstream (``sparsa build --baud``; default 1 000 000).

    Raises
    ------
    MissingToolError
        pyserial is not installed.
    """

    def __init__(self, port: str, baud: int = 1_000_000) -> None:
        try:
            import serial   # pyserial, optional
        except ModuleNotFoundError:
            raise MissingToolError("talking to a board needs pyserial: pip install pyserial "
                                   "(or pip install 'sparsa[fpga]')") from None
        self._serial = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=1.0)
        self._serial.reset_input_buffer()

    def write(self, data: bytes) -> None:
        """Send bytes."""
        self._serial.write(bytes(data))
        self._serial.flush()

    def read(self, n: int, timeout: "float | None" = None) -> bytes:
        """Receive exactly ``n`` bytes within ``timeout`` seconds (default 10)."""
        deadline = time.monotonic() + (10.0 if timeout is None else timeout)
        out = bytearray()
        while len(out) < n:
            if time.monotonic() > deadline:
                raise SocTimeout(f"no answer from the board ({len(out)} of {n} bytes)")
            out.extend(self._serial.read(n - len(out)))
        return bytes(out)

    def close(self) -> None:
        """Close the port."""
        self._serial.close()
