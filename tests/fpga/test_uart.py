# amaranth: UnusedElaboratable=no
"""UART receiver/transmitter loopback and the UART-to-bus bridge's byte protocol."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from sparsa.hdl.soc.params import ACK, SOC_VERSION, Reg
from sparsa.hdl.soc.top import UartSoc
from sparsa.hdl.soc.uart import UartBridge, UartRx, UartTx, check_divisor
from sparsa.sim.backends.soc.amaranth_transport import AmaranthSimTransport


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_uart_loopback(divisor):
    """Random bytes through UartTx -> UartRx arrive unchanged; back-to-back frames, no errors."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [int(b) for b in np.random.default_rng(divisor).integers(0, 256, 24)] + [0x00, 0xFF, 0x55]
    received = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def send(ctx):
        for byte in data:
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
            ctx.set(tx.data.valid, 0)

    async def receive(ctx):
        while len(received) < len(data):
            await ctx.tick()
            if ctx.get(rx.strobe):
                received.append(ctx.get(rx.data))
        assert ctx.get(rx.error) == 0

    sim.add_testbench(send, background=True)
    sim.add_testbench(receive)
    sim.run()
    assert received == data


def test_uart_frame_timing():
    """One frame is start + 8 data bits (LSB first) + stop, each exactly `divisor` cycles."""
    d = 5
    tx = UartTx(d)
    sim = Simulator(tx)
    sim.add_clock(1e-8)
    line = []

    async def tb(ctx):
        ctx.set(tx.data.payload, 0xA3)
        ctx.set(tx.data.valid, 1)
        await ctx.tick()
        ctx.set(tx.data.valid, 0)
        for _ in range(10 * d + 3):
            line.append(ctx.get(tx.tx))
            await ctx.tick()
    sim.add_testbench(tb)
    sim.run()
    bits = [0] + [(0xA3 >> i) & 1 for i in range(8)] + [1]
    assert line[:10 * d] == [b for b in bits for _ in range(d)]
    assert line[10 * d:] == [1, 1, 1]


def test_uart_rx_flags_framing_error():
    d = 4
    rx = UartRx(d)
    sim = Simulator(rx)
    sim.add_clock(1e-8)
    seen = {}

    async def tb(ctx):
        await ctx.tick().repeat(3)
        for bit in [0] + [1] * 8 + [0]:           # stop bit low
            ctx.set(rx.rx, bit)
            await ctx.tick().repeat(d)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(3 * d)
        seen["error"] = ctx.get(rx.error)
    sim.add_testbench(tb)
    sim.run()
    assert seen["error"] == 1


def test_divisor_checked():
    with pytest.raises(ValueError, match=r"divisor must be an integer >= 4 \(clock cycles per bit\), not 3"):
        UartTx(3)
    with pytest.raises(ValueError, match="not 2.5"):
        check_divisor(2.5)
    with pytest.raises(ValueError, match="timeout must be an integer >= 2 byte times"):
        UartBridge(4, 10, timeout=10)


def _soc(params, **kw):
    return UartSoc(params, 4, **kw)


def test_bridge_write_read_protocol(small_params):
    """'W' answers 'K' after the last word; 'R' returns the words little-endian; bytes that
    are not commands are ignored; a W with n = 0 still answers 'K'."""
    p = small_params
    with AmaranthSimTransport(_soc(p)) as link:
        scratch = p.reg_addr(Reg.SCRATCH)
        link.write(b"\x00\xff" + struct.pack("<BIH", 0x57, scratch, 1) + struct.pack("<I", 0xA1B2C3D4))
        assert link.read(1) == bytes([ACK])
        link.write(struct.pack("<BIH", 0x52, p.reg_addr(Reg.ID), 1))
        assert link.read(4) == b"ASPS"                       # 0x53505341 little-endian
        link.write(struct.pack("<BIH", 0x52, scratch, 1))
        assert struct.unpack("<I", link.read(4))[0] == 0xA1B2C3D4
        link.write(struct.pack("<BIH", 0x57, scratch, 0))
        assert link.read(1) == bytes([ACK])


def test_bridge_timeout_resynchronises(small_params):
    """A half-sent command is dropped after the timeout; the next command works."""
    p = small_params
    soc = _soc(p, timeout=400)
    with AmaranthSimTransport(soc) as link:
        link.write(struct.pack("<BI", 0x57, p.reg_addr(Reg.SCRATCH)))   # no count, no data
        link._step(2000)                                                  # > timeout of silence
        link.write(struct.pack("<BIH", 0x52, p.reg_addr(Reg.VERSION), 1))
        assert struct.unpack("<I", link.read(4))[0] == SOC_VERSION == 4
