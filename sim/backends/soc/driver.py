"""Host driver of the SoC: the same code drives the Amaranth simulation, Verilator and a board.

The driver reads and writes 32-bit words at word addresses (the register map and memory
windows of :mod:`sparsa.hdl.soc.params`) over a transport of one of two kinds
(:mod:`sparsa.sim.backends.soc.transport`, which lists the implementations):

* a byte pipe (:class:`~sparsa.sim.backends.soc.transport.Transport`: ``write(bytes)``,
  ``read(n, timeout) -> bytes``, ``close()``) to the UART bridge; the driver speaks its byte
  protocol (:mod:`sparsa.hdl.soc.uart`; the command bytes are in :mod:`sparsa.hdl.soc.params`);
* a register port (:class:`~sparsa.sim.backends.soc.transport.RegisterTransport`:
  ``read_words(addr, n)``, ``write_words(addr, words)``, ``close()``) - the shell kernel's
  AXI4-Lite ``s_axi_control`` (byte address = word address * 4); on a card, ``xrt::ip``
  ``read_register`` / ``write_register`` (not provided here).

With a :class:`~sparsa.sim.backends.soc.devmem.DeviceMemory` (``run(..., memory=...)``) the driver
places the program's streams in device memory and lets the SoC's DMA load, run and store
(``RUN_DMA``); without one it writes the on-chip memories through the transport.

>>> with SerialTransport("/dev/ttyUSB0", baud=1_000_000) as link:          # doctest: +SKIP
...     soc = SocDriver(link, cfg)
...     soc.identify()
...     result = soc.run(program, {"A": a})
>>> result.outputs["Y"], result.cycles                                      # doctest: +SKIP

:meth:`SocDriver.run` returns a :class:`sparsa.sim.backends.base.Result`, like every backend.
This module needs neither Amaranth nor pyserial.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, ShapeError
from sparsa.hdl.soc.params import (ACK, CMD_READ, CMD_WRITE, DMA_REGS, SOC_ID, SOC_VERSION, Ctrl, DmaPhase, Reg,
                                   Region, SocParams, Status, parse_dma_caps)
from sparsa.isa import illegal_instruction
from sparsa.layout import pack_activation_beat, pack_weight_beat, unpack_output_beat
from sparsa.sim.backends.base import Result
from sparsa.sim.backends.soc.devmem import RESP_NAMES, DeviceMemory
from sparsa.sim.backends.soc.transport import RegisterTransport, SocError, SocTimeout, Transport

__all__ = ["SocDriver", "DEFAULT_TIMEOUT", "SocDmaError", "MAX_WORDS_PER_COMMAND", "beat_words", "image_bytes"]

#: Most words one 'W' / 'R' command carries (16-bit count field).
MAX_WORDS_PER_COMMAND = 0xFFFF


class SocDmaError(SocError):
    """A RUN_DMA sequence stopped: an AXI error response, a misaligned address or a count too large."""


def beat_words(bits: int, stride: int, beats: Sequence[int]) -> list[int]:
    """The words of ``beats`` (``bits`` wide) in the window layout: each beat's words lowest
    first, padded with zeros to ``stride`` words."""
    words: list[int] = []
    mask = (1 << 32) - 1
    n = -(-bits // 32)
    for beat in beats:
        beat = int(beat)
        if beat < 0 or beat >> bits:
            raise ValueError(f"beat 0x{beat:x} is wider than {bits} bits")
        words.extend((beat >> (32 * i)) & mask for i in range(n))
        words.extend([0] * (stride - n))
    return words


def image_bytes(bits: int, stride: int, beats: Sequence[int]) -> bytes:
    """A stream's device-memory image: :func:`beat_words`, little-endian 32-bit words."""
    words = beat_words(bits, stride, beats)
    return struct.pack(f"<{len(words)}I", *words)


def _check_word(value: int) -> int:
    value = int(value)
    if not 0 <= value < 1 << 32:
        raise ValueError(f"a bus word must be in 0..2**32-1, not {value!r}")
    return value


#: Seconds :class:`SocDriver` waits by default on a transport without ``default_timeout`` (a board).
DEFAULT_TIMEOUT = 10.0


class SocDriver:
    """Register, memory and run-level access to a SoC over a transport.

    Parameters
    ----------
    transport : Transport or RegisterTransport
        The link (:mod:`sparsa.sim.backends.soc.transport`).
    config : AcceleratorConfig or SocParams
        What the SoC was built from (the address map and beat widths come from it).
    timeout : float, optional
        Wall-clock seconds to wait for any single answer and for a run to finish.  Default: the
        transport's ``default_timeout`` attribute if it has one (the simulation transports set a
        generous one: a simulator's speed depends on the machine's load, and they bound a run in
        cycles themselves), else :data:`DEFAULT_TIMEOUT`.
    """

    def __init__(self, transport: "Transport | RegisterTransport", config: "AcceleratorConfig | SocParams", *,
                 timeout: "float | None" = None) -> None:
        if timeout is None:
            timeout = float(getattr(transport, "default_timeout", DEFAULT_TIMEOUT))
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if isinstance(config, AcceleratorConfig):
            config = SocParams(config)
        if not isinstance(config, SocParams):
            raise TypeError(f"config must be an AcceleratorConfig or SocParams, not {config!r}")
        self._registers = isinstance(transport, RegisterTransport)
        if not self._registers and not isinstance(transport, Transport):
            raise TypeError(f"transport must have write(), read() and close() (a byte link) or "
                            f"read_words(), write_words() and close() (a register port), not {transport!r}")
        self.transport = transport
        self.params = config
        self.timeout = timeout
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def config(self) -> AcceleratorConfig:
        """The accelerator configuration."""
        return self.params.config

    # ------------------------------------------------------------------ words
    def _send(self, data: bytes) -> None:
        self.transport.write(data)
        self.bytes_sent += len(data)

    def _recv(self, n: int, timeout: "float | None" = None) -> bytes:
        data = self.transport.read(n, self.timeout if timeout is None else timeout)
        self.bytes_received += len(data)
        if len(data) != n:
            raise SocTimeout(f"expected {n} bytes from the SoC, got {len(data)}")
        return data

    def write_words(self, addr: int, words: Sequence[int]) -> None:
        """Write ``words`` to consecutive word addresses from ``addr``."""
        words = [_check_word(w) for w in words]
        if self._registers:
            self.transport.write_words(addr, words)
            self.bytes_sent += 4 * len(words)
            return
        pos = 0
        while pos < len(words):
            chunk = words[pos:pos + MAX_WORDS_PER_COMMAND]
            header = struct.pack("<BIH", CMD_WRITE, addr + pos, len(chunk))
            self._send(header + struct.pack(f"<{len(chunk)}I", *chunk))
            ack = self._recv(1)
            if ack[0] != ACK:
                raise SocError(f"write of {len(chunk)} words at 0x{addr + pos:x}: expected ack 0x{ACK:02x}, "
                               f"got 0x{ack[0]:02x}")
            pos += len(chunk)

    def read_words(self, addr: int, count: int) -> list[int]:
        """Read ``count`` words from consecutive word addresses from ``addr``."""
        if self._registers:
            out = [int(w) for w in self.transport.read_words(addr, count)] if count else []
            if len(out) != count:
                raise SocError(f"asked for {count} words at 0x{addr:x}, the register port returned {len(out)}")
            self.bytes_received += 4 * count
            return out
        out: list[int] = []
        while len(out) < count:
            n = min(MAX_WORDS_PER_COMMAND, count - len(out))
            self._send(struct.pack("<BIH", CMD_READ, addr + len(out), n))
            out.extend(struct.unpack(f"<{n}I", self._recv(4 * n)))
        return out

    def read_reg(self, reg: Reg) -> int:
        """Read one register."""
        return self.read_words(self.params.reg_addr(reg), 1)[0]

    def write_reg(self, reg: Reg, value: int) -> None:
        """Write one register."""
        self.write_words(self.params.reg_addr(reg), [value])

    # ------------------------------------------------------------------ beats
    def write_beats(self, region: Region, beats: Sequence[int], first: int = 0) -> None:
        """Write whole beats to a memory (each beat's words in order, padding words zero)."""
        mem = self.params.memory(region)
        if region == Region.RESULTS:
            raise ValueError("the result memory is read only")
        if first + len(beats) > mem.depth:
            raise ShapeError(f"{len(beats)} beats from {first} do not fit the {region.name.lower()} memory "
                             f"({mem.depth} beats)")
        words = beat_words(mem.bits, mem.stride, beats)
        if words:
            self.write_words(self.params.beat_addr(region, first), words)

    def read_beats(self, region: Region, count: int, first: int = 0) -> list[int]:
        """Read ``count`` whole beats of a memory."""
        mem = self.params.memory(region)
        if first + count > mem.depth:
            raise ShapeError(f"{count} beats from {first} exceed the {region.name.lower()} memory ({mem.depth} beats)")
        words = self.read_words(self.params.beat_addr(region, first), count * mem.stride) if count else []
        return self._beats_of(region, words, count)

    def _beats_of(self, region: Region, words: Sequence[int], count: int) -> list[int]:
        mem = self.params.memory(region)
        beats = []
        for i in range(count):
            chunk = words[i * mem.stride:i * mem.stride + mem.words]
            beats.append(sum(w << (32 * j) for j, w in enumerate(chunk)))
        return beats

    # ------------------------------------------------------------------ device
    def identify(self) -> dict[str, int]:
        """Check the ID, version, config hash and geometry registers; return them.

        Raises
        ------
        SocError
            The device is not a sparsa SoC or was built from another configuration.
        """
        ident, version, chash, geometry = self.read_words(self.params.reg_addr(Reg.ID), 4)
        if ident != SOC_ID:
            raise SocError(f"device ID is 0x{ident:08x}, not a sparsa SoC (0x{SOC_ID:08x})")
        if version != SOC_VERSION:
            raise SocError(f"SoC register map version {version}, this driver speaks {SOC_VERSION}")
        if chash != self.params.config_hash32 or geometry != self.params.geometry:
            raise SocError(
                f"the SoC was built from another configuration (hash 0x{chash:08x}, geometry 0x{geometry:08x}; "
                f"{self.config.name!r} has 0x{self.params.config_hash32:08x}, 0x{self.params.geometry:08x})")
        return {"id": ident, "version": version, "config_hash": chash, "geometry": geometry}

    def status(self) -> Status:
        """The STATUS register."""
        return Status(self.read_reg(Reg.STATUS))

    def start(self) -> None:
        """Pulse START (the accelerator restarts from reset with the loaded memories)."""
        self.write_reg(Reg.CTRL, int(Ctrl.START))

    def clear(self) -> None:
        """Abort any run and hold the accelerator in reset."""
        self.write_reg(Reg.CTRL, int(Ctrl.CLEAR))

    def wait_done(self, timeout: "float | None" = None, poll: float = 0.0) -> Status:
        """Poll STATUS until DONE; return it.

        Raises
        ------
        SocTimeout
            Not done within ``timeout`` seconds (the message shows the stream counters).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            status = self.status()
            if status & Status.DONE:
                return status
            if not status & Status.BUSY:
                raise SocError(f"the SoC is idle without being done (STATUS 0x{int(status):x}): was it started?")
            if time.monotonic() > deadline:
                taken = self.read_words(self.params.reg_addr(Reg.INSTR_TAKEN), 3)
                raise SocTimeout(f"the accelerator did not finish in time (instr/weight/act beats taken {taken}, "
                                 f"result beats {self.read_reg(Reg.RESULT_COUNT)})")
            if poll:
                time.sleep(poll)

    # ------------------------------------------------------------------ programs
    def load(self, program: Any, a: np.ndarray, scales: "np.ndarray | None" = None) -> dict[str, int]:
        """Write a compiled program and its activations to the memories; set the stream counts.

        ``scales`` (``S[m, groups]`` mantissas) is required by programs with per-token or
        per-group activation scales: their LOAD_S beats travel in the activation memory.

        Returns
        -------
        dict
            Beat counts ``{"instr": ..., "weights": ..., "acts": ..., "outputs": ...}``.

        Raises
        ------
        ConfigError
            The program was compiled for another configuration.
        ShapeError
            A stream does not fit its memory (the message names it and the sizes).
        """
        streams, needs = self._streams(program, a, scales)
        for region, beats in streams.items():
            self.write_beats(region, beats)
        self.write_words(self.params.reg_addr(Reg.INSTR_COUNT), [needs[Region.INSTR], needs[Region.WEIGHTS],
                                                                   needs[Region.ACTS]])
        return {"instr": needs[Region.INSTR], "weights": needs[Region.WEIGHTS], "acts": needs[Region.ACTS],
                "outputs": needs[Region.RESULTS]}

    def _streams(self, program: Any, a: np.ndarray, scales: "np.ndarray | None"):
        """The program's beats per memory and the beat counts (results included), fit checked."""
        if program.config != self.config:
            raise ConfigError(f"program was compiled for {program.config.name!r}, the SoC runs {self.config.name!r}")
        cfg = self.config
        a = program.check_inputs({"A": a})
        streams = {
            Region.INSTR: [int(w) for w in program.instruction_words()],
            Region.WEIGHTS: [pack_weight_beat(cfg, v, i) for v, i in program.weight_beats()],
            Region.ACTS: [pack_activation_beat(cfg, lanes) for lanes in program.activation_beats(a, scales)],
        }
        needs = {**{r: len(b) for r, b in streams.items()}, Region.RESULTS: program.num_output_beats}
        for region, need in needs.items():
            depth = self.params.memory(region).depth
            if need > depth:
                raise ShapeError(f"the program needs {need} {region.name.lower()} beats but the SoC's "
                                 f"{region.name.lower()} memory holds {depth}; split the GEMM or enlarge buffers")
        return streams, needs

    def counters(self) -> dict[str, int]:
        """Cycle and beat counters of the last run."""
        cycles, run_cycles, *_rest = self.read_words(self.params.reg_addr(Reg.CYCLES), 2)
        result_count, instr, weights, acts = self.read_words(self.params.reg_addr(Reg.RESULT_COUNT), 4)
        return {"cycles": cycles, "run_cycles": run_cycles, "result_beats": result_count,
                "instr_taken": instr, "weight_taken": weights, "act_taken": acts}

    def run(self, program: Any, tensors: Mapping[str, np.ndarray], *, timeout: "float | None" = None,
            memory: "Any | None" = None):
        """Load, start, wait, read back: ``Result(outputs={"Y": ...}, cycles=CYCLES, stats)``.

        Parameters
        ----------
        memory : DeviceMemory, optional
            Run through device memory (:meth:`run_dma`) instead of loading the on-chip
            memories through the transport.

        Raises
        ------
        IllegalInstructionError
            STATUS.ILLEGAL: the accelerator stopped on an instruction word with an unassigned
            opcode (the message names its index and opcode; ``.cycles`` is CYCLES).
        SocError
            The run finished with fewer beats consumed or produced than the program has, or
            the result memory overflowed.
        SocDmaError
            With ``memory``: the DMA reported an error (the message names the transfer and
            the AXI response).
        """
        if memory is not None:
            return self.run_dma(program, tensors, memory, timeout=timeout)
        wall = time.perf_counter()
        counts = self.load(program, program.check_inputs(tensors), program.check_scales(tensors))
        load_seconds = time.perf_counter() - wall
        self.start()
        status = self.wait_done(timeout)
        self._check_illegal(program, status)
        ctr = self._check_counters(counts, status)
        beats = self.read_beats(Region.RESULTS, counts["outputs"])
        y = self._outputs(program, beats)
        stats = {"run_cycles": ctr["run_cycles"], "load_seconds": load_seconds,
                 "wall_seconds": time.perf_counter() - wall, "bytes_sent": self.bytes_sent,
                 "bytes_received": self.bytes_received, **counts}
        return Result(outputs={"Y": y}, cycles=ctr["cycles"], stats=stats)

    def _check_illegal(self, program: Any, status: Status) -> None:
        """Raise :class:`~sparsa.errors.IllegalInstructionError` when STATUS says the accelerator
        stopped on an illegal word (unassigned opcode or unused bits set): the word is ``INSTR_TAKEN - 1`` of the program's
        instruction words, ``.cycles`` is CYCLES (docs/isa.md#illegal-instructions)."""
        if not status & Status.ILLEGAL:
            return
        ctr = self.counters()
        words = [int(w) for w in program.instruction_words()]
        index = ctr["instr_taken"] - 1
        if not 0 <= index < len(words):
            raise SocError(f"STATUS 0x{int(status):x} flags an illegal instruction but INSTR_TAKEN is "
                           f"{ctr['instr_taken']} of {len(words)} words")
        raise illegal_instruction(index, words[index], cycles=ctr["cycles"])

    def _check_counters(self, counts: dict, status: Status) -> dict:
        ctr = self.counters()
        expected = {"instr_taken": counts["instr"], "weight_taken": counts["weights"], "act_taken": counts["acts"],
                    "result_beats": counts["outputs"]}
        wrong = {k: (ctr[k], v) for k, v in expected.items() if ctr[k] != v}
        if wrong or status & Status.RESULT_OVERFLOW:
            raise SocError(f"run finished with unexpected counters (got, expected): {wrong}, STATUS 0x{int(status):x}")
        return ctr

    def _outputs(self, program: Any, beats: Sequence[int]) -> np.ndarray:
        cfg = self.config
        lanes = np.array([unpack_output_beat(cfg, b) for b in beats], dtype=np.int64).reshape(len(beats), cfg.cols)
        return program.collect_outputs(lanes)

    # ------------------------------------------------------------------ device memory (DMA)
    def dma_caps(self) -> "tuple[int, int] | None":
        """``(data_width, max_burst)`` of the SoC's AXI4 master, or None (no DMA)."""
        return parse_dma_caps(self.read_reg(Reg.DMA_CAPS))

    def wait_dma(self, timeout: "float | None" = None, poll: float = 0.0) -> Status:
        """Poll STATUS until the RUN_DMA sequence is over; return STATUS.

        Raises
        ------
        SocDmaError
            The sequence stopped with DMA_ERROR (the message decodes DMA_ERROR_INFO).
        SocTimeout
            Still busy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            status = self.status()
            if not status & Status.DMA_BUSY:
                break
            if time.monotonic() > deadline:
                raise SocTimeout(f"the DMA run did not finish in time (STATUS 0x{int(status):x}, "
                                 f"{self.read_reg(Reg.DMA_CYCLES)} cycles)")
            if poll:
                time.sleep(poll)
        if status & Status.DMA_ERROR:
            raise SocDmaError(self._dma_error_message(self.read_reg(Reg.DMA_ERROR_INFO)))
        if not status & Status.DMA_DONE:
            raise SocDmaError(f"the DMA run ended without DMA_DONE or DMA_ERROR (STATUS 0x{int(status):x}): "
                              "was it cleared?")
        return status

    def _dma_error_message(self, info: int) -> str:
        phase, resp = DmaPhase(info >> 2), info & 3
        caps = self.dma_caps()
        width = f"{caps[0] // 8}-byte" if caps else "?"
        if phase == DmaPhase.ALIGN:
            return f"the DMA refused to start: a device address is not a multiple of the AXI beat ({width})"
        if phase == DmaPhase.RANGE:
            return "the DMA refused to start: a beat count is larger than its memory"
        what = {DmaPhase.INSTR: "reading the instruction image", DmaPhase.WEIGHTS: "reading the weight image",
                DmaPhase.ACTS: "reading the activation image", DmaPhase.RESULTS: "writing the results"}.get(phase)
        return (f"the DMA got {RESP_NAMES[resp]} (AXI response {resp}) from device memory while {what}; "
                f"the run stopped there (DMA_ERROR_INFO 0x{info:x})")

    def run_dma(self, program: Any, tensors: Mapping[str, np.ndarray], memory: Any, *,
                timeout: "float | None" = None):
        """Run a program through device memory: place the streams in ``memory``, RUN_DMA
        (load -> run -> store), wait, read the results from ``memory``.

        Parameters
        ----------
        memory : DeviceMemory
            Device memory the SoC's AXI4 master reaches (a
            :class:`~sparsa.sim.backends.soc.devmem.DeviceMemoryImage` in simulation; XRT buffers on a
            card).

        Returns
        -------
        Result
            ``outputs={"Y": ...}``, ``cycles`` = CYCLES; ``stats`` adds ``dma_cycles``
            (SoC cycles of load + run + store) and the device addresses.

        Raises
        ------
        SocError
            The SoC has no AXI4 master, or the counters are off after the run.
        SocDmaError
            The DMA stopped on an error response, a misaligned address or a count too large.
        """
        if not isinstance(memory, DeviceMemory):
            raise TypeError(f"memory must have allocate(), write(), read() and free(), not {memory!r}")
        caps = self.dma_caps()
        if caps is None:
            raise SocError("this SoC has no AXI4 master (DMA_CAPS reads 0): build the shell kernel "
                           "(AxiSoc with dma=DmaConfig(...)) or run without memory=")
        beat_bytes = caps[0] // 8
        align = max(4096, beat_bytes)
        wall = time.perf_counter()
        streams, needs = self._streams(program, program.check_inputs(tensors), program.check_scales(tensors))
        p = self.params
        res = p.memory(Region.RESULTS)
        result_bytes = needs[Region.RESULTS] * res.stride * 4
        addresses: dict[Region, int] = {}
        try:
            for region, beats in streams.items():
                mem = p.memory(region)
                image = image_bytes(mem.bits, mem.stride, beats)
                addresses[region] = memory.allocate(max(len(image), beat_bytes), align)
                if image:
                    memory.write(addresses[region], image)
            addresses[Region.RESULTS] = memory.allocate(max(result_bytes, beat_bytes), align)
            regs = [needs[Region.INSTR], needs[Region.WEIGHTS], needs[Region.ACTS]]
            self.write_words(p.reg_addr(Reg.INSTR_COUNT), regs)
            addr_words = []
            for region in DMA_REGS:
                addr_words += [addresses[region] & 0xFFFFFFFF, addresses[region] >> 32]
            self.write_words(p.reg_addr(Reg.DMA_INSTR_ADDR_LO), addr_words + [needs[Region.RESULTS]])
            load_seconds = time.perf_counter() - wall
            self.write_reg(Reg.CTRL, int(Ctrl.RUN_DMA))
            status = self.wait_dma(timeout)
            self._check_illegal(program, status)
            counts = {"instr": needs[Region.INSTR], "weights": needs[Region.WEIGHTS], "acts": needs[Region.ACTS],
                      "outputs": needs[Region.RESULTS]}
            ctr = self._check_counters(counts, status)
            raw = memory.read(addresses[Region.RESULTS], result_bytes) if result_bytes else b""
            words = struct.unpack(f"<{len(raw) // 4}I", raw)
            y = self._outputs(program, self._beats_of(Region.RESULTS, words, needs[Region.RESULTS]))
            dma_cycles = self.read_reg(Reg.DMA_CYCLES)
        finally:
            for address in addresses.values():
                memory.free(address)
        stats = {"run_cycles": ctr["run_cycles"], "dma_cycles": dma_cycles, "load_seconds": load_seconds,
                 "wall_seconds": time.perf_counter() - wall, "bytes_sent": self.bytes_sent,
                 "bytes_received": self.bytes_received,
                 "device_addresses": {r.name.lower(): a for r, a in addresses.items()},
                 "image_bytes": sum(len(streams[r]) * p.memory(r).stride * 4 for r in streams) + result_bytes,
                 **counts}
        return Result(outputs={"Y": y}, cycles=ctr["cycles"], stats=stats)
