"""The machine's memories as the compiler lays them out: VMEM buffers and device-memory regions.

VMEM is ``sfu.vmem_words`` words of ``sfu.lanes`` fx lanes; a buffer of ``rows`` rows of ``n``
elements holds row ``r`` at words ``addr + r * ceil(n / lanes) ..`` (the SFU's row layout,
:func:`sparsa.sfu.command.row_words`).  The device memory (DM) is byte-addressed; its formats:

===========  ======================================================================================
fx rows      32-bit two's complement, little-endian, row-major (LOAD / STORE)
weights      the GEMM's weight beats, each packed by the datapath's ``pack_weight_beat`` into
             ``ceil(weight_beat_bits / 8)`` little-endian bytes, in stream order
KV head      int8 codes ``[max_positions, head_dim]``, row-major (KV_STORE writes, GEMM KEYS /
             VALUES reads)
===========  ======================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import ConfigError, FormatError
from sparsa.sfu.command import row_words

__all__ = ["VmemBuffer", "VmemAllocator", "DmRegion", "DmAllocator", "fx_bytes", "bytes_fx", "FX_BYTES"]

#: Bytes of one fx value in DM.
FX_BYTES = 4


@dataclass(frozen=True)
class VmemBuffer:
    """``rows`` rows of ``n`` elements at VMEM word ``addr``."""

    name: str
    addr: int
    rows: int
    n: int
    lanes: int

    @property
    def row_words(self) -> int:
        """Words per row."""
        return row_words(self.n, self.lanes)

    @property
    def words(self) -> int:
        """Words of the buffer."""
        return self.rows * self.row_words

    def row(self, r: int) -> int:
        """Word address of row ``r``."""
        return self.addr + r * self.row_words


class VmemAllocator:
    """First-fit allocation of VMEM buffers, with the peak use recorded.

    Parameters
    ----------
    lanes, depth : int
        ``sfu.lanes`` and ``sfu.vmem_words``.
    what : str
        Named by the error when a buffer does not fit (e.g. the block being compiled).
    """

    def __init__(self, lanes: int, depth: int, what: str) -> None:
        self.lanes, self.depth, self.what = lanes, depth, what
        self._free: list[tuple[int, int]] = [(0, depth)]
        self.peak = 0

    def alloc(self, name: str, rows: int, n: int) -> VmemBuffer:
        """A buffer of ``rows`` x ``n`` elements.

        Raises
        ------
        ConfigError
            No free range is large enough (the need, the buffer and ``sfu.vmem_words`` are named).
        """
        words = rows * row_words(n, self.lanes)
        for i, (lo, hi) in enumerate(self._free):
            if hi - lo >= words:
                self._free[i] = (lo + words, hi)
                self.peak = max(self.peak, lo + words)
                return VmemBuffer(name, lo, rows, n, self.lanes)
        used = self.depth - sum(hi - lo for lo, hi in self._free)
        raise ConfigError(f"{self.what}: VMEM buffer {name!r} ({rows} x {n} elements, {words} words) does not fit "
                          f"beside the {used} words in use; sfu.vmem_words={self.depth} (raise it, or shorten the "
                          f"sequence)")

    def free(self, *buffers: VmemBuffer) -> None:
        """Return buffers to the free list (adjacent free ranges merge)."""
        for b in buffers:
            self._free.append((b.addr, b.addr + b.words))
        self._free.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in self._free:
            if hi <= lo:
                continue
            if merged and merged[-1][1] >= lo:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        self._free = merged


@dataclass(frozen=True)
class DmRegion:
    """``size`` bytes of DM at byte ``addr``."""

    name: str
    addr: int
    size: int


class DmAllocator:
    """Bump allocation of DM regions, each aligned to ``align`` bytes, with their initial bytes."""

    def __init__(self, align: int = 64) -> None:
        self.align = align
        self.regions: dict[str, DmRegion] = {}
        self.image = bytearray()

    def region(self, name: str, data: "bytes | int") -> DmRegion:
        """A new region holding ``data`` (or ``data`` zero bytes)."""
        if name in self.regions:
            raise FormatError(f"DM region {name!r} allocated twice")
        addr = -(-len(self.image) // self.align) * self.align
        content = bytes(data) if not isinstance(data, int) else bytes(data)
        self.image.extend(bytes(addr - len(self.image)))
        self.image.extend(content)
        reg = DmRegion(name, addr, len(content))
        self.regions[name] = reg
        return reg


def fx_bytes(values: np.ndarray) -> bytes:
    """fx values as DM bytes (int32 little-endian, row-major)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 31):
        raise FormatError(f"fx values must fit 32 bits, got [{int(v.min())}, {int(v.max())}]")
    return v.astype("<i4").tobytes()


def bytes_fx(data: "bytes | bytearray | memoryview", shape: tuple[int, ...]) -> np.ndarray:
    """DM bytes as fx values of ``shape``."""
    return np.frombuffer(bytes(data), dtype="<i4").astype(np.int64).reshape(shape)
