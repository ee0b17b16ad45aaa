"""Full GEMMs through compile_gemm on the Amaranth simulation: bit-exact Y, cycles = cycle model."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.errors import ConfigError
from sparsa.models.reference import gemm_reference
from sparsa.sim import get_backend
from sparsa.sim.backends.amaranth_backend import AmaranthBackend

from ..conftest import preset


def _operands(cfg, m, k, n, seed):
    rng = np.random.default_rng(seed)
    wl, al = 1 << (cfg.weight_bits - 1), 1 << (cfg.activation_bits - 1)
    return rng.integers(-al, al, (m, k)), rng.integers(-wl, wl, (k, n))


def _check(cfg, m, k, n, pattern, seed, stall_seed=None):
    a, w = _operands(cfg, m, k, n, seed)
    program = compile_gemm(cfg, w, m, pattern)
    result = get_backend("amaranth", cfg, stall_seed=stall_seed).run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    assert result.stats["cycles_measured"] == result.cycles
    model = get_backend("cycle", cfg).run(program, {"A": a}).cycles
    if stall_seed is None:
        assert result.cycles == model == result.stats["cycles_nominal"]
    else:
        assert result.cycles > model
    return result


@pytest.mark.parametrize("name,pattern,shape", [
    ("systolic-4x4-2of4", "2:4", (13, 37, 11)),
    ("systolic-4x4-2of4", "dense", (5, 9, 4)),
    ("systolic-4x8-m8", "2:8", (7, 50, 17)),
    ("systolic-4x8-m8", "2:4", (6, 21, 9)),
    ("systolic-4x4-int4", "2:8", (9, 45, 6)),
    ("systolic-8x8-2of4", "2:4", (24, 70, 19)),
])
def test_gemm_bit_exact_and_cycles_equal_model(name, pattern, shape):
    _check(preset(name), *shape, pattern, seed=sum(shape))


def test_accumulator_chunks_and_gemv():
    cfg = preset("systolic-4x4-2of4")
    _check(cfg, 1, 50, 7, "2:4", 1)             # GEMV
    _check(cfg, 70, 9, 5, "1:4", 2)             # more rows than the 64-row accumulator


@pytest.mark.parametrize("name,stall_seed", [("systolic-4x4-2of4", 1), ("systolic-4x8-m8", 2),
                                              ("systolic-4x4-int4", 3)])
def test_random_stalls_keep_outputs_bit_exact(name, stall_seed):
    _check(preset(name), 11, 30, 10, None, 4, stall_seed=stall_seed)


def test_most_negative_operands_int4_and_int8():
    for name in ("systolic-4x4-2of4", "systolic-4x4-int4"):
        cfg = preset(name)
        a = np.full((3, 16), -(1 << (cfg.activation_bits - 1)))
        w = np.full((16, 5), -(1 << (cfg.weight_bits - 1)))
        program = compile_gemm(cfg, w, 3, "dense")
        y = AmaranthBackend(cfg).run(program, {"A": a}).outputs["Y"]
        np.testing.assert_array_equal(y, gemm_reference(a, program.weights, cfg.accumulator_bits))


def test_backend_arguments_checked():
    cfg = preset("systolic-4x4-2of4")
    with pytest.raises(ValueError, match="stall_seed must be a non-negative integer or None, not -1"):
        AmaranthBackend(cfg, stall_seed=-1)
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, not 'cfg'"):
        AmaranthBackend("cfg")
    program = compile_gemm(preset("systolic-4x8-m8"), np.ones((8, 8), dtype=int), 2)
    with pytest.raises(ConfigError, match="compiled for config 'systolic-4x8-m8'"):
        AmaranthBackend(cfg).run(program, {"A": np.ones((2, 8), dtype=int)})


def _mult18x18d_model(m, name, *, en, a, b, p):
    """Amaranth model of the registered MULT18X18D of :func:`sparsa.hdl.pe._mult18x18d`."""
    from amaranth.hdl import Signal

    a_reg, b_reg = Signal(18, name=f"{name}_a_reg"), Signal(18, name=f"{name}_b_reg")
    p_reg = Signal(36, name=f"{name}_p_reg")
    with m.If(en):
        m.d.sync += [a_reg.eq(a), b_reg.eq(b), p_reg.eq(a_reg * b_reg)]
    m.d.comb += p.eq(p_reg)


@pytest.mark.parametrize("name,pattern,shape,stall_seed", [
    ("systolic-4x4-2of4", "2:4", (13, 37, 11), None),
    ("systolic-4x4-2of4", "2:4", (9, 20, 7), 4),
    ("systolic-4x4-int4", "2:8", (9, 45, 6), 5),
])
def test_ecp5_dsp_register_variant(monkeypatch, name, pattern, shape, stall_seed):
    """The ECP5 board build puts the PE's MUX and product registers into MULT18X18D (A/B input and
    output registers, CE = en): with a model of that primitive the array stays bit-exact and
    cycle-exact, stalls included."""
    from sparsa.hdl import pe

    cfg = preset(name)
    assert not pe.uses_ecp5_dsp_registers(cfg, None)
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    assert pe.uses_ecp5_dsp_registers(cfg, ULX3S_85F_Platform())
    assert not pe.uses_ecp5_dsp_registers(preset("systolic-4x4-ovp4"), ULX3S_85F_Platform())
    monkeypatch.setattr(pe, "uses_ecp5_dsp_registers", lambda config, platform: True)
    monkeypatch.setattr(pe, "_mult18x18d", _mult18x18d_model)
    _check(cfg, *shape, pattern, seed=sum(shape), stall_seed=stall_seed)


def _poisoning_dp16kd(m, name, *, width, wen, waddr, wdata, ren, raddr, rdata, output_register=True):
    """Amaranth model of one ``DP16KD`` of :func:`sparsa.hdl.bram._dp16kd` that returns the
    *inverted* word when a read hits the word written at the same edge (the primitive promises
    neither old nor new data then), so a design that relies on such a read fails bit-exactness."""
    from amaranth.hdl import Signal
    from amaranth.lib import memory

    from sparsa.hdl import bram

    words = 16384 >> bram._ADDRESS_SHIFT[width]
    m.submodules[name] = mem = memory.Memory(shape=width, depth=words, init=[])
    wport = mem.write_port(domain="sync")
    rport = mem.read_port(domain="sync", transparent_for=())
    m.d.comb += [wport.en.eq(wen), wport.addr.eq(waddr), wport.data.eq(wdata), rport.en.eq(ren),
                 rport.addr.eq(raddr)]
    collided = Signal(name=f"{name}_collided")
    with m.If(ren):
        m.d.sync += collided.eq(wen & (waddr == raddr))
    latch = Signal(width, name=f"{name}_latch")
    m.d.comb += latch.eq(rport.data ^ (collided.replicate(width)))
    if not output_register:
        m.d.comb += rdata.eq(latch)
        return
    out = Signal(width, name=f"{name}_outreg")
    with m.If(ren):
        m.d.sync += out.eq(latch)
    m.d.comb += rdata.eq(out)


def test_poisoning_dp16kd_model_corrupts_a_colliding_read(monkeypatch):
    """The model below is strict: a read of the word written in the same cycle comes back inverted."""
    from amaranth.sim import Simulator

    from sparsa.hdl import bram

    monkeypatch.setattr(bram, "uses_ecp5_block_ram", lambda platform: True)
    monkeypatch.setattr(bram, "_dp16kd", _poisoning_dp16kd)
    dut = bram.PipelinedBlockRam(36, 64, output_register=False)
    seen = []

    async def tb(ctx):
        for wen, addr, data, raddr in [(1, 5, 0x123, 9), (1, 5, 0x456, 5), (0, 0, 0, 5)]:
            ctx.set(dut.wen, wen)
            ctx.set(dut.waddr, addr)
            ctx.set(dut.wdata, data)
            ctx.set(dut.ren, 1)
            ctx.set(dut.raddr, raddr)
            await ctx.tick()
            seen.append(ctx.get(dut.rdata))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen[1] == 0x123 ^ ((1 << 36) - 1)       # the collision: poisoned
    assert seen[2] == 0x456                          # a later read: the new word


@pytest.mark.parametrize("name,pattern,shape,stall_seed", [
    ("systolic-4x4-2of4", "2:4", (13, 37, 11), None),
    ("systolic-4x4-2of4", "1:4", (70, 9, 5), None),        # more rows than the 64-row accumulator
    ("systolic-4x4-2of4", "2:4", (9, 20, 7), 4),
    ("systolic-4x8-m8", "2:8", (7, 50, 17), 2),
    ("systolic-4x4-int4", "2:8", (9, 45, 6), None),
    ("systolic-4x4-2of4", None, (1, 50, 7), None),         # GEMV
    ("systolic-8x8-2of4", "2:4", (24, 70, 19), None),      # the ULX3S-85F build's design
])
def test_ecp5_accumulator_block_ram_never_reads_the_row_it_writes(monkeypatch, name, pattern, shape, stall_seed):
    """On ECP5 the accumulator bank is a DP16KD grid (sparsa.hdl.bram, NOREG), whose read of the
    word written in the same cycle is undefined.  With a DP16KD model that inverts such reads,
    the accelerator stays bit-exact and cycle-exact: the bank never relies on one (stalls,
    accumulator chunks and GEMV included)."""
    from sparsa.hdl import bram

    monkeypatch.setattr(bram, "uses_ecp5_block_ram", lambda platform: True)
    monkeypatch.setattr(bram, "_dp16kd", _poisoning_dp16kd)
    _check(preset(name), *shape, pattern, seed=sum(shape), stall_seed=stall_seed)
