"""cocotb module: the AXI SoC's Verilog with a host on ``s_axi_control`` and device memory on ``m_axi_gmem``.

Not imported by user code:
:class:`~sparsa.sim.backends.soc.verilator_transport.AxiVerilatorTransport` copies it into the
build directory and runs it as the top-level cocotb test module.  The device memory (a
:class:`~sparsa.sim.backends.soc.devmem.DeviceMemoryImage`) and the AXI4 slave serving it (the
same :class:`~sparsa.sim.backends.soc.axi_model.AxiSlaveModel` as in the Amaranth simulation,
with its random stalls and burst checks) live in this process; the host driver runs in the calling
process and talks to both through a Unix socket - register accesses as on a PCIe BAR,
memory copies as XRT buffer transfers would be.

Messages (little endian; the bench answers each before reading the next)::

    'W' addr:u32 n:u32 word[n]:u32       AXI4-Lite writes (word addresses)   -> 'K'
    'R' addr:u32 n:u32                   AXI4-Lite reads                     -> word[n]:u32
    'A' nbytes:u64 align:u64             allocate device memory              -> 'K' addr:u64
    'P' addr:u64 n:u64 data[n]           host -> device copy                 -> 'K'
    'G' addr:u64 n:u64                   device -> host copy                 -> 'K' data[n]
    'F' addr:u64                         free                                -> 'K'
    'I' addr:u64 n:u64 resp:u8 kind:u8   inject an error (kind 0 read, 1 write) -> 'K'
    'C'                                  forget the injected errors          -> 'K'
    'V'                                  slave report                        -> 'K' len:u32 JSON
    (a failing memory request answers 'E' len:u32 message instead of 'K')

Environment: ``SPARSA_SOC_SOCKET`` (socket path), ``SPARSA_AXI_CONFIG`` (JSON: data_width,
max_burst, seed, stall, max_latency, memory_bytes).  When the socket closes, the test ends;
it fails if the slave recorded protocol violations.

Timing: everything is driven at the falling clock edge and sampled in the ReadOnly phase
after it (the values the next rising edge will see), so one slave-model step per cycle sees
exactly that edge's handshakes.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from sparsa.sim.backends.soc.axi_model import MASTER_SIGNALS, SLAVE_SIGNALS, AxiSlaveModel
from sparsa.sim.backends.soc.devmem import DeviceMemoryError, DeviceMemoryImage

SOCKET_ENV = "SPARSA_SOC_SOCKET"
CONFIG_ENV = "SPARSA_AXI_CONFIG"
CLOCK_PERIOD_NS = 10
_SIZES = {b"W": 8, b"R": 8, b"A": 16, b"P": 16, b"G": 16, b"F": 8, b"I": 18, b"C": 0, b"V": 0}


def _error(message: str) -> bytes:
    text = message.encode()
    return b"E" + struct.pack("<I", len(text)) + text


class _Host:
    """Parses the socket's messages; memory requests are answered at once, register requests
    become AXI4-Lite transactions (one word at a time)."""

    def __init__(self, sock, memory: DeviceMemoryImage, slave: AxiSlaveModel) -> None:
        self.sock, self.memory, self.slave = sock, memory, slave
        self.buffer = bytearray()
        self.closed = False
        self.op = None           # [kind, addr, words or count, index, phase, read data]

    def poll(self, wait: float) -> None:
        readable, _, _ = select.select([self.sock], [], [], wait)
        if readable:
            data = self.sock.recv(1 << 20)
            if not data:
                self.closed = True
            self.buffer.extend(data)

    def next_message(self) -> bool:
        """Take one complete message off the buffer (True if one was handled or started)."""
        if not self.buffer:
            return False
        kind = bytes(self.buffer[:1])
        if kind not in _SIZES:
            raise AssertionError(f"unknown host message {kind!r}")
        head = 1 + _SIZES[kind]
        if len(self.buffer) < head:
            return False
        fields = bytes(self.buffer[1:head])
        if kind == b"W":
            addr, n = struct.unpack("<II", fields)
            if len(self.buffer) < head + 4 * n:
                return False
            words = list(struct.unpack(f"<{n}I", bytes(self.buffer[head:head + 4 * n])))
            del self.buffer[:head + 4 * n]
            self.op = ["w", addr, words, 0, "req", []] if n else None
            if not n:
                self.sock.sendall(b"K")
            return True
        if kind == b"R":
            addr, n = struct.unpack("<II", fields)
            del self.buffer[:head]
            self.op = ["r", addr, n, 0, "req", []] if n else None
            return True
        if kind == b"P":
            addr, n = struct.unpack("<QQ", fields)
            if len(self.buffer) < head + n:
                return False
            data = bytes(self.buffer[head:head + n])
            del self.buffer[:head + n]
            self._answer(lambda: self.memory.write(addr, data))
            return True
        del self.buffer[:head]
        if kind == b"A":
            nbytes, align = struct.unpack("<QQ", fields)
            self._answer(lambda: struct.pack("<Q", self.memory.allocate(nbytes, align)))
        elif kind == b"G":
            addr, n = struct.unpack("<QQ", fields)
            self._answer(lambda: self.memory.read(addr, n))
        elif kind == b"F":
            addr, = struct.unpack("<Q", fields)
            self._answer(lambda: self.memory.free(addr))
        elif kind == b"I":
            addr, n, resp, which = struct.unpack("<QQBB", fields)
            self._answer(lambda: self.memory.inject_error(addr, n, resp=resp, kind=("read", "write")[which]))
        elif kind == b"C":
            self._answer(self.memory.clear_errors)
        elif kind == b"V":
            bursts = self.slave.bursts
            report = json.dumps({"violations": self.slave.violations, "bursts": len(bursts),
                                 "longest": max((b[2] for b in bursts), default=0),
                                 "on_boundary": sum(1 for b in bursts if b[1] % 4096 == 0),
                                 "errors": len(self.slave.errors)}).encode()
            self.sock.sendall(b"K" + struct.pack("<I", len(report)) + report)
        return True

    def _answer(self, action) -> None:
        try:
            out = action()
        except (DeviceMemoryError, ValueError) as exc:
            self.sock.sendall(_error(str(exc)))
            return
        self.sock.sendall(b"K" + (out if isinstance(out, bytes) else b""))

    # ------------------------------------------------------------------ AXI4-Lite master
    def drive(self, lite) -> None:
        op = self.op
        req = op is not None and op[4] == "req"
        resp = op is not None and op[4] == "resp"
        write = op is not None and op[0] == "w"
        lite["awvalid"].value = int(req and write)
        lite["wvalid"].value = int(req and write)
        lite["arvalid"].value = int(req and not write)
        lite["bready"].value = int(resp and write)
        lite["rready"].value = int(resp and not write)
        if req:
            addr = (op[1] + op[3]) * 4
            if write:
                lite["awaddr"].value = addr
                lite["wdata"].value = op[2][op[3]]
                lite["wstrb"].value = 0xF
            else:
                lite["araddr"].value = addr

    def sample(self, lite) -> None:
        op = self.op
        if op is None:
            return
        count = len(op[2]) if op[0] == "w" else op[2]
        if op[4] == "req":
            if op[0] == "w" and int(lite["awready"].value) and int(lite["wready"].value):
                op[4] = "resp"
            elif op[0] == "r" and int(lite["arready"].value):
                op[4] = "resp"
        elif op[0] == "w" and int(lite["bvalid"].value):
            op[3] += 1
            op[4] = "req"
        elif op[0] == "r" and int(lite["rvalid"].value):
            op[5].append(int(lite["rdata"].value))
            op[3] += 1
            op[4] = "req"
        if op[3] == count:
            self.sock.sendall(b"K" if op[0] == "w" else struct.pack(f"<{count}I", *op[5]))
            self.op = None


@cocotb.test()
async def axi_link(dut):
    """Serve the host's requests until it closes the socket; no AXI4 protocol violation."""
    cfg = json.loads(os.environ[CONFIG_ENV])
    memory = DeviceMemoryImage(cfg["memory_bytes"])
    slave = AxiSlaveModel(memory, cfg["data_width"], seed=cfg["seed"], stall=cfg["stall"],
                          max_latency=cfg["max_latency"], max_burst=cfg["max_burst"])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ[SOCKET_ENV])
    host = _Host(sock, memory, slave)
    lite = {name: getattr(dut, f"s_axi_control__{name}") for name in (
        "awvalid", "awready", "awaddr", "awprot", "wvalid", "wready", "wdata", "wstrb", "bvalid", "bready", "bresp",
        "arvalid", "arready", "araddr", "arprot", "rvalid", "rready", "rdata", "rresp")}
    gmem_out = [(name, getattr(dut, f"m_axi_gmem__{name}")) for name in SLAVE_SIGNALS]
    gmem_in = [(name, getattr(dut, f"m_axi_gmem__{name}")) for name in MASTER_SIGNALS]
    for name in ("awvalid", "awaddr", "awprot", "wvalid", "wdata", "wstrb", "bready", "arvalid", "araddr", "arprot",
                 "rready"):
        lite[name].value = 0
    for name, sig in gmem_out:
        sig.value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    while not host.closed:
        await FallingEdge(dut.clk)
        if host.op is None:
            # Nothing for the bus: answer memory requests, wait (briefly) for the next message.
            host.poll(0.0 if host.buffer or not slave.idle else 0.002)
            while host.op is None and host.next_message():
                pass
        host.drive(lite)
        outputs = slave.outputs()
        for name, sig in gmem_out:
            sig.value = outputs[name]
        await ReadOnly()
        sampled = {name: int(sig.value) for name, sig in gmem_in}
        slave.clock(sampled)
        host.sample(lite)
    sock.close()
    assert not slave.violations, "AXI4 protocol violations on m_axi_gmem: " + "; ".join(slave.violations[:5])
