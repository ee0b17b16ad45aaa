"""A cycle model of an AXI4 slave memory that stalls at random and checks the master's bursts.

Pure Python, one call per clock edge, so the same model serves the Amaranth simulation
(:class:`~sparsa.sim.backends.soc.amaranth_transport.AxiSimTransport`) and the cocotb bench on
the Verilator model (:mod:`sparsa.sim.backends.soc.axi_bench`)::

    slave = AxiSlaveModel(memory, data_width=64, seed=1)
    every cycle:
        drive slave.outputs()            (awready, wready, bvalid, bresp, arready, rvalid, rdata, rresp, rlast)
        sample the master's signals      (awvalid, awaddr, awlen, awsize, awburst, wvalid, wdata, wstrb,
                                          wlast, bready, arvalid, araddr, arlen, arsize, arburst, rready)
        clock edge
        slave.clock(sampled)             (handshakes = valid & ready of that cycle)

Random behaviour (``seed``): every ready and every valid the slave drives is withheld with
probability ``stall``; read data starts and write responses come 0..``max_latency`` cycles
after the address / last data beat.  Checks (each failure is appended to
:attr:`violations`, the run goes on): ``AxBURST`` INCR, ``AxSIZE`` = the bus width,
addresses aligned to it, no burst across a 4 KiB boundary, ``AxLEN + 1 <= max_burst``,
``WLAST`` exactly on beat ``AxLEN + 1``, valid signals held (with the same payload) until
their handshake.  Accesses outside the memory answer DECERR; ranges marked with
:meth:`DeviceMemoryImage.inject_error` answer their response (read data of an erroring beat
is zero, write data of an erroring burst is not stored).
"""

from __future__ import annotations

import collections
import random

from sparsa.sim.backends.soc.devmem import DeviceMemoryImage

__all__ = ["AxiSlaveModel", "MASTER_SIGNALS", "SLAVE_SIGNALS", "BOUNDARY"]

#: Signals the master drives (sampled each cycle).
MASTER_SIGNALS = ("awvalid", "awaddr", "awlen", "awsize", "awburst", "wvalid", "wdata", "wstrb", "wlast",
                  "bready", "arvalid", "araddr", "arlen", "arsize", "arburst", "rready")
#: Signals the slave drives.
SLAVE_SIGNALS = ("awready", "wready", "bvalid", "bresp", "arready", "rvalid", "rdata", "rresp", "rlast")
#: Bursts must not cross a multiple of this many bytes.
BOUNDARY = 4096


class AxiSlaveModel:
    """AXI4 slave memory over a :class:`~sparsa.sim.backends.soc.devmem.DeviceMemoryImage`.

    Parameters
    ----------
    memory : DeviceMemoryImage
    data_width : int
        Bits per beat (a multiple of 8).
    seed : int
        Seed of the stall / latency choices.
    stall : float
        Probability of withholding each ready / valid in a cycle (0 = never stall).
    max_latency : int
        Most cycles between an accepted read address and its first data beat, and between a
        write's last data beat and its response.
    max_burst : int
        The master's announced burst limit (beats); longer bursts are violations.
    """

    def __init__(self, memory: DeviceMemoryImage, data_width: int, *, seed: int = 0, stall: float = 0.3,
                 max_latency: int = 8, max_burst: int = 256) -> None:
        if not isinstance(memory, DeviceMemoryImage):
            raise TypeError(f"memory must be a DeviceMemoryImage, not {memory!r}")
        if not isinstance(data_width, int) or data_width < 8 or data_width % 8 or data_width & (data_width - 1):
            raise ValueError(f"data_width must be a power of two >= 8, not {data_width!r}")
        if not 0 <= stall < 1:
            raise ValueError(f"stall must be in [0, 1), not {stall!r}")
        if not isinstance(max_latency, int) or max_latency < 0:
            raise ValueError(f"max_latency must be an integer >= 0, not {max_latency!r}")
        self.memory = memory
        self.data_width = data_width
        self.beat_bytes = data_width // 8
        self.stall = stall
        self.max_latency = max_latency
        self.max_burst = max_burst
        self.rng = random.Random(seed)
        self.cycle = 0
        self.violations: list[str] = []
        #: Accepted bursts: ("read" / "write", address, beats).
        self.bursts: list[tuple[str, int, int]] = []
        #: Error responses given: ("read" / "write", address, resp).
        self.errors: list[tuple[str, int, int]] = []
        self._ar = collections.deque()     # [address, beats, first cycle]
        self._r = None                     # [address, beats left, beat index] being returned
        self._aw = collections.deque()     # [address, beats]
        self._w = None                     # [address, beats, beat index, resp, pending writes]
        self._b = collections.deque()      # [resp, first cycle]
        self._out = {name: 0 for name in SLAVE_SIGNALS}
        self._held: dict[str, "tuple | None"] = {"ar": None, "aw": None, "w": None}
        self._choose()

    # ------------------------------------------------------------------ interface
    def outputs(self) -> dict[str, int]:
        """The slave's signals for the current cycle."""
        return dict(self._out)

    @property
    def idle(self) -> bool:
        """No burst accepted and not finished."""
        return not (self._ar or self._r or self._aw or self._w or self._b or self._out["rvalid"]
                    or self._out["bvalid"])

    def clock(self, m: dict) -> None:
        """One clock edge; ``m`` maps :data:`MASTER_SIGNALS` to their values in the cycle before it."""
        out = self._out
        self._check_held(m, out)
        if m["arvalid"] and out["arready"]:
            beats = self._accept("read", m["araddr"], m["arlen"], m["arsize"], m["arburst"])
            self._ar.append([m["araddr"], beats, self.cycle + 1 + self.rng.randint(0, self.max_latency)])
        if m["awvalid"] and out["awready"]:
            beats = self._accept("write", m["awaddr"], m["awlen"], m["awsize"], m["awburst"])
            self._aw.append([m["awaddr"], beats])
        if out["rvalid"] and m["rready"]:
            self._r[1] -= 1
            self._r[2] += 1
            if not self._r[1]:
                self._r = None
            out["rvalid"] = 0
        if m["wvalid"] and out["wready"]:
            self._write_beat(m)
        if out["bvalid"] and m["bready"]:
            out["bvalid"] = 0
        self.cycle += 1
        self._choose()

    # ------------------------------------------------------------------ internals
    def _check_held(self, m: dict, out: dict) -> None:
        payloads = {
            "ar": ("arvalid", "arready", ("araddr", "arlen", "arsize", "arburst")),
            "aw": ("awvalid", "awready", ("awaddr", "awlen", "awsize", "awburst")),
            "w": ("wvalid", "wready", ("wdata", "wstrb", "wlast")),
        }
        for channel, (valid, ready, fields) in payloads.items():
            now = tuple(m[f] for f in fields)
            held = self._held[channel]
            if held is not None and (not m[valid] or now != held):
                self.violations.append(f"cycle {self.cycle}: {valid} dropped or its payload changed before "
                                       f"{ready} ({held} -> {now if m[valid] else 'not valid'})")
            self._held[channel] = now if m[valid] and not out[ready] else None

    def _accept(self, kind: str, addr: int, length: int, size: int, burst: int) -> int:
        beats = length + 1
        self.bursts.append((kind, addr, beats))
        where = f"cycle {self.cycle}: {kind} burst at 0x{addr:x} ({beats} beats)"
        if burst != 1:
            self.violations.append(f"{where}: AxBURST {burst}, not INCR (1)")
        if 1 << size != self.beat_bytes:
            self.violations.append(f"{where}: AxSIZE {size} ({1 << size} bytes) on a {self.beat_bytes}-byte bus")
        if addr % self.beat_bytes:
            self.violations.append(f"{where}: address not aligned to {self.beat_bytes} bytes")
        if addr // BOUNDARY != (addr + beats * self.beat_bytes - 1) // BOUNDARY:
            self.violations.append(f"{where}: crosses a 4 KiB boundary")
        if beats > self.max_burst:
            self.violations.append(f"{where}: longer than the announced {self.max_burst} beats")
        return beats

    def _write_beat(self, m: dict) -> None:
        if self._w is None:
            addr, beats = self._aw.popleft()
            self._w = [addr, beats, 0, 0, []]
        w = self._w
        addr = w[0] + w[2] * self.beat_bytes
        last = w[2] == w[1] - 1
        if bool(m["wlast"]) != last:
            self.violations.append(f"cycle {self.cycle}: WLAST {m['wlast']} on beat {w[2] + 1} of {w[1]} "
                                   f"(burst at 0x{w[0]:x})")
        resp = self.memory.fault("write", addr, self.beat_bytes)
        if resp and not w[3]:
            w[3] = resp
            self.errors.append(("write", addr, resp))
        w[4].append((addr, int(m["wdata"]).to_bytes(self.beat_bytes, "little"), int(m["wstrb"])))
        w[2] += 1
        if w[2] == w[1]:
            if not w[3]:
                for a, data, strobe in w[4]:
                    self.memory.store(a, data, strobe)
            self._b.append([w[3], self.cycle + 1 + self.rng.randint(0, self.max_latency)])
            self._w = None

    def _go(self) -> bool:
        return self.rng.random() >= self.stall

    def _choose(self) -> None:
        out = self._out
        out["arready"] = int(len(self._ar) < 4 and self._go())
        out["awready"] = int(len(self._aw) < 4 and self._go())
        out["wready"] = int((self._w is not None or bool(self._aw)) and self._go())
        if not out["rvalid"]:
            if self._r is None and self._ar and self._ar[0][2] <= self.cycle:
                addr, beats, _ = self._ar.popleft()
                self._r = [addr, beats, 0]
            if self._r is not None and self._go():
                addr = self._r[0] + self._r[2] * self.beat_bytes
                resp = self.memory.fault("read", addr, self.beat_bytes)
                if resp:
                    self.errors.append(("read", addr, resp))
                data = 0 if resp else int.from_bytes(self.memory.load(addr, self.beat_bytes), "little")
                out.update(rvalid=1, rdata=data, rresp=resp, rlast=int(self._r[1] == 1))
        if not out["bvalid"] and self._b and self._b[0][1] <= self.cycle and self._go():
            resp, _ = self._b.popleft()
            out.update(bvalid=1, bresp=resp)
