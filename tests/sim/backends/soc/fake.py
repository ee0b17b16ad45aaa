"""A deliberately naive Python model of the SoC's UART protocol, register map and memories.

It knows nothing about the accelerator: START only sets DONE.  The driver tests run against
it (fast, no Amaranth), and the same assertions run against the real RTL elsewhere.
"""

from __future__ import annotations

import struct

from sparsa.hdl.soc.params import Ctrl, Reg, Region, SocParams, Status


class FakeSocTransport:
    """Implements the byte protocol of :mod:`sparsa.hdl.soc.uart` over a dict of words."""

    def __init__(self, params: SocParams, *, ack: int = 0x4B) -> None:
        self.params = params
        self.ack = ack
        self.words: dict[int, int] = {params.reg_addr(r): v for r, v in params.register_values().items()}
        self.pending = bytearray()
        self.out = bytearray()
        self.status = 0
        self.closed = False

    def _read_word(self, addr: int) -> int:
        return self.words.get(addr, 0) if addr != self.params.reg_addr(Reg.STATUS) else self.status

    def _write_word(self, addr: int, value: int) -> None:
        if addr == self.params.reg_addr(Reg.CTRL):
            if value & Ctrl.START:
                self.status = int(Status.DONE)
            return
        self.words[addr] = value

    def write(self, data: bytes) -> None:
        self.pending.extend(data)
        while self.pending:
            cmd = self.pending[0]
            if cmd not in (0x57, 0x52):
                del self.pending[0]
                continue
            if len(self.pending) < 7:
                return
            _, addr, n = struct.unpack("<BIH", bytes(self.pending[:7]))
            if cmd == 0x57:
                if len(self.pending) < 7 + 4 * n:
                    return
                for i in range(n):
                    self._write_word(addr + i, struct.unpack("<I", bytes(self.pending[7 + 4 * i:11 + 4 * i]))[0])
                del self.pending[:7 + 4 * n]
                self.out.append(self.ack)
            else:
                del self.pending[:7]
                for i in range(n):
                    self.out.extend(struct.pack("<I", self._read_word(addr + i)))

    def read(self, n: int, timeout=None) -> bytes:
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data

    def close(self) -> None:
        self.closed = True


__all__ = ["FakeSocTransport", "Region"]
