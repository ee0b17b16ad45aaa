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
