"""Activation-scale granularity in hardware (issue 8 part 4): per-token and per-group scales.

Every rung (reference, ISA interpreter, cycle model, Amaranth, Verilator) must compute
``Y[t, n] = sum_g S[t, g] * (A_g[t] . W_g[n])`` modulo ``2**accumulator_bits`` bit-exactly,
the RTL must count the cycle model's cycles, and the default per-tensor configs must not change.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.compiler import compile_gemm
from sparsa.compiler.gemm import compile_compressed_gemm
from sparsa.compiler.tiling import plan_tiling
from sparsa.config import parse_config
from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.isa import Instruction, Opcode, decode, encode
from sparsa.formats import actscale, nm
from sparsa.models.reference import wrap_exact
from sparsa.sim import get_backend
from sparsa.sim.cycle import program_cycles
from sparsa.timing import SCALE_STAGE_LATENCY, compute_flush_cycles, instruction_cycles

from .conftest import preset
from .rtl import rtl_backend

FAST = ["reference", "isa", "cycle"]
RTL = ["amaranth", "verilator"]
SCALED = ["systolic-4x4-token", "systolic-4x4-group"]


def _golden(cfg, a, s, w):
    """``actscale.scaled_gemm_reference`` on the program's pruned weights, wrapped to the accumulator."""
    spec = cfg.act_scale.spec
    exact = actscale.scaled_gemm_reference(actscale.ScaledActivations(a, s, 0, spec), np.asarray(w).T, spec)
    return wrap_exact(exact, cfg.accumulator_bits)


def _operands(cfg, m, k, n, seed, edge=None):
    rng = np.random.default_rng(seed)
    mmax = (1 << cfg.act_scale.mantissa_bits) - 1
    groups = cfg.act_scale.spec.groups(k)
    if edge == "worst":
        a = np.full((m, k), -128)
        w = np.full((k, n), -128)
        s = np.full((m, groups), mmax)
        s[::2, ::2] = 0            # mantissa 0 next to the largest one
        return a, w, s
    a = rng.integers(-128, 128, size=(m, k))
    w = rng.integers(-128, 128, size=(k, n))
    s = rng.integers(0, mmax + 1, size=(m, groups))
    s[rng.random(s.shape) < 0.1] = 0
    s[rng.random(s.shape) < 0.1] = mmax
    return a, w, s


def _run(backend_name, cfg, a, w, s, pattern, *, prune=True, stall_seed=None, **kw):
    m = a.shape[0]
    program = compile_gemm(cfg, w, m, pattern, prune=prune, **kw)
    if backend_name in RTL:
        backend = rtl_backend(backend_name, cfg)
        if stall_seed is not None:
            backend = type(backend)(cfg, stall_seed=stall_seed)
    else:
        backend = get_backend(backend_name, cfg)
    result = backend.run(program, {"A": a, "S": s})
    np.testing.assert_array_equal(result.outputs["Y"], _golden(cfg, a, s, program.weights))
    if result.cycles is not None and stall_seed is None:
        assert result.cycles == program_cycles(program)
    return program, result


# ------------------------------------------------------------------------------------- NumPy rungs
@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config", SCALED)
@pytest.mark.parametrize("pattern", ["2:4", "1:4", "dense"])
@pytest.mark.parametrize("seed", range(3))
def test_numpy_backends_random_shapes(backend, config, pattern, seed):
    cfg = preset(config)
    rng = np.random.default_rng(zlib.crc32(f"{config}/{pattern}/{seed}".encode()))
    # T above the accumulator depth (64: several row chunks), K not a multiple of the group nor
    # of the k-tile, N not a multiple of cols
    m, k, n = int(rng.integers(1, 150)), int(rng.integers(1, 140)), int(rng.integers(1, 14))
    a, w, s = _operands(cfg, m, k, n, seed)
    _run(backend, cfg, a, w, s, pattern)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config", SCALED)
def test_worst_case_codes_and_mantissas(backend, config):
    cfg = preset(config)
    a, w, s = _operands(cfg, 70, 99, 6, 0, edge="worst")
    program, result = _run(backend, cfg, a, w, s, "dense", prune=False)
    mmax = (1 << cfg.act_scale.mantissa_bits) - 1
    if cfg.act_scale.granularity == "token":
        assert result.outputs["Y"][1, 0] == 99 * 128 * 128 * mmax and np.all(result.outputs["Y"][0] == 0)


def test_group_scales_change_along_k():
    """Per-group scales really scale each group's partial sum (not the whole row)."""
    cfg = preset("systolic-4x4-group")          # group 32
    k = 70                                      # groups of 32, 32, 6
    a, w = np.ones((2, k), dtype=np.int64), np.ones((k, 1), dtype=np.int64)
    s = np.array([[1, 10, 100], [0, 0, 7]])
    program = compile_gemm(cfg, w, 2, "dense", prune=False)
    assert program.scale_groups == 3 and program.ktile_scale_group == tuple(kt * 4 // 32 for kt in range(18))
    for name in FAST:
        y = get_backend(name, cfg).run(program, {"A": a, "S": s}).outputs["Y"]
        np.testing.assert_array_equal(y, [[32 + 320 + 600], [42]])


@pytest.mark.parametrize("config", SCALED)
def test_compressed_gemm_takes_scales(config):
    cfg = preset(config)
    a, w, s = _operands(cfg, 5, 64, 7, 3)
    pruned = nm.prune(w, 2, 4, axis=0)
    program = compile_compressed_gemm(cfg, nm.compress(pruned, 2, 4, axis=0), 5, "2:4")
    y = get_backend("cycle", cfg).run(program, {"A": a, "S": s}).outputs["Y"]
    np.testing.assert_array_equal(y, _golden(cfg, a, s, pruned))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["token", "group"]), st.sampled_from(["2:4", "1:4", "dense", "1:2"]),
       st.integers(1, 80), st.integers(1, 90), st.integers(1, 9), st.sampled_from([2, 8, 16, 24]),
       st.integers(0, 2**32 - 1))
def test_property_reference_equals_actscale(granularity, pattern, m, k, n, mb, seed):
    group = {"group": 16} if granularity == "group" else {}
    cfg = preset("systolic-4x4-2of4").with_overrides({
        "name": "prop", "types.accumulator_bits": 64, "buffers.accumulator_depth": 32,
        "act_scale": {"granularity": granularity, "mantissa_bits": mb, **group}})
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k))
    w = rng.integers(-128, 128, size=(k, n))
    program = compile_gemm(cfg, w, m, pattern)
    s = rng.integers(0, 1 << mb, size=(m, program.scale_groups))
    y = get_backend("reference", cfg).run(program, {"A": a, "S": s}).outputs["Y"]
    q = actscale.ScaledActivations(a, s, 0, cfg.act_scale.spec)
    np.testing.assert_array_equal(y, actscale.scaled_gemm_reference(q, program.weights.T))
    # and the cycle model agrees with the golden
    np.testing.assert_array_equal(get_backend("cycle", cfg).run(program, {"A": a, "S": s}).outputs["Y"], y)


def test_quantized_float_activations_end_to_end():
    """Float X -> dynamic per-group codes + mantissas -> accelerator -> dequantized ~ X @ W."""
    cfg = preset("systolic-4x4-group")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((20, 96)) * np.linspace(0.1, 10, 96)
    w = rng.integers(-127, 128, size=(96, 12))
    q = actscale.quantize_activations_dynamic(x, cfg.act_scale.spec, bits=8)
    program = compile_gemm(cfg, w, 20, "dense", prune=False)
    acc = get_backend("cycle", cfg).run(program, {"A": q.codes, "S": q.mantissa}).outputs["Y"]
    y = actscale.dequantize_output(acc, q, np.ones(12))
    exact = x @ w
    assert np.max(np.abs(y - exact)) < 0.02 * np.max(np.abs(exact))


# ------------------------------------------------------------------------------------- schedule
def test_token_scales_loaded_once_per_chunk():
    cfg = preset("systolic-4x4-token")
    program = compile_gemm(cfg, np.ones((40, 10), dtype=np.int64), 150, "2:4")
    counts = program.opcode_counts()
    assert counts["LOAD_S"] == 3 == len(program.meta["tiling"].chunk_rows)            # 64 + 64 + 22 rows
    assert [s.rows for s in program.scale_loads] == [64, 64, 22]
    assert [i.op for i in program.instructions[:3]] == [Opcode.LOAD_W, Opcode.LOAD_S, Opcode.COMPUTE]
    assert program.num_activation_beats == sum(c.rows for c in program.computes) + 150


def test_group_scales_loaded_per_ntile_and_group():
    cfg = preset("systolic-4x4-group")
    program = compile_gemm(cfg, np.ones((70, 10), dtype=np.int64), 5, "2:4")        # 3 groups, 3 n-tiles
    assert program.opcode_counts()["LOAD_S"] == 3 * 3
    assert [s.group for s in program.scale_loads] == [0, 1, 2] * 3


@pytest.mark.parametrize("config", SCALED)
@pytest.mark.parametrize("m,k,n,pattern", [(150, 70, 10, "2:4"), (5, 333, 19, "1:4"), (64, 32, 4, "dense")])
def test_instruction_counts_and_estimate_match_the_program(config, m, k, n, pattern):
    from collections import Counter

    from sparsa.sim.estimator import estimate_gemm

    cfg = preset(config)
    program = compile_gemm(cfg, np.ones((k, n), dtype=np.int64), m, pattern)
    tiling = plan_tiling(cfg, m, k, n, pattern)
    assert tiling.instruction_counts() == Counter(program.instructions)
    est = estimate_gemm(cfg, m, k, n, pattern)
    assert est.compute_cycles == program_cycles(program)
    mb_bytes = -(-cfg.act_scale.mantissa_bits // 8)
    assert est.offchip_bytes["act_scales"] == m * program.scale_groups * mb_bytes


def test_tensor_configs_unchanged(cfg4x4):
    """Per-tensor scales (the default): no LOAD_S, no scale stage, the old flush and cycles."""
    assert cfg4x4.act_scale.granularity == "tensor"
    program = compile_gemm(cfg4x4, np.ones((40, 10), dtype=np.int64), 150, "2:4")
    assert not program.scaled and not program.has(Opcode.LOAD_S)
    assert compute_flush_cycles(cfg4x4) == cfg4x4.rows + cfg4x4.cols + 3
    assert compute_flush_cycles(preset("systolic-4x4-token")) == 4 + 4 + 3 + SCALE_STAGE_LATENCY
    assert instruction_cycles(cfg4x4, Instruction(Opcode.LOAD_S, 7)) == 1        # a NOP there
    assert instruction_cycles(preset("systolic-4x4-token"), Instruction(Opcode.LOAD_S, 7)) == 8
    from sparsa.hdl.export import resource_summary

    res = resource_summary(cfg4x4)
    assert res.scale_multipliers == 0 and res.scale_memory_bits == 0
    assert "accumulator_scale_stage" not in res.register_breakdown
    from sparsa.sim.estimator import estimate_gemm

    assert "act_scales" not in estimate_gemm(cfg4x4, 64, 512, 512, "2:4").offchip_bytes


def test_isa_load_s_roundtrip():
    ins = Instruction(Opcode.LOAD_S, 64)
    assert encode(ins) == 5 | (64 << 5) and decode(encode(ins)) == ins and str(ins) == "LOAD_S count=64"
    zero = Instruction(Opcode.LOAD_S, 0)                     # legal: a fetch only (tests/test_zero_count.py)
    assert decode(encode(zero)) == zero and encode(zero) == 5


# ------------------------------------------------------------------------------------- bad input
def _base(**act_scale):
    return {"name": "x", "datapath": {"kind": "systolic", "rows": 4, "cols": 4},
            "types": {"weight": "int8", "activation": "int8", "accumulator_bits": 48},
            "sparsity": {"group_size": 4, "default": "2:4"}, "act_scale": act_scale}


def test_group_not_a_multiple_of_the_ktile():
    cfg = parse_config(_base(granularity="group", group=8))          # k-tile of 2:4 on 4 rows: 8 dense k
    compile_gemm(cfg, np.ones((40, 4), dtype=np.int64), 3, "2:4")
    with pytest.raises(ConfigError, match=r"act_scale.group=8 is not a multiple of the 16 dense k one k-tile "
                                          r"covers \(rows=4 x M=4 / N=1 at 1:4\)"):
        compile_gemm(cfg, np.ones((40, 4), dtype=np.int64), 3, "1:4")
    with pytest.raises(ConfigError, match="act_scale.group=6 must be a multiple of sparsity.group_size=4"):
        parse_config(_base(granularity="group", group=6))


def test_refused_configs():
    chain = _base(granularity="token")
    chain["datapath"] = {"kind": "dsp_chain", "rows": 4, "cols": 4}
    with pytest.raises(ConfigError, match="act_scale.granularity='token' needs the accumulator scaling stage of "
                                          "the systolic datapath, not datapath.kind='dsp_chain'"):
        parse_config(chain)
    ovp = _base(granularity="group", group=32)
    ovp["types"] = {"weight": "ovp4", "activation": "ovp4", "accumulator_bits": 48}
    with pytest.raises(ConfigError, match="not supported with types.activation='ovp4'"):
        parse_config(ovp)
    narrow = _base(granularity="token", mantissa_bits=24)
    narrow["datapath"] = {"kind": "systolic", "rows": 1, "cols": 4}
    narrow["types"] = {"weight": "int4", "activation": "int4", "accumulator_bits": 64}
    with pytest.raises(ConfigError, match="act_scale.mantissa_bits=24 does not fit the 16-bit activation beat"):
        parse_config(narrow)
    # OVP-4 weights with int8 activations keep integer sums: scaled fine
    ok = _base(granularity="token")
    ok["types"] = {"weight": "ovp4", "activation": "int8", "accumulator_bits": 48}
    assert parse_config(ok).act_scale.granularity == "token"


def test_overflow_uses_the_scaled_worst_case():
    cfg = preset("systolic-4x4-token").with_overrides({"types.accumulator_bits": 32})
    with pytest.raises(ConfigError, match=r"types.accumulator_bits=32 cannot hold 4 int8 x int8 products scaled by "
                                          r"16-bit mantissas \(k=8 at 2:4, 1 scale group\(s\)\); needs 33 bits"):
        compile_gemm(cfg, np.ones((8, 4), dtype=np.int64), 2, "2:4")
    compile_gemm(cfg, np.ones((4, 4), dtype=np.int64), 2, "2:4")              # 2 slots still fit 32 bits
    program = compile_gemm(cfg, np.full((4, 4), -128), 2, "dense", prune=False, allow_overflow=True)
    a, s = np.full((2, 4), -128), np.full((2, 1), 65535)
    for name in FAST:
        y = get_backend(name, cfg).run(program, {"A": a, "S": s}).outputs["Y"]
        true = 4 * 128 * 128 * 65535
        assert true >= 2**31 and np.all(y == ((true + 2**31) % 2**32) - 2**31)
    # 48 bits hold k = 2**16 at 2:4 (2**15 slots x 2**14 x (2**16 - 1) < 2**47)
    compile_gemm(preset("systolic-4x4-token"), np.ones((1 << 16, 1), dtype=np.int64), 1, "2:4")


def test_bad_scale_tensors():
    cfg = preset("systolic-4x4-group")
    program = compile_gemm(cfg, np.ones((40, 4), dtype=np.int64), 3, "2:4")
    a = np.ones((3, 40), dtype=np.int64)
    be = get_backend("cycle", cfg)
    with pytest.raises(ShapeError, match=r"needs the scale mantissas 'S' of shape \(3, 2\), got keys \['A'\]"):
        be.run(program, {"A": a})
    with pytest.raises(ShapeError, match=r"S has shape \(3, 1\), the program was compiled for \(3, 2\)"):
        be.run(program, {"A": a, "S": np.ones((3, 1), dtype=np.int64)})
    with pytest.raises(FormatError, match=r"scale mantissa S value 65536 at \(0, 1\) is not an unsigned 16-bit"):
        be.run(program, {"A": a, "S": np.array([[0, 65536]] * 3)})
    with pytest.raises(FormatError, match=r"scale mantissa S value -1 at \(0, 0\)"):
        be.run(program, {"A": a, "S": -np.ones((3, 2), dtype=np.int64)})
    with pytest.raises(ShapeError, match="pass scales=S of shape"):
        list(program.activation_beats(a))
    plain = compile_gemm(preset("systolic-4x4-2of4"), np.ones((40, 4), dtype=np.int64), 3, "2:4")
    with pytest.raises(ShapeError, match="compiled with act_scale.granularity='tensor' and takes no scales 'S'"):
        get_backend("reference", plain.config).run(plain, {"A": a, "S": np.ones((3, 1))})


def test_memory_images_carry_the_scale_beats(tmp_path):
    import json

    from sparsa.compiler.emit import output_beats, write_images
    from sparsa.layout import pack_activation_beat

    cfg = preset("systolic-4x4-token")
    a, w, s = _operands(cfg, 6, 20, 5, 4)
    program = compile_gemm(cfg, w, 6, "2:4")
    y = _golden(cfg, a, s, program.weights)
    write_images(program, a, y, tmp_path, scales=s)
    acts = [int(x, 16) for x in (tmp_path / "acts.hex").read_text().split()]
    assert len(acts) == program.num_activation_beats
    assert acts[:6] == [int(v) for v in s[:, 0]]                   # LOAD_S comes first: one mantissa per beat
    assert acts[6:] == [pack_activation_beat(cfg, b) for b in list(program.activation_beats(a, s))[6:]]
    meta = json.loads((tmp_path / "program.json").read_text())
    assert meta["act_scale"]["scale_beats"] == 6 and meta["instructions"]["LOAD_S"] == 1
    assert len(output_beats(program, y)) == program.num_output_beats


# ------------------------------------------------------------------------------------- RTL
@pytest.mark.parametrize("backend", RTL)
@pytest.mark.parametrize("config", SCALED)
def test_rtl_matches_reference_and_cycle_model(backend, config):
    cfg = preset(config)
    # two row chunks (T > accumulator depth), K not a multiple of the group, N not of cols
    a, w, s = _operands(cfg, 66, 75, 6, 11)
    _run(backend, cfg, a, w, s, "2:4")


@pytest.mark.parametrize("backend", RTL)
@pytest.mark.parametrize("config", SCALED)
def test_rtl_worst_case_and_stalls(backend, config):
    cfg = preset(config)
    a, w, s = _operands(cfg, 5, 40, 5, 0, edge="worst")
    _run(backend, cfg, a, w, s, "dense", prune=False)
    a, w, s = _operands(cfg, 7, 45, 9, 5)
    program, stalled = _run(backend, cfg, a, w, s, "1:4", stall_seed=21)
    assert stalled.cycles > program_cycles(program)


@pytest.mark.parametrize("pattern", ["1:2", "dense"])
def test_amaranth_other_patterns(pattern):
    cfg = preset("systolic-4x4-group")
    a, w, s = _operands(cfg, 4, 70, 5, 9)
    _run("amaranth", cfg, a, w, s, pattern)


def test_amaranth_8x8_group_int4():
    """Another geometry and width: 8x8, int4 activations (128-bit beats), 12-bit mantissas, group 64."""
    cfg = preset("systolic-8x8-2of4").with_overrides({
        "name": "scaled-8x8", "types.activation": "int4", "types.accumulator_bits": 40,
        "buffers.accumulator_depth": 16,
        "act_scale": {"granularity": "group", "group": 64, "mantissa_bits": 12}})
    a4 = np.random.default_rng(1).integers(-8, 8, size=(20, 150))
    _, w, s = _operands(cfg, 20, 150, 11, 1)
    _run("amaranth", cfg, a4, w, s, "2:4")


# ------------------------------------------------------------------------------------- HDL details
def _scaled_tile(cfg, rng):
    v = rng.integers(-128, 128, (cfg.rows, cfg.cols))
    i = rng.integers(0, cfg.group_size, (cfg.rows, cfg.cols))
    return v, i


def _flush_run(cfg, flush_cycles=None, log=None):
    from sparsa.hdl.controller import State
    from sparsa.hdl.top import SparseSystolicAccelerator
    from sparsa.layout import pack_activation_beat, pack_weight_beat, unpack_output_beat
    from sparsa.sim.backends.amaranth_backend import run_streams

    from .hdl.helpers import mac_reference, words

    rng = np.random.default_rng(32)
    v, i = _scaled_tile(cfg, rng)
    lanes = rng.integers(-128, 128, (5, cfg.rows, cfg.group_size))
    mant = np.array([65535, 0, 3, 40000, 1])
    ws = words((Opcode.LOAD_W,), (Opcode.LOAD_S, 5), (Opcode.COMPUTE, 5, False), (Opcode.DRAIN, 5), Opcode.HALT)
    dut = SparseSystolicAccelerator(cfg, flush_cycles=flush_cycles)
    monitors = []
    if log is not None:
        async def monitor(ctx):
            cycle = 0
            async for _, _, state, wen in ctx.tick().sample(dut.controller.state, dut.acc.mem_wen):
                log.append((cycle, state, wen))
                cycle += 1
        monitors.append(monitor)
    run = run_streams(dut, ws, [pack_weight_beat(cfg, v[r], i[r]) for r in range(cfg.rows)],
                      [int(x) for x in mant] + [pack_activation_beat(cfg, x) for x in lanes], 5, monitors=monitors)
    y = np.array([unpack_output_beat(cfg, word) for word in run.outputs])
    expected = mac_reference(v, i, lanes, 64) * mant[:, None]
    return y, wrap_exact(expected, cfg.accumulator_bits), run, State


def test_flush_is_tight_with_the_scaling_stage():
    """The last accumulator RAM write of a scaled COMPUTE falls in its last flush cycle."""
    cfg = preset("systolic-4x4-token")
    log = []
    y, expected, run, State = _flush_run(cfg, log=log)
    np.testing.assert_array_equal(y, expected)
    flush = [c for c, state, _ in log if state == State.FLUSH]
    writes = [c for c, _, wen in log if wen]
    assert len(flush) == compute_flush_cycles(cfg) and len(writes) == 5
    assert writes == list(range(flush[-1] - 4, flush[-1] + 1))
    assert run.cycles == sum(instruction_cycles(cfg, i) for i in (
        Instruction(Opcode.LOAD_W), Instruction(Opcode.LOAD_S, 5), Instruction(Opcode.COMPUTE, 5),
        Instruction(Opcode.DRAIN, 5), Instruction(Opcode.HALT)))


def test_one_cycle_shorter_flush_writes_the_last_scaled_row_too_late():
    """One flush cycle less and the last scaled row's RAM write falls after the COMPUTE's FLUSH
    state (in the next instruction's fetch cycle, where a DRAIN already reads row 0)."""
    cfg = preset("systolic-4x4-token")
    log = []
    _, _, _, State = _flush_run(cfg, flush_cycles=compute_flush_cycles(cfg) - 1, log=log)
    flush = [c for c, state, _ in log if state == State.FLUSH]
    writes = [c for c, _, wen in log if wen]
    assert len(writes) == 5 and writes[-1] == flush[-1] + 1


@pytest.mark.parametrize("config", SCALED + ["systolic-4x4-2of4"])
def test_register_count_matches_elaborated_design(config):
    from sparsa.hdl.export import resource_summary
    from sparsa.hdl.top import SparseSystolicAccelerator

    from .hdl.test_export import _dff_bits

    cfg = preset(config)
    res = resource_summary(cfg)
    assert res.register_bits == _dff_bits(SparseSystolicAccelerator(cfg))
    if cfg.act_scale.granularity != "tensor":
        assert res.scale_multipliers == cfg.cols and res.scale_memory_bits == 64 * 16


def test_tensor_design_has_no_scale_hardware():
    from amaranth.back import rtlil

    from sparsa.hdl.top import SparseSystolicAccelerator

    plain = rtlil.convert(SparseSystolicAccelerator(preset("systolic-4x4-2of4")), name="top")
    scaled = rtlil.convert(SparseSystolicAccelerator(preset("systolic-4x4-token")), name="top")
    assert "scale" not in plain and "req_scale" in scaled and "scales" in scaled


def test_load_s_is_a_nop_without_the_scaling_stage():
    """On a per-tensor design LOAD_S is fetch-only and pops nothing, in RTL and cycle model alike."""
    from sparsa.hdl.top import SparseSystolicAccelerator
    from sparsa.sim.backends.amaranth_backend import run_streams
    from sparsa.sim.interpreter import Interpreter

    from .hdl.helpers import words

    cfg = preset("systolic-4x4-2of4")
    ws = words((Opcode.LOAD_S, 3), Opcode.HALT)
    run = run_streams(SparseSystolicAccelerator(cfg), ws, [], [], 0)
    assert run.cycles == sum(instruction_cycles(cfg, decode(x)) for x in ws) == 2
    state = Interpreter(cfg).run(ws, [], [])
    assert state.halted and state.scales is None


@pytest.mark.verilator
@pytest.mark.parametrize("config", SCALED)
def test_scaled_verilog_is_lint_clean(tmp_path, config):
    from sparsa.hdl.export import generate_verilog
    from sparsa.hdl.verilator import lint_verilog
    from sparsa.sim.backends.verilator_backend import unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    art = generate_verilog(preset(config), tmp_path)
    assert lint_verilog(art.path) == ""
