"""cocotb module: a virtual serial port between a local socket and the SoC's UART pins.

Not imported by user code:
:class:`~sparsa.sim.backends.soc.verilator_transport.VerilatorTransport` copies it into the
build directory and runs it as the top-level cocotb test module (so the simulator
process imports only the standard library and cocotb).  The host driver runs in the
calling process and connects through a Unix socket, exactly as it would talk to a board
through a serial port.

Environment
    ``SPARSA_SOC_SOCKET``   path of the Unix socket the caller listens on
    ``SPARSA_SOC_DIVISOR``  clock cycles per UART bit of the design

Bytes from the socket are played into ``uart_rx`` (8N1, back to back); bytes the design sends
on ``uart_tx`` are sampled in the middle of each bit and written to the socket.  When the
socket closes, the test ends (and passes).  While neither side has anything to say, the
bench waits on the socket for up to 2 ms of wall time before advancing the simulation, so an
idle host does not make the simulator spin.
"""

from __future__ import annotations

import os
import select
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

SOCKET_ENV = "SPARSA_SOC_SOCKET"
DIVISOR_ENV = "SPARSA_SOC_DIVISOR"
CLOCK_PERIOD_NS = 10


@cocotb.test()
async def uart_link(dut):
    """Bridge the socket and the UART pins until the host closes the socket."""
    divisor = int(os.environ[DIVISOR_ENV])
    bit_ns = divisor * CLOCK_PERIOD_NS
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ[SOCKET_ENV])

    dut.uart_rx.value = 1
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    state = {"receiving": False}

    async def receive():
        while True:
            await FallingEdge(dut.uart_tx)
            state["receiving"] = True
            await Timer(bit_ns // 2, unit="ns")
            assert int(dut.uart_tx.value) == 0, "start bit vanished on uart_tx"
            byte = 0
            for i in range(8):
                await Timer(bit_ns, unit="ns")
                byte |= int(dut.uart_tx.value) << i
            await Timer(bit_ns, unit="ns")
            assert int(dut.uart_tx.value) == 1, f"framing error on uart_tx (byte 0x{byte:02x})"
            sock.sendall(bytes([byte]))
            state["receiving"] = False

    cocotb.start_soon(receive())

    while True:
        readable, _, _ = select.select([sock], [], [], 0 if state["receiving"] else 0.002)
        if not readable:
            await Timer(10 * bit_ns, unit="ns")
            continue
        data = sock.recv(1 << 16)
        if not data:
            break
        for byte in data:
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                dut.uart_rx.value = bit
                await Timer(bit_ns, unit="ns")
    # Let a byte still being sent finish, then end.
    await Timer(20 * bit_ns, unit="ns")
    sock.close()
