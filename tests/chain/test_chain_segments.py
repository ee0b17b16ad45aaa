"""Cutting the cascade (issue 5 part 1): reduction nodes that cut the chain into S segments at run time.

Every backend bit-exact on segmented runs (packed and unpacked, N:M patterns, K not a multiple
of the segment length L, N not a multiple of S * cols, GEMV and GEMM, stalls), cycles equal
to the timing contract, a tight flush, the compiler's choice of S, the ISA field and the
one-line refusals.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.compiler.chain import compile_chain_gemm, plan_chain_tiling
from sparsa.errors import ConfigError, FormatError, IllegalInstructionError
from sparsa.isa import Instruction, Opcode, decode, encode
from sparsa.models.reference import gemm_reference
from sparsa.sim import get_backend
from sparsa.sim.cycle import program_cycles

from ..conftest import preset
from ..rtl import rtl_backend

SEG = "chain-8x4-seg"          # 8 slices in 4 groups, max_segments 4 (S = 1, 2, 4), packed int8, M=4
FAST = ["reference", "isa", "cycle"]


def _unpacked_seg():
    """The unpacked 4x4 preset with its 2 groups cuttable into 2 segments."""
    return preset("chain-4x4-2of4").with_overrides({"datapath.chain.max_segments": 2, "name": "chain-4x4-seg2"})


def _operands(cfg, m, k, n, seed):
    rng = np.random.default_rng(seed)
    wb, ab = cfg.weight_bits, cfg.activation_bits
    return (rng.integers(-(1 << (ab - 1)), 1 << (ab - 1), size=(m, k)),
            rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, n)))


def _run(backend, cfg, m, k, n, pattern, segments, seed, **options):
    a, w = _operands(cfg, m, k, n, seed)
    program = compile_chain_gemm(cfg, w, m, pattern, segments=segments)
    assert program.segments == segments
    if backend in ("amaranth", "verilator"):
        be = rtl_backend(backend, cfg) if not options else get_backend(backend, cfg, **options)
    else:
        be = get_backend(backend, cfg)
    result = be.run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    if result.cycles is not None and not options:
        assert result.cycles == program_cycles(program)
    return program, result


# (m, k, n): GEMV; K not a multiple of any L and N not a multiple of S * cols; k-chunks (K beyond
# the 16-word activation buffer) with accumulate and n-chunks (N beyond the 16-row bank)
SHAPES = [(1, 37, 19), (5, 22, 13), (4, 150, 140)]


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("segments", [1, 2, 4])
@pytest.mark.parametrize("pattern", ["2:4", "1:4", "dense"])
def test_numpy_backends_segmented(backend, segments, pattern):
    cfg = preset(SEG)
    for i, (m, k, n) in enumerate(SHAPES):
        _run(backend, cfg, m, k, n, pattern, segments, 10 + i)
    ucfg = _unpacked_seg()
    for i, (m, k, n) in enumerate(SHAPES):
        if segments <= 2:
            _run(backend, ucfg, m, k, n, pattern, segments, 20 + i)


@pytest.mark.parametrize("backend", ["amaranth", "verilator"])
@pytest.mark.parametrize("segments", [2, 4])
def test_rtl_segmented(backend, segments):
    cfg = preset(SEG)
    _run(backend, cfg, 1, 13, 19, "2:4", segments, 1)                 # GEMV
    program, _ = _run(backend, cfg, 3, 300, 45, "1:4", segments, 2)   # GEMM, k-chunks + accumulate
    assert any(i.accumulate for i in program.instructions)


def test_rtl_unpacked_segmented():
    cfg = _unpacked_seg()
    for segments in (1, 2):
        _run("amaranth", cfg, 3, 45, 11, "2:4", segments, 3)


def test_segment_count_changes_between_programs():
    """One design runs S = 4, 1, 2 back to back (LOAD_A relatches S; DRAIN follows it)."""
    cfg = preset(SEG)
    be = rtl_backend("amaranth", cfg)
    for segments in (4, 1, 2):
        a, w = _operands(cfg, 2, 9, 10, segments)
        program = compile_chain_gemm(cfg, w, 2, "2:4", segments=segments)
        result = be.run(program, {"A": a})
        np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, 32))
        assert result.cycles == program_cycles(program)


@pytest.mark.parametrize("backend", FAST + ["amaranth"])
def test_packed_cut_nodes_split_lanes(backend):
    """-128 x -128 everywhere, 64 deep: every segment's node splits its packed group sums exactly."""
    cfg = preset(SEG)
    for segments in (2, 4):
        for a_val, w_val in ((-128, -128), (127, -128), (-128, 127)):
            a, w = np.full((2, 64), a_val), np.full((64, 9), w_val)
            program = compile_chain_gemm(cfg, w, 2, "dense", segments=segments)
            be = rtl_backend(backend, cfg) if backend == "amaranth" else get_backend(backend, cfg)
            assert np.all(be.run(program, {"A": a}).outputs["Y"] == 64 * a_val * w_val)


def test_stalls_keep_segmented_outputs_bit_exact():
    cfg = preset(SEG)
    a, w = _operands(cfg, 3, 30, 21, 4)
    program = compile_chain_gemm(cfg, w, 3, "2:4", segments=2)
    plain = get_backend("amaranth", cfg).run(program, {"A": a})
    stalled = get_backend("amaranth", cfg, stall_seed=7).run(program, {"A": a})
    np.testing.assert_array_equal(stalled.outputs["Y"], plain.outputs["Y"])
    np.testing.assert_array_equal(plain.outputs["Y"], gemm_reference(a, program.weights, 32))
    assert stalled.cycles > plain.cycles == program_cycles(program)


@pytest.mark.parametrize("segments", [2, 4])
def test_segmented_flush_is_tight(segments):
    """The cut taps are delayed to the last node: one flush cycle less loses the last row."""
    from sparsa.chain_timing import chain_latency
    from sparsa.hdl.chain.top import SparseChainAccelerator
    from sparsa.sim.backends.amaranth_backend import pack_program, run_streams, unpack_outputs

    cfg = preset(SEG)
    a, w = _operands(cfg, 1, 8, 4 * segments, 1)
    program = compile_chain_gemm(cfg, w, 1, "dense", segments=segments)
    expected = gemm_reference(a, program.weights, cfg.accumulator_bits)
    words, weights, acts = pack_program(program, a)
    for flush, exact in ((chain_latency(cfg), True), (chain_latency(cfg) - 1, False)):
        run = run_streams(SparseChainAccelerator(cfg, flush_cycles=flush), words, weights, acts,
                          program.num_output_beats)
        y = program.collect_outputs(unpack_outputs(cfg, run.outputs))
        assert np.array_equal(y, expected) is exact


# ------------------------------------------------------------------ compiler choice and schedule
@pytest.mark.parametrize("shape", [(1, 8, 64), (64, 16, 64), (4, 300, 50), (1, 37, 19)])
def test_compiler_picks_the_fastest_segment_count(shape):
    cfg = preset(SEG)
    m, k, n = shape
    w = np.ones((k, n), dtype=np.int64)
    cycles = {s: program_cycles(compile_chain_gemm(cfg, w, m, "2:4", segments=s)) for s in (1, 2, 4)}
    program = compile_chain_gemm(cfg, w, m, "2:4")
    best = min(cycles.values())
    assert program.segments == min(s for s, c in cycles.items() if c == best)
    assert program_cycles(program) == best
    assert all(i.segments == program.segments for i in program.instructions if i.op is Opcode.LOAD_A)
    assert plan_chain_tiling(cfg, m, k, n, "2:4").segments == program.segments


def test_short_reduction_uses_segments():
    """K compressed to 4 slots on an 8-slice chain: S = 2 halves the weight beats."""
    cfg = preset(SEG)
    w = np.ones((8, 256), dtype=np.int64)
    auto, uncut = compile_chain_gemm(cfg, w, 64, "2:4"), compile_chain_gemm(cfg, w, 64, "2:4", segments=1)
    assert auto.segments > 1 and program_cycles(auto) < program_cycles(uncut)
    assert auto.num_weight_beats < uncut.num_weight_beats
    assert "segments=" in auto.listing()


def test_presets_without_segments_never_cut():
    cfg = preset("chain-4x4-packed")
    assert cfg.chain.max_segments == 1 and cfg.chain.supported_segments() == (1,)
    program = compile_chain_gemm(cfg, np.ones((8, 64), dtype=np.int64), 4, "2:8")
    assert program.segments == 1 and all(encode(i) < (1 << 21) for i in program.instructions)


# ------------------------------------------------------------------ ISA field, config, refusals
def test_isa_segments_field():
    ins = Instruction(Opcode.LOAD_A, 5, segments=4)
    assert encode(ins) == 4 | 5 << 5 | 3 << 21
    assert decode(encode(ins)) == ins and str(ins) == "LOAD_A count=5 segments=4"
    assert encode(Instruction(Opcode.LOAD_A, 5)) == 4 | 5 << 5              # S = 1 encodes as before
    assert decode(encode(Instruction(Opcode.LOAD_A, 1, segments=256))).segments == 256
    with pytest.raises(FormatError, match="only LOAD_A takes a segment count, not COMPUTE"):
        Instruction(Opcode.COMPUTE, 1, segments=2)
    with pytest.raises(IllegalInstructionError, match=r"is DRAIN with unused bits set \(segments_m1=1; DRAIN reads count"):
        decode(3 | 1 << 5 | 1 << 21)
    with pytest.raises(FormatError, match=r"segments must be in 1..256, not 0"):
        Instruction(Opcode.LOAD_A, 1, segments=0)
    with pytest.raises(IllegalInstructionError, match=r"is NOP with unused bits set \(reserved=1;"):
        decode(1 << 30)
    with pytest.raises(IllegalInstructionError, match=r"is NOP with unused bits set \(outputs=1;"):
        decode(1 << 29)                  # bit 29 was reserved until LOAD_A's outputs field (output packing)


def test_config_dump_and_hash_unchanged_without_segments():
    for name in ("chain-4x4-2of4", "chain-4x4-packed", "chain-8x2-m16", "u280-flightllm"):
        assert "max_segments" not in preset(name).model_dump_json()
    assert '"max_segments":4' in preset(SEG).model_dump_json()
    assert preset(SEG).chain.supported_segments() == (1, 2, 4)


def test_bad_max_segments():
    with pytest.raises(ConfigError, match=r"datapath.chain.max_segments=3 does not divide the number of DSP "
                                          r"groups datapath.rows / datapath.chain.group = 4"):
        preset(SEG).with_overrides({"datapath.chain.max_segments": 3})


def test_unsupported_segment_override():
    cfg = preset(SEG)
    with pytest.raises(ConfigError, match=r"segments=3 is not supported by datapath.chain.max_segments=4; "
                                          r"use one of \[1, 2, 4\]"):
        compile_chain_gemm(cfg, np.ones((8, 8), dtype=np.int64), 1, "2:4", segments=3)
    with pytest.raises(ConfigError, match=r"segments=2 is not supported by datapath.chain.max_segments=1"):
        plan_chain_tiling(preset("chain-4x4-2of4"), 1, 8, 8, "2:4", segments=2)


def test_interpreter_refuses_unsupported_segments():
    from sparsa.sim.chain import ChainInterpreter

    cfg = preset(SEG)
    words = [encode(Instruction(Opcode.LOAD_A, 1, segments=8)), encode(Instruction(Opcode.HALT))]
    with pytest.raises(FormatError, match=r"LOAD_A segments=8 is not supported by datapath.chain.max_segments=4"):
        ChainInterpreter(cfg).run(words, [], [np.zeros((8, 2, 4), np.int64)])


def test_generic_compile_gemm_takes_segments_for_the_chain_only():
    """compile_gemm passes segments= to the chain compiler and refuses it for the systolic array."""
    from sparsa.compiler import compile_gemm

    cfg = preset(SEG)
    a, w = _operands(cfg, 2, 9, 10, 2)
    program = compile_gemm(cfg, w, 2, "2:4", segments=2)
    assert program.segments == 2
    assert compile_gemm(cfg, w, 2, "2:4", segments=4).segments == 4
    np.testing.assert_array_equal(get_backend("cycle", cfg).run(program, {"A": a}).outputs["Y"],
                                  gemm_reference(a, program.weights, 32))
    with pytest.raises(ConfigError, match=r"segments=2 applies to the DSP chain \(datapath.kind: dsp_chain\) only, "
                                          r"not to 'systolic'"):
        compile_gemm(preset("systolic-4x4-2of4"), w, 2, "2:4", segments=2)
