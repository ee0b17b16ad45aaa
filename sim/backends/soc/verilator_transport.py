"""The SoC's exported Verilog under Verilator + cocotb: transports for
:class:`~sparsa.sim.backends.soc.driver.SocDriver`.

:class:`VerilatorTransport`
    The UART SoC (:func:`~sparsa.hdl.soc.export.soc_verilog`), built with the build cache of
    :mod:`sparsa.sim.backends.verilator_build`; runs the cocotb bench
    :mod:`sparsa.sim.backends.soc.soc_bench` in a background thread and exchanges bytes with
    it over a Unix socket - a virtual serial port.
:class:`AxiVerilatorTransport`
    The AXI SoC (:func:`~sparsa.hdl.soc.export.axi_soc_verilog`): a register port, with the
    device memory (:attr:`AxiVerilatorTransport.memory`, a proxy) held by the cocotb bench
    :mod:`sparsa.sim.backends.soc.axi_bench`.
"""

from __future__ import annotations

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

from sparsa.hdl.export import config_hash
from sparsa.hdl.soc.export import axi_soc_module_name, axi_soc_verilog, soc_module_name, soc_verilog
from sparsa.hdl.soc.params import DmaConfig, SocParams
from sparsa.sim.backends import verilator_build
from sparsa.sim.backends.soc.transport import SIM_DIVISOR, SIM_TIMEOUT, SocError, SocTimeout, TransportBase
from sparsa.sim.backends.verilator_backend import require_tools
from sparsa.sim.backends.verilator_build import default_build_root

__all__ = ["VerilatorTransport", "AxiVerilatorTransport"]

# The benches run as top-level modules copied into the build directory (see verilator_build).
_BENCH_MODULE = "sparsa_soc_bench"


def _soc_source_hash() -> str:
    return verilator_build.source_hash()


class VerilatorTransport(TransportBase):
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
        return verilator_build.is_built(self.build_dir, self.toplevel, self._stamp())

    def build(self) -> Path:
        """Export and build the model unless cached; return the build directory."""
        seconds = verilator_build.build_model(self.build_dir, self.toplevel, self._stamp(), self._write_verilog,
                                              what="the SoC")
        if seconds is not None:
            self.build_seconds = seconds
        return self.build_dir

    def _write_verilog(self, out_dir: Path) -> Path:
        return soc_verilog(self.params, self.divisor, out_dir, name=self.toplevel)

    def _bench(self):
        """(module whose file is the cocotb bench, the name it runs under)."""
        from sparsa.sim.backends.soc import soc_bench   # imports cocotb

        return soc_bench, _BENCH_MODULE

    def _extra_env(self, sock_path: str) -> dict:
        from sparsa.sim.backends.soc import soc_bench   # imports cocotb

        return {soc_bench.SOCKET_ENV: sock_path, soc_bench.DIVISOR_ENV: str(self.divisor)}

    # ------------------------------------------------------------------ run
    def open(self, timeout: float = 60.0) -> "VerilatorTransport":
        """Build if needed, start the simulator and connect (idempotent)."""
        if self._sock is not None:
            return self
        bench, bench_name = self._bench()
        build_dir = self.build()
        bench_dir = verilator_build.install_bench(build_dir, bench.__file__, bench_name)
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
        _, bench_name = self._bench()
        run = verilator_build.run_bench(build_dir, self.toplevel, bench_dir, bench_name, self._run_dir,
                                        self._extra_env(sock_path))
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
    """:class:`~sparsa.sim.backends.soc.devmem.DeviceMemory` of an :class:`AxiVerilatorTransport`: the
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

    A register port (:class:`~sparsa.sim.backends.soc.transport.RegisterTransport`) for
    :class:`~sparsa.sim.backends.soc.driver.SocDriver`; :attr:`memory` is the device memory behind
    ``m_axi_gmem``, held by the bench (:mod:`sparsa.sim.backends.soc.axi_bench`) with the same
    stalling, rule-checking slave model as
    :class:`~sparsa.sim.backends.soc.amaranth_transport.AxiSimTransport`.  Built once per
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
        if not isinstance(dma, DmaConfig):
            raise TypeError(f"dma must be a DmaConfig, not {dma!r}")
        self.dma = dma
        super().__init__(params, SIM_DIVISOR, build_root=build_root)
        key = f"axi-{config_hash(params.config)}-{params.instr_depth}-{dma.data_width}-{dma.max_burst}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        self.build_dir = self.build_root / f"axisoc-{digest}-{_soc_source_hash()}"
        self.toplevel = axi_soc_module_name(params)
        self.bench_config = {"data_width": dma.data_width, "max_burst": dma.max_burst, "seed": seed, "stall": stall,
                             "max_latency": max_latency, "memory_bytes": memory_bytes}
        self.memory = _RemoteMemory(self)

    def _stamp(self) -> dict:
        return {**super()._stamp(), "dma": [self.dma.data_width, self.dma.max_burst]}

    def _write_verilog(self, out_dir: Path) -> Path:
        return axi_soc_verilog(self.params, self.dma, out_dir, name=self.toplevel)

    def _bench(self):
        from sparsa.sim.backends.soc import axi_bench   # imports cocotb

        return axi_bench, "sparsa_axi_bench"

    def _extra_env(self, sock_path: str) -> dict:
        from sparsa.sim.backends.soc import axi_bench   # imports cocotb

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
