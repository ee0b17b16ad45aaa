"""Device memory (HBM / DDR on the card) as the host driver sees it: allocate, write, read.

:class:`~sparsa.sim.backends.soc.driver.SocDriver` places a program's instruction, weight and
activation images in device memory and gets the results back from it through an object
with this interface (:class:`DeviceMemory`):

``allocate(nbytes, align) -> address``
    Reserve ``nbytes`` of device memory; the device byte address the kernel's AXI4 master
    uses (a multiple of ``align``).
``write(address, data)`` / ``read(address, nbytes) -> bytes``
    Copy between host and device memory (inside one allocation).
``free(address)``
    Release an allocation.

:class:`DeviceMemoryImage` implements it over a Python ``bytearray`` - the memory the
simulated AXI4 slave (:class:`~sparsa.sim.backends.soc.axi_model.AxiSlaveModel`) serves.  On a card
the same four methods map onto XRT buffer objects (not provided here: no XRT on this
machine): ``allocate`` = ``xrt::bo(device, nbytes, bank)`` + ``bo.address()`` (``bank``: the
memory group of the bank the kernel's ``m_axi_gmem`` is connected to, e.g. HBM[0] on the U280 -
see ``kernel/connectivity.cfg``), ``write`` = ``bo.write(data, offset)`` +
``bo.sync(XCL_BO_SYNC_BO_TO_DEVICE)``, ``read`` = ``bo.sync(XCL_BO_SYNC_BO_FROM_DEVICE)`` +
``bo.read(nbytes, offset)``, ``free`` = dropping the ``bo``.
This module is pure Python (no Amaranth).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sparsa.errors import SparsaError

__all__ = ["DeviceMemory", "DeviceMemoryImage", "DeviceMemoryError", "RESP_NAMES"]

#: Names of the AXI response codes.
RESP_NAMES = {0: "OKAY", 1: "EXOKAY", 2: "SLVERR", 3: "DECERR"}


class DeviceMemoryError(SparsaError, ValueError):
    """An allocation does not fit, or an access leaves the memory / its allocation."""


@runtime_checkable
class DeviceMemory(Protocol):
    """What :class:`~sparsa.sim.backends.soc.driver.SocDriver` needs of device memory."""

    def allocate(self, nbytes: int, align: int = 4096) -> int:  # pragma: no cover - protocol
        """Reserve ``nbytes``; return the device byte address (a multiple of ``align``)."""
        ...

    def write(self, address: int, data: bytes) -> None:  # pragma: no cover - protocol
        """Copy ``data`` from the host to device memory at ``address``."""
        ...

    def read(self, address: int, nbytes: int) -> bytes:  # pragma: no cover - protocol
        """Copy ``nbytes`` from device memory at ``address`` to the host."""
        ...

    def free(self, address: int) -> None:  # pragma: no cover - protocol
        """Release the allocation that starts at ``address``."""
        ...


def _check_int(name: str, value: object, lo: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return value


class DeviceMemoryImage:
    """A byte array standing for one device-memory bank, with a first-fit allocator.

    Parameters
    ----------
    size : int
        Bytes of memory.
    base : int
        Device byte address of its first byte (e.g. where an HBM pseudo channel starts).

    Besides :class:`DeviceMemory`, the simulated AXI4 slave uses :meth:`load` / :meth:`store`
    (any address inside the memory, no allocation needed), and tests use
    :meth:`inject_error` to make accesses to a range answer ``SLVERR`` / ``DECERR``.
    """

    def __init__(self, size: int, *, base: int = 0) -> None:
        _check_int("size", size, 1)
        _check_int("base", base, 0)
        self.size = size
        self.base = base
        self.data = bytearray(size)
        self._allocations: dict[int, int] = {}        # address -> nbytes
        self._faults: list[tuple[str, int, int, int]] = []   # (kind, start, end, resp)

    def __repr__(self) -> str:
        return f"DeviceMemoryImage(size={self.size}, base=0x{self.base:x}, {len(self._allocations)} allocations)"

    # ------------------------------------------------------------------ DeviceMemory
    def allocate(self, nbytes: int, align: int = 4096) -> int:
        """First fit: the lowest ``align``-aligned address with ``nbytes`` free after it."""
        _check_int("nbytes", nbytes, 1)
        _check_int("align", align, 1)
        if align & (align - 1):
            raise ValueError(f"align must be a power of two, not {align!r}")
        taken = sorted(self._allocations.items())
        cursor = self.base
        for start, length in taken + [(self.base + self.size, 0)]:
            candidate = -(-cursor // align) * align
            if candidate + nbytes <= start:
                self._allocations[candidate] = nbytes
                return candidate
            cursor = max(cursor, start + length)
        raise DeviceMemoryError(f"cannot allocate {nbytes} bytes (align {align}) in {self!r}: "
                                f"{self.size - sum(self._allocations.values())} bytes free")

    def free(self, address: int) -> None:
        """Release the allocation at ``address``."""
        if address not in self._allocations:
            raise DeviceMemoryError(f"0x{address:x} is not the start of an allocation")
        del self._allocations[address]

    def _allocation(self, address: int, nbytes: int) -> None:
        for start, length in self._allocations.items():
            if start <= address and address + nbytes <= start + length:
                return
        raise DeviceMemoryError(f"{nbytes} bytes at 0x{address:x} are not inside one allocation")

    def write(self, address: int, data: bytes) -> None:
        """Copy ``data`` into an allocation."""
        self._allocation(address, len(data))
        self.store(address, data)

    def read(self, address: int, nbytes: int) -> bytes:
        """Copy ``nbytes`` out of an allocation."""
        self._allocation(address, nbytes)
        return self.load(address, nbytes)

    # ------------------------------------------------------------------ raw access (the slave)
    def contains(self, address: int, nbytes: int) -> bool:
        """Whether ``[address, address + nbytes)`` is inside the memory."""
        return self.base <= address and address + nbytes <= self.base + self.size

    def load(self, address: int, nbytes: int) -> bytes:
        """Bytes at any address inside the memory."""
        if not self.contains(address, nbytes):
            raise DeviceMemoryError(f"{nbytes} bytes at 0x{address:x} are outside {self!r}")
        offset = address - self.base
        return bytes(self.data[offset:offset + nbytes])

    def store(self, address: int, data: bytes, strobe: "int | None" = None) -> None:
        """Write bytes at any address inside the memory; ``strobe`` bit ``i`` enables byte ``i``."""
        if not self.contains(address, len(data)):
            raise DeviceMemoryError(f"{len(data)} bytes at 0x{address:x} are outside {self!r}")
        offset = address - self.base
        if strobe is None:
            self.data[offset:offset + len(data)] = data
            return
        for i, byte in enumerate(data):
            if strobe >> i & 1:
                self.data[offset + i] = byte

    def inject_error(self, address: int, nbytes: int, *, resp: int = 2, kind: str = "read") -> None:
        """Make ``kind`` ("read" or "write") accesses touching the range answer ``resp``
        (2 = SLVERR, 3 = DECERR)."""
        if kind not in ("read", "write"):
            raise ValueError(f"kind must be 'read' or 'write', not {kind!r}")
        if resp not in (2, 3):
            raise ValueError(f"resp must be 2 (SLVERR) or 3 (DECERR), not {resp!r}")
        self._faults.append((kind, address, address + nbytes, resp))

    def clear_errors(self) -> None:
        """Forget every injected error."""
        self._faults.clear()

    def fault(self, kind: str, address: int, nbytes: int) -> int:
        """The response for an access: an injected error, DECERR outside the memory, else OKAY (0)."""
        if not self.contains(address, nbytes):
            return 3
        for k, start, end, resp in self._faults:
            if k == kind and address < end and start < address + nbytes:
                return resp
        return 0
