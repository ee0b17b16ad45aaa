# amaranth: UnusedElaboratable=no
"""The AXI4 master DMA of the shell kernel's SoC, alone.

:class:`AxiDma` against a stalling AXI4 slave (the host side's
:class:`~sparsa.sim.backends.soc.axi_model.AxiSlaveModel`) and a bus that answers READ_LATENCY
cycles late (junk otherwise), its bursts compared with a naive burst plan.  The whole AXI SoC
run through device memory by the host driver is tested in
``tests/sim/backends/soc/test_axi_dma.py``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparsa.hdl.soc.bus import READ_LATENCY
from sparsa.hdl.soc.core import SocCore
from sparsa.hdl.soc.dma import AxiDma, axi4_signature
from sparsa.hdl.soc.params import DmaConfig, SocParams
from sparsa.sim.backends.soc.axi_model import MASTER_SIGNALS, SLAVE_SIGNALS, AxiSlaveModel
from sparsa.sim.backends.soc.devmem import DeviceMemoryImage

from .conftest import small_config


def _plan(addr, words, data_width, max_burst):
    """Naive burst plan: (address, beats) of each burst, never across 4 KiB."""
    nbytes, per_beat = data_width // 8, data_width // 32
    beats = -(-words // per_beat)
    out = []
    while beats:
        n = min(beats, max_burst, (4096 - addr % 4096) // nbytes)
        out.append((addr, n))
        addr += n * nbytes
        beats -= n
    return out


# --------------------------------------------------------------------------- arguments


def test_arguments_are_checked_with_the_bad_value():
    with pytest.raises(ValueError, match=r"data_width must be one of \(32, 64, 128, 256, 512, 1024\), not 48"):
        DmaConfig(48)
    with pytest.raises(ValueError, match="max_burst must be an integer in 1..256, not 257"):
        DmaConfig(64, 257)
    with pytest.raises(ValueError, match="max_burst must be an integer in 1..256, not 0"):
        AxiDma(12, max_burst=0)
    with pytest.raises(ValueError, match=r"data_width must be one of .*, not 16"):
        axi4_signature(64, 16)
    with pytest.raises(ValueError, match="axi_addr_width must be an integer in 12..64, not 8"):
        AxiDma(12, axi_addr_width=8)
    with pytest.raises(TypeError, match="dma must be a DmaConfig or None, not 64"):
        SocCore(SocParams(small_config()), dma=64)
    with pytest.raises(ValueError, match="size must be an integer >= 1, not 0"):
        DeviceMemoryImage(0)


# --------------------------------------------------------------------------- the engine alone


def _engine_sim(dma: AxiDma, jobs, memory, soc_words, *, seed):
    """Run ``jobs`` (write, dev_addr, soc_addr, words) on ``dma`` with a stalling slave, a bus
    memory ``soc_words`` (dict) and a host that takes the bus in random cycles."""
    slave = AxiSlaveModel(memory, dma.data_width, seed=seed, stall=0.35, max_latency=5, max_burst=dma.max_burst)
    rng = random.Random(seed + 100)
    sim = Simulator(dma)
    sim.add_clock(1e-8)
    outcome = {"errors": []}

    async def tb(ctx):
        port, bus, job = dma.axi, dma.bus, dma.job
        outs = [(n, getattr(port, n)) for n in SLAVE_SIGNALS]
        ins = [(n, getattr(port, n)) for n in MASTER_SIGNALS]
        answers = {}
        cycle = 0
        for write, dev_addr, soc_addr, words in jobs:
            ctx.set(job.write, write)
            ctx.set(job.dev_addr, dev_addr)
            ctx.set(job.soc_addr, soc_addr)
            ctx.set(job.words, words)
            ctx.set(job.start, 1)
            started = False
            for _ in range(200_000):
                grant = int(rng.random() < 0.7)
                ctx.set(dma.grant, grant)
                for name, sig in outs:
                    ctx.set(sig, slave.outputs()[name])
                ctx.set(bus.r_data, answers.pop(cycle, rng.getrandbits(32)))    # junk unless answering
                sampled = {name: ctx.get(sig) for name, sig in ins}
                w_en, r_en, addr, w_data = (ctx.get(bus.w_en), ctx.get(bus.r_en), ctx.get(bus.addr),
                                            ctx.get(bus.w_data))
                busy = ctx.get(job.busy)
                if started and not busy:
                    break
                await ctx.tick()
                ctx.set(job.start, 0)
                started = True
                slave.clock(sampled)
                if grant and w_en:
                    soc_words[addr] = w_data
                if grant and r_en:
                    answers[cycle + READ_LATENCY] = soc_words.get(addr, 0)
                cycle += 1
            outcome["errors"].append((ctx.get(job.error), ctx.get(job.resp)))
        outcome["cycles"] = cycle
    sim.add_testbench(tb)
    sim.run()
    return slave, outcome


@pytest.mark.parametrize("data_width, max_burst", [(32, 4), (64, 16), (128, 1), (512, 256)])
def test_engine_moves_words_in_legal_bursts(data_width, max_burst):
    """Read 300 words from just below a 4 KiB boundary into the bus, write 77 (a partial last
    beat for wide buses) back across another boundary: every word arrives, no byte outside
    the range changes (WSTRB), and the bursts are exactly the naive plan."""
    nbytes = data_width // 8
    memory = DeviceMemoryImage(4 * 4096)
    rng = np.random.default_rng(data_width)
    memory.data[:] = rng.integers(0, 256, len(memory.data), dtype=np.uint8).tobytes()
    before = bytes(memory.data)
    src = 4096 - 3 * nbytes
    dst = 3 * 4096 - 2 * nbytes
    soc = {0x900 + i: int(x) for i, x in enumerate(rng.integers(0, 1 << 32, 77, dtype=np.uint64))}
    dma = AxiDma(12, data_width=data_width, max_burst=max_burst)
    slave, outcome = _engine_sim(dma, [(0, src, 0x100, 300), (1, dst, 0x900, 77)], memory, soc, seed=data_width)
    assert slave.violations == []
    assert outcome["errors"] == [(0, 0), (0, 0)]
    got = [soc[0x100 + i] for i in range(300)]
    assert got == [int.from_bytes(before[src + 4 * i:src + 4 * i + 4], "little") for i in range(300)]
    assert 0x100 + 300 not in soc                           # nothing past the last word
    written = b"".join(soc[0x900 + i].to_bytes(4, "little") for i in range(77))
    expect = bytearray(before)
    expect[dst:dst + len(written)] = written
    assert bytes(memory.data) == bytes(expect)
    plan = [("read", a, n) for a, n in _plan(src, 300, data_width, max_burst)]
    plan += [("write", a, n) for a, n in _plan(dst, 77, data_width, max_burst)]
    assert slave.bursts == plan


def test_engine_reports_the_first_error_response():
    memory = DeviceMemoryImage(8192)
    memory.inject_error(1024, 8, resp=2, kind="read")
    memory.inject_error(4096, 8, resp=3, kind="write")
    soc = {i: i for i in range(64)}
    dma = AxiDma(12, data_width=64, max_burst=4)
    slave, outcome = _engine_sim(dma, [(0, 1000, 0x200, 64), (1, 4096 - 32, 0, 64), (0, 0, 0x300, 8)], memory, soc,
                                 seed=3)
    assert slave.violations == []
    assert outcome["errors"] == [(1, 2), (1, 3), (0, 0)]     # SLVERR, DECERR, then a clean job
    # the read stopped after the burst holding byte 1024, the write after the one holding 4096
    reads = [b for b in slave.bursts if b[0] == "read" and b[1] != 0]
    assert reads[-1][1] <= 1024 < reads[-1][1] + 8 * reads[-1][2]
    writes = [b for b in slave.bursts if b[0] == "write"]
    assert writes[-1][1] <= 4096 < writes[-1][1] + 8 * writes[-1][2]
