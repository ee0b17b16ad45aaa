"""One test body over every backend: bit-exact against NumPy, cycles equal to the cycle model.

The RTL backends (``amaranth``, ``verilator``) join the matrix when their tools are
installed; otherwise those cases skip with the install command.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.models.reference import gemm_reference
from sparsa.sim import get_backend
from sparsa.sim.cycle import program_cycles

from .conftest import preset
from .rtl import rtl_backend

FAST = ["reference", "isa", "cycle"]
RTL = ["amaranth", "verilator"]

# (config, sparsity) pairs: every pattern the issue names on an array that can run it
CASES = [
    ("systolic-4x4-2of4", "2:4"), ("systolic-4x4-2of4", "1:4"), ("systolic-4x4-2of4", "1:2"),
    ("systolic-4x4-2of4", "dense"), ("systolic-8x8-2of4", "2:4"), ("systolic-8x8-2of4", "1:4"),
    ("systolic-4x8-m8", "2:8"), ("systolic-4x8-m8", "4:8"), ("systolic-4x8-m8", "1:8"),
    ("systolic-4x8-m8", "dense"), ("systolic-4x8-m8", "2:4"), ("systolic-4x4-int4", "2:8"),
]


def _operands(cfg, m, k, n, seed, edge=None):
    rng = np.random.default_rng(seed)
    wb, ab = cfg.weight_bits, cfg.activation_bits
    if edge == "min":
        return np.full((m, k), -(1 << (ab - 1))), np.full((k, n), -(1 << (wb - 1)))
    w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, n))
    a = rng.integers(-(1 << (ab - 1)), 1 << (ab - 1), size=(m, k))
    return a, w


def _check(backend_name, cfg, m, k, n, pattern, seed, edge=None, **compile_kw):
    a, w = _operands(cfg, m, k, n, seed, edge)
    program = compile_gemm(cfg, w, m, pattern, **compile_kw)
    backend = rtl_backend(backend_name, cfg) if backend_name in RTL else get_backend(backend_name, cfg)
    result = backend.run(program, {"A": a})
    expected = gemm_reference(a, program.weights, cfg.accumulator_bits)
    np.testing.assert_array_equal(result.outputs["Y"], expected)
    if result.cycles is not None:
        assert result.cycles == program_cycles(program)
    return result


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config,pattern", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_numpy_backends_random_shapes(backend, config, pattern, seed):
    cfg = preset(config)
    rng = np.random.default_rng(1000 + seed)
    m, k, n = int(rng.integers(1, 90)), int(rng.integers(1, 130)), int(rng.integers(1, 30))
    _check(backend, cfg, m, k, n, pattern, seed)


@pytest.mark.parametrize("backend", FAST)
def test_big_shapes(backend, cfg8x8):
    # M in the thousands (several accumulator chunks), K and N not multiples of the array
    _check(backend, cfg8x8, 1100, 333, 19, "2:4", 7)


@pytest.mark.parametrize("backend", FAST + RTL)
@pytest.mark.parametrize("config", ["systolic-4x4-2of4", "systolic-4x8-m8", "systolic-4x4-int4"])
def test_most_negative_everywhere(backend, config):
    cfg = preset(config)
    _check(backend, cfg, 3, 24, 9, "dense", 0, edge="min")


@pytest.mark.parametrize("backend", FAST + RTL)
def test_accumulator_wraps(backend):
    """Documented semantics: the accumulator wraps (two's complement) when overflow is allowed."""
    cfg = preset("systolic-4x4-2of4").with_overrides({"types.accumulator_bits": 18})
    a, w = np.full((2, 40), -128), np.full((40, 4), -128)
    program = compile_gemm(cfg, w, 2, "dense", allow_overflow=True)
    be = rtl_backend(backend, cfg) if backend in RTL else get_backend(backend, cfg)
    y = be.run(program, {"A": a}).outputs["Y"]
    true = 40 * 128 * 128
    wrapped = ((true + 2**17) % 2**18) - 2**17
    assert wrapped != true and np.all(y == wrapped)


@pytest.mark.parametrize("backend", RTL)
@pytest.mark.parametrize("config,pattern", CASES)
def test_rtl_matches_reference_and_cycle_model(backend, config, pattern):
    cfg = preset(config)
    rng = np.random.default_rng(zlib.crc32(f"{config}/{pattern}".encode()))
    m, k, n = int(rng.integers(1, 12)), int(rng.integers(1, 40)), int(rng.integers(1, 2 * cfg.cols + 3))
    _check(backend, cfg, m, k, n, pattern, 3)


@pytest.mark.parametrize("backend", RTL)
def test_rtl_gemv_and_chunks(backend, cfg4x4):
    _check(backend, cfg4x4, 1, 50, 7, "2:4", 11)                      # GEMV (LLM decode)
    _check(backend, cfg4x4, 130, 9, 5, "1:4", 12)                      # 3 accumulator chunks


def test_unknown_backend(cfg4x4):
    from sparsa.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown backend 'gpu'; choose one of reference"):
        get_backend("gpu", cfg4x4)


# ------------------------------------------------------------------------------------ OVP-4 (issue 3)
# OVP-4 weights x int8 / OVP-4 activations, combined with N:M (random pairs with outliers;
# compile_gemm rounds W's compressed pairs, A is exactly representable).

OVP_CASES = [
    ("systolic-4x4-ovp4", "2:4"), ("systolic-4x4-ovp4", "1:4"), ("systolic-4x4-ovp4", "1:2"),
    ("systolic-4x4-ovp4", "dense"), ("systolic-4x4-ovp4-ovp4", "2:4"), ("systolic-4x4-ovp4-ovp4", "1:4"),
    ("systolic-4x4-ovp4-ovp4", "dense"),
]


def _ovp_check(backend_name, cfg, m, k, n, pattern, seed):
    from .test_ovp_hw import ovp_operands

    a, w = ovp_operands(cfg, m, k, n, seed)
    program = compile_gemm(cfg, w, m, pattern)
    backend = rtl_backend(backend_name, cfg) if backend_name in RTL else get_backend(backend_name, cfg)
    result = backend.run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    if result.cycles is not None:
        assert result.cycles == program_cycles(program)
    return result


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config,pattern", OVP_CASES)
@pytest.mark.parametrize("seed", range(4))
def test_ovp_numpy_backends_random_shapes(backend, config, pattern, seed):
    cfg = preset(config)
    rng = np.random.default_rng(2000 + seed)
    m, k, n = int(rng.integers(1, 90)), int(rng.integers(1, 130)), int(rng.integers(1, 30))
    _ovp_check(backend, cfg, m, k, n, pattern, seed)


@pytest.mark.parametrize("backend", RTL)
@pytest.mark.parametrize("config,pattern", OVP_CASES)
def test_ovp_rtl_matches_reference_and_cycle_model(backend, config, pattern):
    cfg = preset(config)
    rng = np.random.default_rng(zlib.crc32(f"{config}/{pattern}".encode()))
    m, k, n = int(rng.integers(1, 12)), int(rng.integers(1, 40)), int(rng.integers(1, 2 * cfg.cols + 3))
    _ovp_check(backend, cfg, m, k, n, pattern, 3)


# Other geometries and the int4-activation variant: NumPy rungs + Amaranth (no extra Verilator builds).
OVP_OVERRIDES = [
    ("systolic-4x8-m8", {"types.weight": "ovp4", "types.activation": "ovp4"}, "2:8"),
    ("systolic-4x8-m8", {"types.weight": "ovp4"}, "4:8"),
    ("systolic-8x8-2of4", {"types.weight": "ovp4"}, "2:4"),
    ("systolic-4x4-int4", {"types.weight": "ovp4", "types.activation": "int4"}, "1:8"),
]


@pytest.mark.parametrize("backend", FAST + ["amaranth"])
@pytest.mark.parametrize("config,overrides,pattern", OVP_OVERRIDES)
def test_ovp_other_geometries(backend, config, overrides, pattern):
    cfg = preset(config).with_overrides({**overrides, "name": f"{config}-ovp"})
    _ovp_check(backend, cfg, 6, 45, 11, pattern, 5)


@pytest.mark.parametrize("backend", FAST + RTL)
@pytest.mark.parametrize("config", ["systolic-4x4-ovp4", "systolic-4x4-ovp4-ovp4"])
def test_ovp_largest_magnitudes_everywhere(backend, config):
    """Every weight pair (-96, victim); activations -128 (int8) or pairs (-96, victim)."""
    cfg = preset(config)
    k, n, m = 24, 9, 3
    w = np.zeros((k, n), dtype=np.int64)
    w[0::2] = -96
    a = np.zeros((m, k), dtype=np.int64)
    if cfg.activation_is_ovp:
        a[:, 0::2] = -96
    else:
        a[:] = -128
    program = compile_gemm(cfg, w, m, "dense", prune=False)
    be = rtl_backend(backend, cfg) if backend in RTL else get_backend(backend, cfg)
    result = be.run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], a @ w)
    assert result.outputs["Y"][0, 0] == (k // 2) * 96 * (96 if cfg.activation_is_ovp else 128)


# ------------------------------------------------------------------ activation scales (issue 8 part 4)
# Per-token and per-group dynamic activation scales: inputs {"A", "S"}, Y the scaled integer sums
# (tests/test_actscale_hw.py has the details; one Verilator build per preset).

SCALED_CASES = [("systolic-4x4-token", "2:4"), ("systolic-4x4-token", "1:4"),
                ("systolic-4x4-group", "2:4"), ("systolic-4x4-group", "dense")]


@pytest.mark.parametrize("backend", FAST + RTL)
@pytest.mark.parametrize("config,pattern", SCALED_CASES)
def test_scaled_activations_match_reference_and_cycle_model(backend, config, pattern):
    from sparsa.formats import actscale
    from sparsa.models.reference import wrap_exact

    cfg = preset(config)
    rng = np.random.default_rng(zlib.crc32(f"{config}/{pattern}/scaled".encode()))
    m, k, n = int(rng.integers(1, 12)), int(rng.integers(1, 80)), int(rng.integers(1, 2 * cfg.cols + 3))
    a, w = _operands(cfg, m, k, n, 5)
    program = compile_gemm(cfg, w, m, pattern)
    s = rng.integers(0, 1 << cfg.act_scale.mantissa_bits, size=(m, program.scale_groups))
    backend_ = rtl_backend(backend, cfg) if backend in RTL else get_backend(backend, cfg)
    result = backend_.run(program, {"A": a, "S": s})
    spec = cfg.act_scale.spec
    exact = actscale.scaled_gemm_reference(actscale.ScaledActivations(a, s, 0, spec), program.weights.T, spec)
    np.testing.assert_array_equal(result.outputs["Y"], wrap_exact(exact, cfg.accumulator_bits))
    if result.cycles is not None:
        assert result.cycles == program_cycles(program)


# ------------------------------------------------------------------ Icarus Verilog (second simulator)
# The presets the Verilator rungs above simulate, one small GEMM each (Icarus is ~60x slower
# than the Amaranth simulator): bit-exact and cycles equal to the cycle model.

ICARUS_CASES = [("systolic-4x4-2of4", "2:4"), ("systolic-4x8-m8", "2:8"), ("systolic-4x4-int4", "2:8"),
                ("systolic-4x4-ovp4", "1:4"), ("systolic-4x4-ovp4-ovp4", "2:4"), ("systolic-4x4-token", "2:4"),
                ("systolic-4x4-group", "dense"),
                pytest.param("systolic-8x8-2of4", "1:4", marks=pytest.mark.slow)]


@pytest.mark.parametrize("backend", ["icarus"])
@pytest.mark.parametrize("config,pattern", ICARUS_CASES)
def test_icarus_matches_reference_and_cycle_model(backend, config, pattern):
    from sparsa.formats import actscale
    from sparsa.models.reference import wrap_exact

    from .test_ovp_hw import ovp_operands

    cfg = preset(config)
    m, k, n = 2, 20, cfg.cols + 1
    a, w = ovp_operands(cfg, m, k, n, 9) if cfg.weight_is_ovp else _operands(cfg, m, k, n, 9)
    program = compile_gemm(cfg, w, m, pattern)
    tensors = {"A": a}
    expected = gemm_reference(a, program.weights, cfg.accumulator_bits)
    if getattr(program, "scaled", False):
        s = np.random.default_rng(9).integers(0, 1 << cfg.act_scale.mantissa_bits, size=(m, program.scale_groups))
        tensors["S"] = s
        spec = cfg.act_scale.spec
        exact = actscale.scaled_gemm_reference(actscale.ScaledActivations(a, s, 0, spec), program.weights.T, spec)
        expected = wrap_exact(exact, cfg.accumulator_bits)
    result = rtl_backend(backend, cfg).run(program, tensors)
    np.testing.assert_array_equal(result.outputs["Y"], expected)
    assert result.cycles == program_cycles(program)
