"""The shell kernel's SoC run through device memory by the host driver.

* the slave model and the device-memory allocator on their own (pure Python);
* the whole AXI SoC (AXI4-Lite control + m_axi_gmem) in Amaranth simulation, driven by
  :class:`SocDriver` through a simulated device memory: compiled GEMMs bit-exact against
  NumPy, CYCLES = RUN_CYCLES = ``program_cycles``, error responses reported;
* the same in Verilator (cocotb bench with the same slave model; ``verilator`` marker).

The DMA engine alone is tested in ``tests/fpga/test_dma_engine.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.hdl.soc.params import Ctrl, DmaConfig, DmaPhase, Reg, Status
from sparsa.hdl.soc.top import AxiSoc
from sparsa.models.reference import gemm_reference
from sparsa.sim.backends.soc.amaranth_transport import AxiSimTransport
from sparsa.sim.backends.soc.axi_model import MASTER_SIGNALS, AxiSlaveModel
from sparsa.sim.backends.soc.devmem import DeviceMemoryError, DeviceMemoryImage
from sparsa.sim.backends.soc.driver import SocDmaError, SocDriver
from sparsa.sim.backends.soc.transport import SocError
from sparsa.sim.cycle import program_cycles

from .conftest import gemm
from .fake import FakeSocTransport


def _check(cfg, program, a, result):
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    assert result.cycles == program_cycles(program) == result.stats["run_cycles"]


# --------------------------------------------------------------------------- device memory and slave model


def test_device_memory_allocates_aligned_first_fit_and_checks_accesses():
    mem = DeviceMemoryImage(3 * 4096, base=0x10000)
    a = mem.allocate(100)
    b = mem.allocate(5000)
    assert (a, b) == (0x10000, 0x11000)
    with pytest.raises(DeviceMemoryError, match="cannot allocate 4097 bytes"):
        mem.allocate(4097)
    mem.free(a)
    assert mem.allocate(64, 64) == 0x10000
    mem.write(b + 10, b"\x01\x02")
    assert mem.read(b + 9, 4) == b"\x00\x01\x02\x00"
    with pytest.raises(DeviceMemoryError, match="not inside one allocation"):
        mem.write(b + 4999, b"ab")
    with pytest.raises(DeviceMemoryError, match="is not the start of an allocation"):
        mem.free(b + 1)
    mem.store(0x10004, b"\xff\xff\xff\xff", strobe=0b0101)
    assert mem.load(0x10004, 4) == b"\xff\x00\xff\x00"
    assert mem.fault("read", 0x10000 + 3 * 4096 - 4, 8) == 3          # runs past the end: DECERR


def test_slave_model_flags_burst_rule_violations():
    """A naive master drives the model directly: a 4 KiB crossing, a wrong AxSIZE, a long
    burst, a missing WLAST and a dropped AWVALID are all reported."""
    mem = DeviceMemoryImage(16384)
    slave = AxiSlaveModel(mem, 64, stall=0.0, max_burst=8)
    idle = {name: 0 for name in MASTER_SIGNALS}

    def cycle(**kw):
        out = slave.outputs()
        slave.clock({**idle, **kw})
        return out

    cycle(arvalid=1, araddr=4096 - 16, arlen=3, arsize=3, arburst=1)     # 4 beats over the boundary
    cycle(arvalid=1, araddr=0, arlen=15, arsize=2, arburst=1)            # 16 beats of 4 bytes, announced 8
    cycle(awvalid=1, awaddr=64, awlen=1, awsize=3, awburst=1)
    for beat in range(2):
        cycle(wvalid=1, wdata=beat, wstrb=0xFF, wlast=0)                  # no WLAST on beat 2
    slave._out["awready"] = 0
    cycle(awvalid=1, awaddr=128, awlen=0, awsize=3, awburst=1)
    cycle()                                                              # AWVALID dropped before AWREADY
    text = "\n".join(slave.violations)
    assert "crosses a 4 KiB boundary" in text
    assert "AxSIZE 2 (4 bytes) on a 8-byte bus" in text
    assert "longer than the announced 8 beats" in text
    assert "WLAST 0 on beat 2 of 2" in text
    assert "awvalid dropped or its payload changed" in text
    assert len(slave.violations) == 5


# --------------------------------------------------------------------------- the whole SoC


class OffsetMemory(DeviceMemoryImage):
    """Hands out buffers ``offset`` bytes past a 4 KiB boundary, so images straddle boundaries."""

    def __init__(self, size, offset):
        super().__init__(size)
        self.offset = offset

    def allocate(self, nbytes, align=4096):
        base = super().allocate(nbytes + self.offset, align)
        self._allocations[base + self.offset] = self._allocations.pop(base)
        return base + self.offset


_CASES = {
    # data width, max burst, slave seed, stall probability
    "32bit-burst4": (32, 4, 1, 0.3),
    "64bit-burst16": (64, 16, 2, 0.5),
    "512bit-burst256": (512, 256, 3, 0.2),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_gemm_through_device_memory_in_amaranth_sim(case, small_cfg, small_params):
    """The AXI SoC loads, runs and stores two compiled GEMMs through a stalling device memory;
    the images start 4 KiB - 3 beats into a page, so bursts split at the boundary."""
    width, burst, seed, stall = _CASES[case]
    dma = DmaConfig(width, burst)
    memory = OffsetMemory(1 << 18, 4096 - 3 * dma.beat_bytes)
    with AxiSimTransport(AxiSoc(small_params, dma=dma), memory, seed=seed, stall=stall) as link:
        soc = SocDriver(link, small_params)
        soc.identify()
        assert soc.dma_caps() == (width, burst)
        program, a = gemm(small_cfg, 5, 12, 6, seed=4)
        result = soc.run(program, {"A": a}, memory=memory)
        _check(small_cfg, program, a, result)
        program2, a2 = gemm(small_cfg, 3, 8, 3, seed=5, pattern="dense")
        _check(small_cfg, program2, a2, soc.run(program2, {"A": a2}, memory=memory))
        assert link.slave.violations == []
        assert max(n for _, _, n in link.slave.bursts) <= burst
        assert any(addr % 4096 == 0 for _, addr, _ in link.slave.bursts)     # a burst split at a boundary
        assert soc.status() & Status.DMA_DONE and soc.read_reg(Reg.DMA_ERROR_INFO) == 0
        assert result.stats["dma_cycles"] > result.cycles


def test_host_access_during_the_run_and_plain_start_still_work(small_cfg, small_params):
    """While RUN_DMA runs, the host polls and uses SCRATCH (the host has bus priority); the
    old protocol (load through s_axi_control, START) works on the same DMA SoC."""
    memory = DeviceMemoryImage(1 << 16)
    with AxiSimTransport(AxiSoc(small_params, dma=DmaConfig(64, 8)), memory, seed=7) as link:
        soc = SocDriver(link, small_params)
        program, a = gemm(small_cfg, 4, 9, 5, seed=7, pattern="1:4")
        _check(small_cfg, program, a, soc.run(program, {"A": a}))                 # no memory: plain START
        _check(small_cfg, program, a, soc.run(program, {"A": a}, memory=memory))
        # RUN_DMA again with the last run's registers (its images are still in the memory)
        # and use the bus while the DMA runs
        soc.write_reg(Reg.CTRL, int(Ctrl.RUN_DMA))
        seen = []
        while soc.status() & Status.DMA_BUSY:
            soc.write_reg(Reg.SCRATCH, len(seen))
            seen.append(soc.read_reg(Reg.SCRATCH))
        assert seen == list(range(len(seen))) and len(seen) > 3
        assert soc.status() & Status.DMA_DONE
        assert link.slave.violations == []


def test_error_responses_stop_the_run_and_the_driver_names_them(small_cfg, small_params):
    dma = DmaConfig(64, 8)
    program, a = gemm(small_cfg, 5, 12, 6, seed=4)

    class Faulty(DeviceMemoryImage):
        """Marks the n-th allocation (0 instr, 1 weights, 2 acts, 3 results) as failing."""

        def __init__(self, which, resp, kind):
            super().__init__(1 << 16)
            self.which, self.resp, self.kind, self.count = which, resp, kind, 0

        def allocate(self, nbytes, align=4096):
            addr = super().allocate(nbytes, align)
            if self.count == self.which:
                self.inject_error(addr, 8, resp=self.resp, kind=self.kind)
            self.count += 1
            return addr

    cases = [(1, 2, "read", r"SLVERR \(AXI response 2\) from device memory while reading the weight image"),
             (3, 3, "write", r"DECERR \(AXI response 3\) from device memory while writing the results")]
    memory = Faulty(*cases[0][:3])
    with AxiSimTransport(AxiSoc(small_params, dma=dma), memory, seed=5) as link:
        soc = SocDriver(link, small_params)
        for which, resp, kind, message in cases:
            memory.__init__(which, resp, kind)
            with pytest.raises(SocDmaError, match=message):
                soc.run(program, {"A": a}, memory=memory)
            status = soc.status()
            assert status & Status.DMA_ERROR and not status & (Status.DMA_BUSY | Status.DMA_DONE)
            phase = DmaPhase.WEIGHTS if which == 1 else DmaPhase.RESULTS
            assert soc.read_reg(Reg.DMA_ERROR_INFO) == int(phase) << 2 | resp
        # a misaligned device address: refused before any transfer
        bursts = len(link.slave.bursts)
        soc.write_reg(Reg.DMA_WEIGHT_ADDR_LO, 0x1004)
        soc.write_reg(Reg.CTRL, int(Ctrl.RUN_DMA))
        with pytest.raises(SocDmaError, match="a device address is not a multiple of the AXI beat \\(8-byte\\)"):
            soc.wait_dma()
        soc.write_reg(Reg.DMA_WEIGHT_ADDR_LO, 0x1000)
        soc.write_reg(Reg.INSTR_COUNT, small_params.instr_depth + 1)
        soc.write_reg(Reg.CTRL, int(Ctrl.RUN_DMA))
        with pytest.raises(SocDmaError, match="a beat count is larger than its memory"):
            soc.wait_dma()
        assert len(link.slave.bursts) == bursts
        # and it recovers: a clean run afterwards
        memory.__init__(99, 2, "read")
        _check(small_cfg, program, a, soc.run(program, {"A": a}, memory=memory))
        assert link.slave.violations == []


def test_clear_during_a_dma_run_drains_and_goes_idle(small_cfg, small_params):
    memory = DeviceMemoryImage(1 << 16)
    with AxiSimTransport(AxiSoc(small_params, dma=DmaConfig(32, 2)), memory, seed=9, stall=0.6) as link:
        soc = SocDriver(link, small_params)
        program, a = gemm(small_cfg, 5, 12, 6, seed=4)
        soc.run(program, {"A": a}, memory=memory)
        soc.write_reg(Reg.CTRL, int(Ctrl.RUN_DMA))
        assert soc.status() & Status.DMA_BUSY
        soc.clear()
        for _ in range(200):
            if not soc.status() & Status.DMA_BUSY:
                break
        assert soc.status() == 0
        assert link.slave.violations == [] and link.slave.idle
        _check(small_cfg, program, a, soc.run(program, {"A": a}, memory=memory))


def test_driver_refuses_memory_runs_on_a_soc_without_dma(small_cfg, small_params):
    program, a = gemm(small_cfg, 3, 8, 3, seed=5)
    drv = SocDriver(FakeSocTransport(small_params), small_params)
    with pytest.raises(SocError, match=r"this SoC has no AXI4 master \(DMA_CAPS reads 0\)"):
        drv.run(program, {"A": a}, memory=DeviceMemoryImage(1 << 16))
    with pytest.raises(TypeError, match="memory must have allocate"):
        drv.run(program, {"A": a}, memory=bytearray(16))


# --------------------------------------------------------------------------- Verilator

_VERILATOR = {}


@pytest.fixture(scope="session")
def axi_verilator_link(small_params):
    """One Verilator build of the small AXI SoC (64-bit m_axi_gmem, bursts of 16) per session
    (cached across sessions too)."""
    from sparsa.sim.backends.verilator_backend import unavailable_reason

    problem = unavailable_reason()
    if problem:
        pytest.skip(problem)
    from sparsa.sim.backends.soc.verilator_transport import AxiVerilatorTransport

    if "link" not in _VERILATOR:
        link = AxiVerilatorTransport(small_params, DmaConfig(64, 16), seed=11, stall=0.4)
        link.build()
        _VERILATOR["link"] = link
    return _VERILATOR["link"]


class _FailNth:
    """A DeviceMemory proxy that makes the ``which``-th allocation answer ``resp`` to ``kind``."""

    def __init__(self, memory, which, resp, kind):
        self.memory, self.which, self.resp, self.kind, self.count = memory, which, resp, kind, 0

    def allocate(self, nbytes, align=4096):
        addr = self.memory.allocate(nbytes, align)
        if self.count == self.which:
            self.memory.inject_error(addr, nbytes, resp=self.resp, kind=self.kind)
        self.count += 1
        return addr

    def write(self, address, data):
        self.memory.write(address, data)

    def read(self, address, nbytes):
        return self.memory.read(address, nbytes)

    def free(self, address):
        self.memory.free(address)


@pytest.mark.verilator
def test_gemm_through_device_memory_in_verilator(axi_verilator_link, small_cfg, small_params):
    """The exported Verilog of the AXI SoC, the same driver, the same slave model (in the cocotb
    bench): GEMMs bit-exact, CYCLES = contract, an injected SLVERR reported, then a clean run."""
    with axi_verilator_link as link:
        soc = SocDriver(link, small_params)
        soc.identify()
        assert soc.dma_caps() == (64, 16)
        program, a = gemm(small_cfg, 7, 20, 9, seed=6)
        _check(small_cfg, program, a, soc.run(program, {"A": a}, memory=link.memory))
        program2, a2 = gemm(small_cfg, 4, 9, 5, seed=7, pattern="1:4")
        with pytest.raises(SocDmaError, match=r"SLVERR \(AXI response 2\) .* while reading the activation image"):
            soc.run(program2, {"A": a2}, memory=_FailNth(link.memory, 2, 2, "read"))
        link.memory.clear_errors()
        _check(small_cfg, program2, a2, soc.run(program2, {"A": a2}, memory=link.memory))
        report = link.report()
    assert report["violations"] == []
    assert report["longest"] <= 16 and report["bursts"] > 4 and report["errors"] >= 1
