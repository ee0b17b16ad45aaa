"""The SoC in ``amaranth.sim``: transports for :class:`~sparsa.sim.backends.soc.driver.SocDriver`.

:class:`AmaranthSimTransport`
    A byte pipe (:class:`~sparsa.sim.backends.soc.transport.Transport`) to a
    :class:`~sparsa.hdl.soc.top.UartSoc`: owns an ``amaranth.sim.Simulator`` and steps it
    whenever the driver waits for bytes (background testbenches play the host's bytes into
    ``uart_rx`` and sample ``uart_tx``).  Use a small UART divisor
    (:data:`~sparsa.sim.backends.soc.transport.SIM_DIVISOR`) in simulation.
:class:`AxiSimTransport`
    A register port (AXI4-Lite) to the shell kernel's :class:`~sparsa.hdl.soc.top.AxiSoc`,
    with a simulated device memory behind its AXI4 master.
"""

from __future__ import annotations

import collections

from amaranth.sim import Simulator

from sparsa.hdl.soc.top import AxiSoc, UartSoc
from sparsa.sim.backends.soc.axi_model import MASTER_SIGNALS, SLAVE_SIGNALS, AxiSlaveModel
from sparsa.sim.backends.soc.devmem import DeviceMemoryImage
from sparsa.sim.backends.soc.transport import SIM_TIMEOUT, SocError, SocTimeout, TransportBase

__all__ = ["AmaranthSimTransport", "AxiSimTransport"]


class AmaranthSimTransport(TransportBase):
    """Drive a :class:`~sparsa.hdl.soc.top.UartSoc` in ``amaranth.sim`` through its UART pins.

    Parameters
    ----------
    soc : UartSoc
        The design (its ``divisor`` sets the bit time).
    max_idle_cycles : int
        Cycles :meth:`read` simulates without receiving a byte before giving up.
    vcd_path : str, optional
        Write a waveform file (closed by :meth:`close`).
    """

    default_timeout = SIM_TIMEOUT

    CLOCK_PERIOD = 1e-8

    def __init__(self, soc, *, max_idle_cycles: int = 2_000_000, vcd_path: "str | None" = None) -> None:
        if not isinstance(soc, UartSoc):
            raise TypeError(f"soc must be a UartSoc, not {soc!r}")
        self.soc = soc
        self.divisor = soc.divisor
        self.max_idle_cycles = max_idle_cycles
        self.cycles = 0
        self._to_device: collections.deque[int] = collections.deque()
        self._from_device = bytearray()
        self._errors: list[str] = []
        self._stop = False
        self._sim = Simulator(soc)
        self._sim.add_clock(self.CLOCK_PERIOD)
        self._sim.add_testbench(self._sender, background=True)
        self._sim.add_testbench(self._receiver, background=True)
        self._vcd = None
        if vcd_path:
            self._vcd = self._sim.write_vcd(vcd_path)
            self._vcd.__enter__()
        self._closed = False

    async def _sender(self, ctx) -> None:
        d = self.divisor
        ctx.set(self.soc.uart_rx, 1)
        while not self._stop:
            if not self._to_device:
                # Nothing queued: bytes only arrive between run_until() calls, so a coarse
                # poll costs no bandwidth and saves Python wake-ups.
                await ctx.tick().repeat(8 * d)
                continue
            byte = self._to_device.popleft()
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                ctx.set(self.soc.uart_rx, bit)
                await ctx.tick().repeat(d)

    async def _receiver(self, ctx) -> None:
        # tx is a register of the design, so every bit lasts exactly `divisor` cycles:
        # polling every d/2 cycles finds a start bit 0..d/2 cycles late; waiting d/2 more
        # lands every later sample between d/2 and d-1 cycles into its bit.
        d = self.divisor
        tx = self.soc.uart_tx
        half = d // 2
        while not self._stop:
            await ctx.tick().repeat(half)
            if ctx.get(tx):
                continue
            await ctx.tick().repeat(half)
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(d)
                byte |= ctx.get(tx) << i
            await ctx.tick().repeat(d)
            if ctx.get(tx) != 1:
                self._errors.append(f"framing error on uart_tx (byte 0x{byte:02x})")
            self._from_device.append(byte)

    def _step(self, cycles: int) -> None:
        self.cycles += cycles
        self._sim.run_until(self.cycles * self.CLOCK_PERIOD)
        if self._errors:
            raise SocError("; ".join(self._errors))

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the UART receiver of the design."""
        if self._closed:
            raise SocError("transport is closed")
        self._to_device.extend(bytes(data))

    def read(self, n: int, timeout: "float | None" = None) -> bytes:
        """Simulate until ``n`` bytes arrived (``timeout`` is ignored: the budget is in cycles)."""
        if self._closed:
            raise SocError("transport is closed")
        step = 10 * self.divisor * max(1, min(n, 64))
        idle = 0
        have = len(self._from_device)
        while len(self._from_device) < n:
            self._step(step)
            if len(self._from_device) > have:
                have, idle = len(self._from_device), 0
            elif not self._to_device:
                idle += step
                if idle > self.max_idle_cycles:
                    raise SocTimeout(f"no byte from the simulated SoC in {idle} cycles "
                                     f"({len(self._from_device)} of {n} received)")
        out = bytes(self._from_device[:n])
        del self._from_device[:n]
        return out

    def close(self) -> None:
        """Let the testbenches finish, stop (and write the waveform file, if any)."""
        if self._closed:
            return
        self._stop = True
        self._to_device.clear()
        self._closed = True
        self.cycles += 24 * self.divisor      # the longest testbench step is one byte
        self._sim.run_until(self.cycles * self.CLOCK_PERIOD)
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)


class AxiSimTransport(TransportBase):
    """Drive an :class:`~sparsa.hdl.soc.top.AxiSoc` in ``amaranth.sim``: a register port
    (:class:`~sparsa.sim.backends.soc.transport.RegisterTransport`) on ``s_axi_control`` and, for a SoC
    with DMA, an AXI4 slave memory on ``m_axi_gmem``.

    The AXI4-Lite master runs one transaction at a time (address and data together, then the
    response), as a PCIe BAR access would.  The slave is an
    :class:`~sparsa.sim.backends.soc.axi_model.AxiSlaveModel` over ``memory`` with random stalls and
    latency; a protocol violation it records fails the next driver call (:class:`SocError`).

    Parameters
    ----------
    soc : AxiSoc
    memory : DeviceMemoryImage, optional
        Device memory behind ``m_axi_gmem`` (default: 1 MiB at address 0); the driver
        allocates in it (``SocDriver.run(..., memory=link.memory)``).
    seed, stall, max_latency :
        The slave's randomness (:class:`~sparsa.sim.backends.soc.axi_model.AxiSlaveModel`).
    max_idle_cycles : int
        Cycles one register access may take before :class:`SocTimeout`.
    vcd_path : str, optional
        Write a waveform file (closed by :meth:`close`).
    """

    default_timeout = SIM_TIMEOUT

    CLOCK_PERIOD = 1e-8

    def __init__(self, soc, memory=None, *, seed: int = 0, stall: float = 0.3, max_latency: int = 8,
                 max_idle_cycles: int = 10_000, vcd_path: "str | None" = None) -> None:
        if not isinstance(soc, AxiSoc):
            raise TypeError(f"soc must be an AxiSoc, not {soc!r}")
        self.soc = soc
        self.memory = DeviceMemoryImage(1 << 20) if memory is None else memory
        self.slave = None
        if soc.dma is not None:
            self.slave = AxiSlaveModel(self.memory, soc.dma.data_width, seed=seed, stall=stall,
                                       max_latency=max_latency, max_burst=soc.dma.max_burst)
        self.max_idle_cycles = max_idle_cycles
        self.cycles = 0
        self._ops: collections.deque = collections.deque()
        self._reads: list[int] = []
        self._stop = False
        self._sim = Simulator(soc)
        self._sim.add_clock(self.CLOCK_PERIOD)
        self._sim.add_testbench(self._host, background=True)
        if self.slave is not None:
            self._sim.add_testbench(self._device, background=True)
        self._vcd = None
        if vcd_path:
            self._vcd = self._sim.write_vcd(vcd_path)
            self._vcd.__enter__()
        self._closed = False

    async def _host(self, ctx) -> None:
        axi = self.soc.s_axi_control
        while not self._stop:
            if not self._ops:
                await ctx.tick()
                continue
            op = self._ops[0]
            if op[0] == "w":
                ctx.set(axi.awaddr, op[1] * 4)
                ctx.set(axi.wdata, op[2])
                ctx.set(axi.wstrb, 0xF)
                ctx.set(axi.awvalid, 1)
                ctx.set(axi.wvalid, 1)
                await ctx.tick().until(axi.awready & axi.wready)
                ctx.set(axi.awvalid, 0)
                ctx.set(axi.wvalid, 0)
                ctx.set(axi.bready, 1)
                await ctx.tick().until(axi.bvalid)
                ctx.set(axi.bready, 0)
            else:
                ctx.set(axi.araddr, op[1] * 4)
                ctx.set(axi.arvalid, 1)
                await ctx.tick().until(axi.arready)
                ctx.set(axi.arvalid, 0)
                ctx.set(axi.rready, 1)
                data, = await ctx.tick().sample(axi.rdata).until(axi.rvalid)
                ctx.set(axi.rready, 0)
                self._reads.append(data)
            self._ops.popleft()

    async def _device(self, ctx) -> None:
        port = self.soc.m_axi_gmem
        outs = [(name, getattr(port, name)) for name in SLAVE_SIGNALS]
        ins = [(name, getattr(port, name)) for name in MASTER_SIGNALS]
        slave = self.slave
        while not self._stop:
            for name, sig in outs:
                ctx.set(sig, slave.outputs()[name])
            sampled = {name: ctx.get(sig) for name, sig in ins}
            await ctx.tick()
            slave.clock(sampled)

    def _run_ops(self) -> None:
        if self._closed:
            raise SocError("transport is closed")
        idle, left = 0, len(self._ops)
        while self._ops:
            self.cycles += 16
            self._sim.run_until(self.cycles * self.CLOCK_PERIOD)
            self._check()
            idle = 0 if len(self._ops) < left else idle + 16
            left = len(self._ops)
            if idle > self.max_idle_cycles:
                raise SocTimeout(f"an AXI4-Lite access took more than {self.max_idle_cycles} cycles")

    def _check(self) -> None:
        if self.slave is not None and self.slave.violations:
            raise SocError("AXI4 protocol violations on m_axi_gmem: " + "; ".join(self.slave.violations[:5]))

    def write_words(self, addr: int, words) -> None:
        """Write ``words`` to word addresses ``addr`` on (one AXI4-Lite write each)."""
        self._ops.extend(("w", addr + i, int(w)) for i, w in enumerate(words))
        self._run_ops()

    def read_words(self, addr: int, count: int) -> list[int]:
        """Read ``count`` words from word address ``addr`` on."""
        self._ops.extend(("r", addr + i) for i in range(count))
        self._run_ops()
        out, self._reads = self._reads[:count], self._reads[count:]
        return out

    def close(self) -> None:
        """Stop the testbenches (and write the waveform file, if any)."""
        if self._closed:
            return
        self._stop = True
        self._ops.clear()
        self._closed = True
        self.cycles += 4
        self._sim.run_until(self.cycles * self.CLOCK_PERIOD)
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
