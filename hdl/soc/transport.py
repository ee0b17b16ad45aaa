"""Transports for :class:`~sparsa.hdl.soc.driver.SocDriver`: Amaranth simulation, Verilator, a serial port.

The first three move bytes to and from the UART SoC's pins; :class:`AxiSimTransport` is a
register port (AXI4-Lite) to the shell kernel's SoC with a simulated device memory behind
its AXI4 master.  The driver above them is the same.

:class:`AmaranthSimTransport`
    Owns an ``amaranth.sim.Simulator`` of a :class:`~sparsa.hdl.soc.top.UartSoc` and steps it
    whenever the driver waits for bytes (background testbenches play the host's bytes into
    ``uart_rx`` and sample ``uart_tx``).  Use a small UART divisor (4) in simulation.
:class:`VerilatorTransport`
    Builds the SoC's Verilog with Verilator (cached like the Verilator backend), runs the
    cocotb bench :mod:`sparsa.hdl.soc.soc_bench` in a background thread and exchanges bytes
    with it over a Unix socket - a virtual serial port.
:class:`SerialTransport`
    pyserial, imported only when used (``pip install pyserial``).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

from sparsa.errors import MissingToolError
from sparsa.hdl.soc.driver import SocError, SocTimeout
from sparsa.hdl.soc.params import SocParams

__all__ = ["AmaranthSimTransport", "AxiSimTransport", "VerilatorTransport", "AxiVerilatorTransport",
           "SerialTransport", "soc_verilog",
           "SIM_DIVISOR"]

#: UART divisor used by simulations (clock cycles per bit).
SIM_DIVISOR = 4


#: Wall-clock seconds a :class:`~sparsa.hdl.soc.driver.SocDriver` waits on a simulated SoC by
#: default: generous, because a simulator's speed depends on the machine's load (a DMA run of
#: 1500 cycles took over 10 s in Amaranth on a loaded 2-core machine); the simulation transports
#: bound a run in cycles themselves.
SIM_TIMEOUT = 600.0


class _ContextMixin:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- Amaranth


class AmaranthSimTransport(_ContextMixin):
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
        from amaranth.sim import Simulator

        from sparsa.hdl.soc.top import UartSoc

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


class AxiSimTransport(_ContextMixin):
    """Drive an :class:`~sparsa.hdl.soc.top.AxiSoc` in ``amaranth.sim``: a register port
    (:class:`~sparsa.hdl.soc.driver.RegisterTransport`) on ``s_axi_control`` and, for a SoC
    with DMA, an AXI4 slave memory on ``m_axi_gmem``.

    The AXI4-Lite master runs one transaction at a time (address and data together, then the
    response), as a PCIe BAR access would.  The slave is an
    :class:`~sparsa.hdl.soc.axi_model.AxiSlaveModel` over ``memory`` with random stalls and
    latency; a protocol violation it records fails the next driver call (:class:`SocError`).

    Parameters
    ----------
    soc : AxiSoc
    memory : DeviceMemoryImage, optional
        Device memory behind ``m_axi_gmem`` (default: 1 MiB at address 0); the driver
        allocates in it (``SocDriver.run(..., memory=link.memory)``).
    seed, stall, max_latency :
        The slave's randomness (:class:`~sparsa.hdl.soc.axi_model.AxiSlaveModel`).
    max_idle_cycles : int
        Cycles one register access may take before :class:`SocTimeout`.
    vcd_path : str, optional
        Write a waveform file (closed by :meth:`close`).
    """

    default_timeout = SIM_TIMEOUT

    CLOCK_PERIOD = 1e-8

    def __init__(self, soc, memory=None, *, seed: int = 0, stall: float = 0.3, max_latency: int = 8,
                 max_idle_cycles: int = 10_000, vcd_path: "str | None" = None) -> None:
        from amaranth.sim import Simulator

        from sparsa.hdl.soc.axi_model import AxiSlaveModel
        from sparsa.hdl.soc.devmem import DeviceMemoryImage
        from sparsa.hdl.soc.top import AxiSoc

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
        from sparsa.hdl.soc.axi_model import MASTER_SIGNALS, SLAVE_SIGNALS

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


# --------------------------------------------------------------------------- Verilator

_BENCH_MODULE = "sparsa_soc_bench"


def soc_module_name(params: SocParams) -> str:
    """Verilog module name of the UART SoC for a config: ``sparsa_soc_<config name>``."""
    from sparsa.hdl.export import module_name

    return "sparsa_soc_" + module_name(params.config)[len("sparsa_"):]


def soc_verilog(params: SocParams, divisor: int, out_dir: "str | os.PathLike", *, name: "str | None" = None) -> Path:
    """Write the Verilog of a :class:`~sparsa.hdl.soc.top.UartSoc` (ports ``clk``, ``rst``,
    ``uart_rx``, ``uart_tx``, ``status``); return the file path."""
    from sparsa.hdl.export import write_verilog
    from sparsa.hdl.soc.top import UartSoc

    name = name or soc_module_name(params)
    return write_verilog(UartSoc(params, divisor), name, out_dir)


def _soc_source_hash() -> str:
    from sparsa.sim.backends.verilator_build import source_hash

    return source_hash()


class VerilatorTransport(_ContextMixin):
    """The SoC's Verilog under Verilator + cocotb, bytes over a Unix socket.

    The model is built once per (config, SoC parameters, divisor, sources) under
    ``build_root`` (default: the Verilator backend's cache, ``$SPARSA_BUILD_DIR`` or
    ``~/.cache/sparsa/verilator``, subfolder ``soc-...``).  Each instance starts one simulator
    process when first used (:meth:`open`) and ends it on :meth:`close`.

    Parameters
    ----------
    params : SocParams
    divisor : int
        UART clock cycles per bit of the design.
    build_root : path, optional
    """

    default_timeout = SIM_TIMEOUT

    def __init__(self, params: SocParams, divisor: int = SIM_DIVISOR, *,
                 build_root: "str | os.PathLike | None" = None) -> None:
        from sparsa.hdl.export import config_hash
        from sparsa.sim.backends.verilator_backend import require_tools
        from sparsa.sim.backends.verilator_build import default_build_root

        if not isinstance(params, SocParams):
            raise TypeError(f"params must be a SocParams, not {params!r}")
        require_tools()
        self.params = params
        self.divisor = divisor
        self.build_root = Path(build_root) if build_root is not None else default_build_root()
        key = f"{config_hash(params.config)}-{params.instr_depth}-{divisor}"
        self.build_dir = self.build_root / f"soc-{hashlib.sha256(key.encode()).hexdigest()[:12]}-{_soc_source_hash()}"
        self.toplevel = soc_module_name(params)
        self.build_seconds: "float | None" = None
        self._sock: "socket.socket | None" = None
        self._server: "socket.socket | None" = None
        self._thread: "threading.Thread | None" = None
        self._failure: "str | None" = None
        self._tmp: "str | None" = None
        self._run_dir: "Path | None" = None
        self._buffer = bytearray()

    # ------------------------------------------------------------------ build
    def _stamp(self) -> dict:
        return {"config": json.loads(self.params.config.model_dump_json()), "instr_depth": self.params.instr_depth,
                "divisor": self.divisor, "toplevel": self.toplevel}

    def is_built(self) -> bool:
        """Whether the cached model exists."""
        from sparsa.sim.backends.verilator_build import is_built

        return is_built(self.build_dir, self.toplevel, self._stamp())

    def build(self) -> Path:
        """Export and build the model unless cached; return the build directory."""
        from sparsa.sim.backends.verilator_build import build_model

        seconds = build_model(self.build_dir, self.toplevel, self._stamp(), self._write_verilog, what="the SoC")
        if seconds is not None:
            self.build_seconds = seconds
        return self.build_dir

    def _write_verilog(self, out_dir: Path) -> Path:
        return soc_verilog(self.params, self.divisor, out_dir, name=self.toplevel)

    def _bench(self):
        """(module whose file is the cocotb bench, the name it runs under)."""
        from sparsa.hdl.soc import soc_bench

        return soc_bench, _BENCH_MODULE

    def _extra_env(self, sock_path: str) -> dict:
        from sparsa.hdl.soc import soc_bench

        return {soc_bench.SOCKET_ENV: sock_path, soc_bench.DIVISOR_ENV: str(self.divisor)}

    # ------------------------------------------------------------------ run
    def open(self, timeout: float = 60.0) -> "VerilatorTransport":
        """Build if needed, start the simulator and connect (idempotent)."""
        if self._sock is not None:
            return self
        from sparsa.sim.backends.verilator_build import install_bench

        bench, bench_name = self._bench()
        build_dir = self.build()
        bench_dir = install_bench(build_dir, bench.__file__, bench_name)
        runs = build_dir / "runs"
        runs.mkdir(exist_ok=True)
        self._run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
        self._tmp = tempfile.mkdtemp(prefix="sparsa-soc-")   # short path: AF_UNIX limits it to ~100 chars
        sock_path = os.path.join(self._tmp, "uart.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(sock_path)
        self._server.listen(1)
        self._server.settimeout(timeout)
        self._thread = threading.Thread(target=self._simulate, args=(build_dir, bench_dir, sock_path), daemon=True)
        self._thread.start()
        try:
            self._sock, _ = self._server.accept()
        except OSError:
            self._thread.join(timeout=5)
            raise SocError(f"the Verilator simulation did not connect: {self._failure or 'timeout'}") from None
        return self

    def _simulate(self, build_dir: Path, bench_dir: Path, sock_path: str) -> None:
        from sparsa.sim.backends.verilator_build import run_bench

        _, bench_name = self._bench()
        run = run_bench(build_dir, self.toplevel, bench_dir, bench_name, self._run_dir, self._extra_env(sock_path))
        self._failure = run.exited
        if run.failed:
            self._failure = "the cocotb bench failed: " + "; ".join(run.failed)
        if self._failure:
            self._failure += f"; log {run.log}:\n{run.tail()}"

    def write(self, data: bytes) -> None:
        """Send bytes to the simulated UART."""
        self.open()
        self._sock.sendall(bytes(data))

    def read(self, n: int, timeout: "float | None" = None) -> bytes:
        """Receive exactly ``n`` bytes (``timeout`` seconds of wall time, default 60)."""
        self.open()
        deadline = time.monotonic() + (60.0 if timeout is None else timeout)
        while len(self._buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SocTimeout(f"no answer from the Verilator simulation ({len(self._buffer)} of {n} bytes)"
                                 + (f": {self._failure}" if self._failure else ""))
            self._sock.settimeout(min(left, 1.0))
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                if self._thread is not None and not self._thread.is_alive():
                    raise SocError(f"the Verilator simulation ended: {self._failure or 'no reason given'}") from None
                continue
            if not chunk:
                raise SocError(f"the Verilator simulation closed the link: {self._failure or 'no reason given'}")
            self._buffer.extend(chunk)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def close(self) -> None:
        """Close the link; the bench then ends the simulation.

        Raises
        ------
        SocError
            The cocotb bench failed (the message holds the log tail).
        """
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if self._failure:
            raise SocError(f"Verilator SoC simulation: {self._failure}")
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None


class _RemoteMemory:
    """:class:`~sparsa.hdl.soc.devmem.DeviceMemory` of an :class:`AxiVerilatorTransport`: the
    memory lives in the simulator process, copies go over the socket (as XRT buffer transfers
    go over PCIe)."""

    def __init__(self, link: "AxiVerilatorTransport") -> None:
        self._link = link

    def allocate(self, nbytes: int, align: int = 4096) -> int:
        """Reserve device memory in the bench; its address."""
        return struct.unpack("<Q", self._link._request(b"A" + struct.pack("<QQ", nbytes, align), 8))[0]

    def write(self, address: int, data: bytes) -> None:
        """Copy to device memory."""
        self._link._request(b"P" + struct.pack("<QQ", address, len(data)) + bytes(data), 0)

    def read(self, address: int, nbytes: int) -> bytes:
        """Copy from device memory."""
        return self._link._request(b"G" + struct.pack("<QQ", address, nbytes), nbytes)

    def free(self, address: int) -> None:
        """Release an allocation."""
        self._link._request(b"F" + struct.pack("<Q", address), 0)

    def inject_error(self, address: int, nbytes: int, *, resp: int = 2, kind: str = "read") -> None:
        """Make accesses to a range answer ``resp`` (see DeviceMemoryImage.inject_error)."""
        self._link._request(b"I" + struct.pack("<QQBB", address, nbytes, resp, ("read", "write").index(kind)), 0)

    def clear_errors(self) -> None:
        """Forget the injected errors."""
        self._link._request(b"C", 0)


class AxiVerilatorTransport(VerilatorTransport):
    """The AXI SoC (:class:`~sparsa.hdl.soc.top.AxiSoc` with DMA) under Verilator + cocotb.

    A register port (:class:`~sparsa.hdl.soc.driver.RegisterTransport`) for
    :class:`~sparsa.hdl.soc.driver.SocDriver`; :attr:`memory` is the device memory behind
    ``m_axi_gmem``, held by the bench (:mod:`sparsa.hdl.soc.axi_bench`) with the same
    stalling, rule-checking slave model as :class:`AxiSimTransport`.  Built once per
    (config, SoC parameters, DMA shape, sources), cached like :class:`VerilatorTransport`.

    Parameters
    ----------
    params : SocParams
    dma : DmaConfig
    seed, stall, max_latency :
        The slave's randomness.
    memory_bytes : int
        Size of the simulated device memory.
    build_root : path, optional
    """

    def __init__(self, params: SocParams, dma, *, seed: int = 0, stall: float = 0.3, max_latency: int = 8,
                 memory_bytes: int = 1 << 20, build_root: "str | os.PathLike | None" = None) -> None:
        from sparsa.hdl.soc.params import DmaConfig

        if not isinstance(dma, DmaConfig):
            raise TypeError(f"dma must be a DmaConfig, not {dma!r}")
        self.dma = dma
        super().__init__(params, SIM_DIVISOR, build_root=build_root)
        from sparsa.hdl.export import config_hash

        key = f"axi-{config_hash(params.config)}-{params.instr_depth}-{dma.data_width}-{dma.max_burst}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        self.build_dir = self.build_root / f"axisoc-{digest}-{_soc_source_hash()}"
        self.toplevel = "sparsa_axisoc_" + soc_module_name(params)[len("sparsa_soc_"):]
        self.bench_config = {"data_width": dma.data_width, "max_burst": dma.max_burst, "seed": seed, "stall": stall,
                             "max_latency": max_latency, "memory_bytes": memory_bytes}
        self.memory = _RemoteMemory(self)

    def _stamp(self) -> dict:
        return {**super()._stamp(), "dma": [self.dma.data_width, self.dma.max_burst]}

    def _write_verilog(self, out_dir: Path) -> Path:
        from sparsa.hdl.export import write_verilog
        from sparsa.hdl.soc.top import AxiSoc

        return write_verilog(AxiSoc(self.params, dma=self.dma), self.toplevel, out_dir)

    def _bench(self):
        from sparsa.hdl.soc import axi_bench

        return axi_bench, "sparsa_axi_bench"

    def _extra_env(self, sock_path: str) -> dict:
        from sparsa.hdl.soc import axi_bench

        return {axi_bench.SOCKET_ENV: sock_path, axi_bench.CONFIG_ENV: json.dumps(self.bench_config)}

    # ------------------------------------------------------------------ requests
    def _request(self, message: bytes, answer: int) -> bytes:
        """Send one message; return the ``answer`` bytes after its 'K' (SocError on 'E')."""
        self.write(message)
        head = self.read(1)
        if head == b"E":
            n, = struct.unpack("<I", self.read(4))
            raise SocError(f"device memory: {self.read(n).decode()}")
        if head != b"K":
            raise SocError(f"the AXI bench answered {head!r}, expected b'K'")
        return self.read(answer) if answer else b""

    def write_words(self, addr: int, words) -> None:
        """AXI4-Lite writes of ``words`` from word address ``addr`` on."""
        words = [int(w) for w in words]
        self._request(b"W" + struct.pack(f"<II{len(words)}I", addr, len(words), *words), 0)

    def read_words(self, addr: int, count: int) -> list[int]:
        """AXI4-Lite reads of ``count`` words."""
        self.write(b"R" + struct.pack("<II", addr, count))
        return list(struct.unpack(f"<{count}I", self.read(4 * count))) if count else []

    def report(self) -> dict:
        """The slave's record: violations, bursts, the longest burst, bursts starting on a 4 KiB boundary."""
        n, = struct.unpack("<I", self._request(b"V", 4))
        return json.loads(self.read(n))


# --------------------------------------------------------------------------- serial


class SerialTransport(_ContextMixin):
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
            import serial
        except ModuleNotFoundError:
            raise MissingToolError("talking to a board needs pyserial: pip install pyserial") from None
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
