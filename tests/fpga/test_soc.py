# amaranth: UnusedElaboratable=no
"""SoC core on its bus: register block, memory load / readback, stream readers and result writer."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparsa.hdl.soc.buffers import HOST_READ_LATENCY, ResultBuffer, SourceBuffer
from sparsa.hdl.soc.bus import READ_LATENCY
from sparsa.hdl.soc.core import SocCore
from sparsa.hdl.soc.params import SOC_ID, SOC_VERSION, Reg, Region, SocParams, Status, stride_for, words_per_beat

from .conftest import gemm


def _bus_sim(dut, body):
    """Run ``body(ops)`` as a testbench; ``ops`` has async ``read(addr)`` and ``write(addr, data)``."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out = {}

    async def tb(ctx):
        bus = dut.bus

        class Ops:
            ctx_ = ctx

            @staticmethod
            async def read(addr):
                ctx.set(bus.addr, addr)
                ctx.set(bus.r_en, 1)
                await ctx.tick()
                ctx.set(bus.r_en, 0)
                await ctx.tick().repeat(READ_LATENCY - 1)
                return ctx.get(bus.r_data)

            @staticmethod
            async def write(addr, data):
                ctx.set(bus.addr, addr)
                ctx.set(bus.w_data, data)
                ctx.set(bus.w_en, 1)
                await ctx.tick()
                ctx.set(bus.w_en, 0)

            @staticmethod
            async def ticks(n):
                await ctx.tick().repeat(n)

        out["value"] = await body(Ops)
    sim.add_testbench(tb)
    sim.run()
    return out.get("value")


def test_params_address_map(small_params):
    p = small_params
    assert p.base(Region.REGS) == 0
    assert p.region_shift >= 8 and p.addr_width == p.region_shift + 3
    for region, mem in p.memories.items():
        assert mem.span_words <= 1 << p.region_shift
        assert mem.stride == stride_for(mem.bits) >= words_per_beat(mem.bits)
        assert p.beat_addr(region, 3) == p.base(region) + 3 * mem.stride
    cfg = p.config
    assert p.weight_depth == cfg.buffers.weight_buffer_bytes * 8 // cfg.weight_beat_bits
    assert p.act_depth == cfg.buffers.activation_buffer_bytes * 8 // cfg.activation_beat_bits
    assert "weights" in p.describe()


def test_params_reject_bad_arguments(small_cfg):
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, not 'x'"):
        SocParams("x")
    with pytest.raises(ValueError, match="instr_depth must be an integer >= 2, not 1"):
        SocParams(small_cfg, instr_depth=1)


def test_register_block(small_params):
    p = small_params

    async def body(ops):
        ident = [await ops.read(p.reg_addr(r)) for r in (Reg.ID, Reg.VERSION, Reg.CONFIG_HASH, Reg.GEOMETRY)]
        depths = [await ops.read(p.reg_addr(r)) for r in (Reg.INSTR_DEPTH, Reg.WEIGHT_DEPTH, Reg.ACT_DEPTH,
                                                          Reg.RESULT_DEPTH)]
        await ops.write(p.reg_addr(Reg.SCRATCH), 0xCAFEF00D)
        await ops.write(p.reg_addr(Reg.WEIGHT_COUNT), 17)
        rw = [await ops.read(p.reg_addr(Reg.SCRATCH)), await ops.read(p.reg_addr(Reg.WEIGHT_COUNT))]
        await ops.write(p.reg_addr(Reg.ID), 0)            # read-only: ignored
        status = await ops.read(p.reg_addr(Reg.STATUS))
        return ident, depths, rw, await ops.read(p.reg_addr(Reg.ID)), status

    ident, depths, rw, id_again, status = _bus_sim(SocCore(p), body)
    assert ident == [SOC_ID, SOC_VERSION, p.config_hash32, p.geometry]
    assert depths == [p.instr_depth, p.weight_depth, p.act_depth, p.result_depth]
    assert rw == [0xCAFEF00D, 17]
    assert id_again == SOC_ID
    assert status == 0                                   # idle, not done


def test_memory_load_and_readback(small_params):
    """Whole beats written word by word read back exactly; padding words read 0; a beat is
    committed only when its last word is written."""
    p = small_params
    rng = np.random.default_rng(3)
    beats = {region: [int(x) for x in rng.integers(0, 1 << 62, 3, dtype=np.int64)] for region in
             (Region.INSTR, Region.WEIGHTS, Region.ACTS)}

    async def body(ops):
        got = {}
        for region, values in beats.items():
            mem = p.memory(region)
            for i, value in enumerate(values):
                value &= (1 << mem.bits) - 1
                values[i] = value
                for w in range(mem.words):
                    await ops.write(p.beat_addr(region, i + 1) + w, (value >> (32 * w)) & 0xFFFFFFFF)
            got[region] = []
            for i in range(len(values)):
                words = [await ops.read(p.beat_addr(region, i + 1) + w) for w in range(mem.stride)]
                got[region].append(words)
        # partial beat: write only the first word of the weights' beat 7 -> memory unchanged (still 0)
        wmem = p.memory(Region.WEIGHTS)
        await ops.write(p.beat_addr(Region.WEIGHTS, 7), 0x12345678)
        partial = [await ops.read(p.beat_addr(Region.WEIGHTS, 7) + w) for w in range(wmem.words)]
        return got, partial

    got, partial = _bus_sim(SocCore(p), body)
    for region, values in beats.items():
        mem = p.memory(region)
        for value, words in zip(values, got[region]):
            assert sum(w << (32 * j) for j, w in enumerate(words[:mem.words])) == value
            assert words[mem.words:] == [0] * (mem.stride - mem.words)
    assert partial == [0] * p.memory(Region.WEIGHTS).words


def _stream_sim(buf, beats, stall_seed, extra_checks=True):
    """Load ``beats`` into a SourceBuffer, stream them into a randomly stalling sink."""
    sim = Simulator(buf)
    sim.add_clock(1e-8)
    rng = np.random.default_rng(stall_seed)
    got = []
    violations = []

    async def tb(ctx):
        for i, b in enumerate(beats):
            ctx.set(buf.host_wen, 1)
            ctx.set(buf.host_waddr, i)
            ctx.set(buf.host_wdata, b)
            await ctx.tick()
        ctx.set(buf.host_wen, 0)
        ctx.set(buf.count, len(beats))
        ctx.set(buf.start, 1)
        await ctx.tick()
        ctx.set(buf.start, 0)
        ctx.set(buf.running, 1)
        held = None
        for _ in range(8 * len(beats) + 10):
            ready = int(rng.random() < 0.6)
            valid = ctx.get(buf.stream.valid)
            ctx.set(buf.stream.ready, 1 - ready)      # the reader's valid must not follow ready
            if ctx.get(buf.stream.valid) != valid:
                violations.append("valid depends on ready")
            ctx.set(buf.stream.ready, ready)
            payload = ctx.get(buf.stream.payload)
            if held is not None and valid and payload != held:
                violations.append("payload changed while valid & ~ready")
            if valid and ready:
                got.append(payload)
                held = None
            elif valid:
                held = payload
            await ctx.tick()
        return None
    sim.add_testbench(tb)
    sim.run()
    return got, violations


@pytest.mark.parametrize("stages", [0, 1, 2])
def test_source_buffer_streams_in_order_under_stalls(stages):
    rng = np.random.default_rng(11)
    beats = [int(x) for x in rng.integers(0, 1 << 40, 23, dtype=np.int64)]
    got, violations = _stream_sim(SourceBuffer(40, 32, stages=stages), beats, stall_seed=5)
    assert violations == []
    assert got == beats                      # exactly count beats, in order, nothing after


@pytest.mark.parametrize("stages", [0, 1, 2])
def test_source_buffer_full_rate_after_prime(stages):
    """With an always-ready sink the beats leave one per cycle, the first prime_cycles after start."""
    buf = SourceBuffer(16, 16, stages=stages)
    sim = Simulator(buf)
    sim.add_clock(1e-8)
    seen = []

    async def tb(ctx):
        for i in range(5):
            ctx.set(buf.host_wen, 1)
            ctx.set(buf.host_waddr, i)
            ctx.set(buf.host_wdata, 100 + i)
            await ctx.tick()
        ctx.set(buf.host_wen, 0)
        ctx.set(buf.count, 5)
        ctx.set(buf.start, 1)
        await ctx.tick()
        ctx.set(buf.start, 0)
        ctx.set(buf.running, 1)
        ctx.set(buf.stream.ready, 1)
        for cycle in range(10):
            if ctx.get(buf.stream.valid):
                seen.append((cycle, ctx.get(buf.stream.payload)))
            await ctx.tick()
    sim.add_testbench(tb)
    sim.run()
    p = buf.prime_cycles
    assert seen == [(p + i, 100 + i) for i in range(5)]


def test_source_buffer_rejects_bad_geometry():
    with pytest.raises(ValueError, match="width must be a positive integer, not 0"):
        SourceBuffer(0, 4)
    with pytest.raises(ValueError, match="depth must be an integer >= 2, not 1"):
        SourceBuffer(8, 1)
    with pytest.raises(ValueError, match="stages must be 0, 1 or 2, not 3"):
        SourceBuffer(8, 4, stages=3)


@pytest.mark.parametrize("stages", [0, 1, 2])
def test_source_buffer_host_read_latency(stages):
    """A host read shows mem[addr] exactly host_read_latency cycles after the address, for
    back-to-back addresses (one read per cycle)."""
    buf = SourceBuffer(12, 8, stages=stages)
    sim = Simulator(buf)
    sim.add_clock(1e-8)
    seen = {}

    async def tb(ctx):
        for i in range(8):
            ctx.set(buf.host_wen, 1)
            ctx.set(buf.host_waddr, i)
            ctx.set(buf.host_wdata, 0x100 + 7 * i)
            await ctx.tick()
        ctx.set(buf.host_wen, 0)
        order = [3, 0, 7, 7, 5, 1]
        for cycle in range(len(order) + 3):
            if cycle < len(order):
                ctx.set(buf.host_raddr, order[cycle])
            await ctx.tick()
            seen[cycle + 1] = ctx.get(buf.host_rdata)
        seen["order"] = order
    sim.add_testbench(tb)
    sim.run()
    lat = buf.host_read_latency
    assert lat == 1 + stages
    order = seen["order"]
    assert [seen[c + lat] for c in range(len(order))] == [0x100 + 7 * a for a in order]


def test_result_buffer_overflow_drops_and_flags():
    buf = ResultBuffer(8, 4)
    sim = Simulator(buf)
    sim.add_clock(1e-8)
    result = {}

    async def tb(ctx):
        ctx.set(buf.start, 1)
        await ctx.tick()
        ctx.set(buf.start, 0)
        ctx.set(buf.running, 1)
        for i in range(6):
            ctx.set(buf.stream.valid, 1)
            ctx.set(buf.stream.payload, 10 + i)
            assert ctx.get(buf.stream.ready)
            await ctx.tick()
        ctx.set(buf.stream.valid, 0)
        ctx.set(buf.running, 0)
        rows = []
        for i in range(4):
            ctx.set(buf.host_raddr, i)
            await ctx.tick().repeat(HOST_READ_LATENCY)
            rows.append(ctx.get(buf.host_rdata))
        result.update(rows=rows, count=ctx.get(buf.count), overflow=ctx.get(buf.overflow))
    sim.add_testbench(tb)
    sim.run()
    assert result == {"rows": [10, 11, 12, 13], "count": 6, "overflow": 1}


def test_run_control_start_done_clear(small_cfg):
    """START runs a program from the memories; STATUS goes busy -> done; CYCLES is the contract;
    START again reruns it; CLEAR goes idle."""
    from sparsa.layout import pack_activation_beat, pack_weight_beat
    from sparsa.sim.cycle import program_cycles

    p = SocParams(small_cfg, instr_depth=64)
    program, a = gemm(small_cfg, 3, 8, 4, seed=2)
    words = program.instruction_words()
    weights = [pack_weight_beat(small_cfg, v, i) for v, i in program.weight_beats()]
    acts = [pack_activation_beat(small_cfg, lanes) for lanes in program.activation_beats(a)]

    async def body(ops):
        for region, beats in ((Region.INSTR, words), (Region.WEIGHTS, weights), (Region.ACTS, acts)):
            mem = p.memory(region)
            for i, beat in enumerate(beats):
                for w in range(mem.words):
                    await ops.write(p.beat_addr(region, i) + w, (beat >> (32 * w)) & 0xFFFFFFFF)
        for reg, n in ((Reg.INSTR_COUNT, len(words)), (Reg.WEIGHT_COUNT, len(weights)), (Reg.ACT_COUNT, len(acts))):
            await ops.write(p.reg_addr(reg), n)
        trace = []
        for _ in range(2):
            await ops.write(p.reg_addr(Reg.CTRL), 1)
            trace.append(await ops.read(p.reg_addr(Reg.STATUS)))
            await ops.ticks(program_cycles(program) + 5)
            trace.append(await ops.read(p.reg_addr(Reg.STATUS)))
            trace.append(await ops.read(p.reg_addr(Reg.CYCLES)))
            trace.append(await ops.read(p.reg_addr(Reg.RUN_CYCLES)))
            trace.append(await ops.read(p.reg_addr(Reg.RESULT_COUNT)))
        await ops.write(p.reg_addr(Reg.CTRL), 2)
        trace.append(await ops.read(p.reg_addr(Reg.STATUS)))
        return trace

    trace = _bus_sim(SocCore(p), body)
    nominal = program_cycles(program)
    once = [int(Status.BUSY), int(Status.DONE), nominal, nominal, program.num_output_beats]
    assert trace == once + once + [0]
