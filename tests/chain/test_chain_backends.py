"""The sparse DSP chain (issue 5) on every backend: bit-exact against NumPy, cycles equal to the model.

Same protocol and shape of matrix as tests/test_backends.py: reference, isa, cycle on random
shapes (GEMV m=1, k/n not multiples of the chain), the RTL backends on one shape per case,
-128 edges and the packed low-lane worst case everywhere.
"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import pytest

from sparsa.compiler import compile_gemm
from sparsa.models.reference import gemm_reference
from sparsa.sim import get_backend
from sparsa.sim.cycle import program_cycles

from ..conftest import preset
from ..rtl import rtl_backend

FAST = ["reference", "isa", "cycle"]
RTL = ["amaranth", "verilator"]

CASES = [
    ("chain-4x4-2of4", "2:4"), ("chain-4x4-2of4", "1:4"), ("chain-4x4-2of4", "1:2"), ("chain-4x4-2of4", "dense"),
    ("chain-4x4-packed", "2:8"), ("chain-4x4-packed", "1:8"), ("chain-4x4-packed", "2:4"),
    ("chain-4x4-packed", "1:2"), ("chain-4x4-packed", "dense"),
    ("chain-8x2-m16", "4:16"), ("chain-8x2-m16", "2:16"), ("chain-8x2-m16", "1:8"), ("chain-8x2-m16", "dense"),
    # cascade cutting: the compiler picks S per GEMM (forced S: tests/chain/test_chain_segments.py)
    ("chain-8x4-seg", "2:4"), ("chain-8x4-seg", "1:4"), ("chain-8x4-seg", "dense"),
]
PRESETS = ["chain-4x4-2of4", "chain-4x4-packed", "chain-8x2-m16", "chain-8x4-seg"]


def _operands(cfg, m, k, n, seed, edge=None):
    rng = np.random.default_rng(seed)
    wb, ab = cfg.weight_bits, cfg.activation_bits
    if edge == "min":
        return np.full((m, k), -(1 << (ab - 1))), np.full((k, n), -(1 << (wb - 1)))
    w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, n))
    a = rng.integers(-(1 << (ab - 1)), 1 << (ab - 1), size=(m, k))
    return a, w


def _backend(name, cfg, **options):
    if name in RTL:
        return rtl_backend(name, cfg) if not options else get_backend(name, cfg, **options)
    return get_backend(name, cfg)


def _check(backend_name, cfg, m, k, n, pattern, seed, edge=None, **options):
    a, w = _operands(cfg, m, k, n, seed, edge)
    program = compile_gemm(cfg, w, m, pattern)
    result = _backend(backend_name, cfg, **options).run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    if result.cycles is not None and not options:
        assert result.cycles == program_cycles(program)
    return program, result


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config,pattern", CASES)
@pytest.mark.parametrize("seed", range(3))
def test_numpy_backends_random_shapes(backend, config, pattern, seed):
    cfg = preset(config)
    rng = np.random.default_rng(3000 + seed)
    m = 1 if seed == 0 else int(rng.integers(2, 40))            # seed 0: GEMV (decode)
    k, n = int(rng.integers(1, 300)), int(rng.integers(1, 30))
    _check(backend, cfg, m, k, n, pattern, seed)


@pytest.mark.parametrize("backend", FAST + RTL)
@pytest.mark.parametrize("config", PRESETS)
def test_most_negative_everywhere(backend, config):
    cfg = preset(config)
    _check(backend, cfg, 3, 40, 5, "dense", 0, edge="min")


@pytest.mark.parametrize("backend", RTL)
@pytest.mark.parametrize("config,pattern", CASES)
def test_rtl_matches_reference_and_cycle_model(backend, config, pattern):
    cfg = preset(config)
    rng = np.random.default_rng(zlib.crc32(f"{config}/{pattern}".encode()))
    m, k, n = int(rng.integers(1, 6)), int(rng.integers(1, 60)), int(rng.integers(1, 2 * cfg.cols + 3))
    _check(backend, cfg, m, k, n, pattern, 3)


@pytest.mark.parametrize("backend", RTL)
def test_rtl_gemv_and_chunks(backend):
    cfg = preset("chain-4x4-2of4")
    program, _ = _check(backend, cfg, 1, 37, 7, "2:4", 11)               # GEMV, one LOAD_A
    assert program.opcode_counts()["LOAD_A"] == 1
    # k beyond the activation buffer (act_depth=16 words): k-chunks, COMPUTE with accumulate;
    # n beyond the output bank (16 rows): n-chunks
    program, _ = _check(backend, cfg, 2, 150, 70, "dense", 12)
    assert any(i.accumulate for i in program.instructions)
    assert len(program.tiling.nchunks) > 1


@pytest.mark.parametrize("backend", FAST + ["amaranth"])
def test_packed_low_lane_worst_case(backend):
    """8 products of (-128)(-128) = 2^17 per k-tile overflow an 18-bit low lane: the reduction
    nodes split every DSP group (2 products) into LSP/MSP, so a chain of 8 slices is exact;
    and a group of 7 (the most that fits: 7 * 2^14 < 2^17) is exact too."""
    for overrides in ({"datapath.rows": 8}, {"datapath.rows": 7, "datapath.chain.group": 7}):
        cfg = preset("chain-4x4-packed").with_overrides({**overrides, "name": "chain-packed-edge"})
        for a_val, w_val in ((-128, -128), (127, -128), (-128, 127)):
            a, w = np.full((2, 64), a_val), np.full((64, 4), w_val)
            program = compile_gemm(cfg, w, 2, "dense")
            y = _backend(backend, cfg).run(program, {"A": a}).outputs["Y"]
            assert np.all(y == 64 * a_val * w_val)


def test_stalls_keep_outputs_bit_exact():
    cfg = preset("chain-4x4-packed")
    a, w = _operands(cfg, 3, 70, 9, 4)
    program = compile_gemm(cfg, w, 3, "2:8")
    plain = get_backend("amaranth", cfg).run(program, {"A": a})
    stalled = get_backend("amaranth", cfg, stall_seed=5).run(program, {"A": a})
    np.testing.assert_array_equal(stalled.outputs["Y"], plain.outputs["Y"])
    assert stalled.cycles > plain.cycles == program_cycles(program)


def test_flush_is_tight():
    """One flush cycle less than the contract loses the last result row."""
    pytest.importorskip("amaranth")
    from sparsa.chain_timing import chain_latency
    from sparsa.hdl.chain.top import SparseChainAccelerator
    from sparsa.sim.backends.amaranth_backend import pack_program, run_streams, unpack_outputs

    cfg = preset("chain-4x4-2of4")
    a, w = _operands(cfg, 1, 16, 4, 1)
    program = compile_gemm(cfg, w, 1, "dense")
    expected = gemm_reference(a, program.weights, cfg.accumulator_bits)
    words, weights, acts = pack_program(program, a)
    for flush, exact in ((chain_latency(cfg), True), (chain_latency(cfg) - 1, False)):
        run = run_streams(SparseChainAccelerator(cfg, flush_cycles=flush), words, weights, acts,
                          program.num_output_beats)
        y = program.collect_outputs(unpack_outputs(cfg, run.outputs))
        assert np.array_equal(y, expected) is exact


@pytest.mark.parametrize("config", PRESETS)
def test_schedule_counts_equal_program(config):
    """The estimator's aggregated counts are the compiler's program."""
    from sparsa.compiler.chain import plan_chain_tiling

    cfg = preset(config)
    for m, k, n in ((1, 300, 50), (5, 33, 7), (9, 1000, 3), (64, 8, 256)):
        w = np.ones((k, n), dtype=np.int64)
        program = compile_gemm(cfg, w, m, "dense")
        assert plan_chain_tiling(cfg, m, k, n, "dense").instruction_counts() == Counter(program.instructions)


@pytest.mark.parametrize("backend", ["icarus"])
@pytest.mark.parametrize("config,pattern", [("chain-4x4-2of4", "2:4"), ("chain-4x4-packed", "2:8"),
                                            ("chain-8x2-m16", "4:16"), ("chain-8x4-seg", "1:4")])
def test_icarus_matches_reference_and_cycle_model(backend, config, pattern):
    """The second Verilog simulator (Icarus Verilog, small shapes) on every preset Verilator simulates."""
    cfg = preset(config)
    a, w = _operands(cfg, 2, 24, cfg.cols + 1, 8)
    program = compile_gemm(cfg, w, 2, pattern)
    result = rtl_backend(backend, cfg).run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    assert result.cycles == program_cycles(program)
