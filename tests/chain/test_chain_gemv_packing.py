"""Output packing on the DSP chain (issue 20 part 1, docs/chain.md#packing-for-gemv-chainpacking-both).

``chain.packing: both``: a GEMM runs with two tokens on one weight or two output columns on one
activation, chosen by the compiler from the cycle contract.  Same matrix as
tests/chain/test_chain_backends.py: NumPy reference, ISA interpreter and cycle model on random
shapes in every mode; the worst-case operands (all-min, all-max, mixed signs, the longest DSP
group the exactness proof allows) on every rung incl. Amaranth; Verilator on one small build.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.chain_layout import pack_chain_weight_beat, pair_weights, split_weights, unpack_chain_weight_beat
from sparsa.compiler import compile_gemm
from sparsa.compiler.chain import plan_chain_tiling
from sparsa.errors import ConfigError, FormatError
from sparsa.isa import Instruction, Opcode, decode, encode
from sparsa.models.reference import gemm_reference
from sparsa.sim import get_backend
from sparsa.sim.chain import ChainInterpreter
from sparsa.sim.cycle import program_cycles
from sparsa.sim.estimator import estimate_gemm

from ..conftest import CONFIGS, preset
from ..rtl import rtl_backend

FAST = ["reference", "isa", "cycle"]
MODES = [None, "tokens", "outputs"]


def both(config: str, overrides: "dict | None" = None):
    """Preset ``config`` with ``chain.packing: both`` (and ``overrides``)."""
    return preset(config).with_overrides({"datapath.chain.packing": "both", **(overrides or {})})


def _backend(name, cfg):
    return rtl_backend(name, cfg) if name in ("amaranth", "verilator") else get_backend(name, cfg)


def _run(backend, cfg, a, w, pattern, packing):
    program = compile_gemm(cfg, w, a.shape[0], pattern, packing=packing)
    result = _backend(backend, cfg).run(program, {"A": a})
    np.testing.assert_array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    if result.cycles is not None:
        assert result.cycles == program_cycles(program)
    return program, result


# ---------------------------------------------------------------- config, formats, ISA
@pytest.mark.parametrize("name", ["chain-4x4-2of4", "chain-4x4-packed", "u280-flightllm"])
def test_packing_names_load_and_hash_as_the_booleans(name):
    cfg = preset(name)
    named = cfg.with_overrides({"datapath.chain.packing": "tokens" if cfg.chain.packing else "none"})
    assert named.model_dump_json() == cfg.model_dump_json()
    assert cfg.chain.packing_modes == (("tokens",) if cfg.chain.packing else ("none",))
    assert both(name).chain.packing_modes == ("tokens", "outputs") and both(name).token_lanes == 2


@pytest.mark.parametrize("overrides,message", [
    ({"datapath.chain.packing": "outputs"},
     r"datapath.chain.packing='outputs' is not a packing mode; use one of \['both', 'none', 'tokens'\]"),
    ({"datapath.chain.packing": "both", "datapath.chain.group": 8, "datapath.rows": 8},
     r"datapath.chain.group=8 packed products of int8 x int8 can overflow the 18-bit low lane; use group <= 7"),
    ({"datapath.chain.packing": "both", "types.weight": "ovp4"},
     r"datapath.chain.packing cannot pack types.weight='ovp4'"),
])
def test_refused_packing(overrides, message):
    with pytest.raises(ConfigError, match=message):
        preset("chain-4x4-packed").with_overrides(overrides)


@given(st.integers(-128, 127), st.integers(-128, 127))
def test_weight_pair_splits_back(w0, w1):
    assert tuple(int(x) for x in split_weights(pair_weights(w0, w1))) == (w0, w1)
    assert tuple(int(x) for x in split_weights(np.int64(w0))) == (w0, 0)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_weight_beat_round_trip_with_pairs(data):
    cfg = both(data.draw(st.sampled_from(["chain-4x4-packed", "chain-8x2-m16"])))
    lo, hi = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1
    shape = (cfg.cols, cfg.rows)
    draw = lambda lo_, hi_: np.array(data.draw(st.lists(st.integers(lo_, hi_), min_size=cfg.cols * cfg.rows,
                                                        max_size=cfg.cols * cfg.rows))).reshape(shape)
    values, indices = pair_weights(draw(lo, hi), draw(lo, hi)), draw(0, cfg.group_size - 1)
    word = pack_chain_weight_beat(cfg, values, indices)
    assert word < 1 << (cfg.cols * cfg.rows * (2 * cfg.weight_bits + cfg.index_bits))
    back_values, back_indices = unpack_chain_weight_beat(cfg, word)
    np.testing.assert_array_equal(back_values, values)
    np.testing.assert_array_equal(back_indices, indices)


def test_load_a_outputs_field():
    word = encode(Instruction(Opcode.LOAD_A, 3, segments=2, outputs=True))
    assert decode(word) == Instruction(Opcode.LOAD_A, 3, segments=2, outputs=True)
    assert str(decode(word)) == "LOAD_A count=3 segments=2 outputs"
    with pytest.raises(FormatError, match="only LOAD_A takes the outputs flag, not COMPUTE"):
        Instruction(Opcode.COMPUTE, 1, outputs=True)
    with pytest.raises(FormatError, match=r"LOAD_A outputs=1 needs datapath.chain.packing='both', not "
                                          r"datapath.chain.packing=True"):
        ChainInterpreter(preset("chain-4x4-packed")).check_packing(True)


# ---------------------------------------------------------------- the compiler's choice
def test_compiler_picks_the_cheapest_mode():
    cfg = both("chain-4x4-packed")
    for m, k, n, pattern in ((1, 64, 32, "dense"), (1, 64, 32, "2:8"), (8, 64, 32, "dense"), (3, 40, 9, "1:2")):
        costs = {mode: plan_chain_tiling(cfg, m, k, n, pattern, packing=mode).cycles(cfg)
                 for mode in ("tokens", "outputs")}
        chosen = plan_chain_tiling(cfg, m, k, n, pattern)
        assert chosen.cycles(cfg) == min(costs.values())
        assert chosen.packing == ("outputs" if costs["outputs"] < costs["tokens"] else "tokens")
    # a dense GEMV halves its weight beats; a 2:8 one packs the union of two masks (4:8): no gain
    assert plan_chain_tiling(cfg, 1, 64, 32, "dense").packing == "outputs"
    assert plan_chain_tiling(cfg, 1, 64, 32, "2:8").packing == "tokens"
    assert plan_chain_tiling(cfg, 8, 64, 32, "dense").packing == "tokens"


def test_packing_argument_refused():
    with pytest.raises(ConfigError, match=r"packing='outputs' is not allowed by datapath.chain.packing=True; "
                                          r"use one of \['tokens'\]"):
        compile_gemm(preset("chain-4x4-packed"), np.ones((8, 4), np.int64), 1, "dense", packing="outputs")
    with pytest.raises(ConfigError, match=r"packing='tokens' applies to the DSP chain"):
        compile_gemm(preset("systolic-4x4-2of4"), np.ones((8, 4), np.int64), 1, "dense", packing="tokens")


@pytest.mark.parametrize("config", ["chain-4x4-packed", "chain-8x2-m16", "chain-8x4-seg"])
@pytest.mark.parametrize("shape,pattern", [((1, 300, 50), "dense"), ((1, 4096, 40), "dense"), ((7, 77, 9), "dense"),
                                           ((1, 64, 33), "2:4"), ((64, 8, 256), "dense")])
def test_estimate_follows_the_compilers_mode(config, shape, pattern):
    cfg = both(config)
    m, k, n = shape
    program = compile_gemm(cfg, np.ones((k, n), dtype=np.int64), m, pattern)
    est = estimate_gemm(cfg, m, k, n, pattern)
    assert est.compute_cycles == program_cycles(program)
    assert est.instructions == len(program.instructions)


# ---------------------------------------------------------------- every rung
def _operands(cfg, m, k, n, seed):
    rng = np.random.default_rng(seed)
    wb, ab = cfg.weight_bits, cfg.activation_bits
    return (rng.integers(-(1 << (ab - 1)), 1 << (ab - 1), size=(m, k)),
            rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(k, n)))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config,pattern", [("chain-4x4-packed", "dense"), ("chain-4x4-packed", "2:8"),
                                            ("chain-4x4-packed", "1:2"), ("chain-8x2-m16", "dense"),
                                            ("chain-8x2-m16", "4:16"), ("chain-8x4-seg", "dense"),
                                            ("chain-8x4-seg", "1:4")])
@pytest.mark.parametrize("packing", MODES)
@pytest.mark.parametrize("seed", range(3))
def test_numpy_rungs_random_shapes(backend, config, pattern, packing, seed):
    cfg = both(config)
    rng = np.random.default_rng(7000 + seed)
    m = 1 if seed < 2 else int(rng.integers(2, 9))
    k, n = int(rng.integers(1, 300)), int(rng.integers(1, 40))
    program, _ = _run(backend, cfg, *_operands(cfg, m, k, n, seed), pattern, packing)
    assert packing is None or program.packing == packing


#: Longest DSP groups the proof allows: int8 x int8 (7 products) and int4 x int8 (16, the schema's limit),
#: and a chain of several groups.
EDGE_CONFIGS = {
    "int8, group 7": ("chain-4x4-packed", {"datapath.rows": 7, "datapath.chain.group": 7}),
    "int8, 4 groups": ("chain-4x4-packed", {"datapath.rows": 8}),
    "int4 x int8, group 16": ("chain-8x2-m16", {"datapath.rows": 16, "datapath.chain.group": 16}),
}


def _edge_case(cfg, a_val, w0_val, w1_val, k=64):
    """GEMV whose output pairs (columns ``c`` and ``cols + c`` of each tile) have weights ``w0_val`` / ``w1_val``."""
    n = 2 * cfg.cols
    w = np.where((np.arange(n) // cfg.cols) % 2 == 0, w0_val, w1_val)[None, :].repeat(k, axis=0)
    return np.full((1, k), a_val), w


@pytest.mark.parametrize("backend", FAST + ["amaranth"])
@pytest.mark.parametrize("edge", list(EDGE_CONFIGS))
def test_worst_case_operands(backend, edge):
    """All-min, all-max and mixed signs, 64 deep, on the longest groups: the low lane's worst sums
    (docs/chain.md#packing-for-gemv-chainpacking-both) are exact in both modes."""
    name, overrides = EDGE_CONFIGS[edge]
    cfg = both(name, {"name": "chain-gemv-edge", **overrides})
    lo_w, hi_w = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1
    lo_a, hi_a = -(1 << (cfg.activation_bits - 1)), (1 << (cfg.activation_bits - 1)) - 1
    for a_val, w0, w1 in ((lo_a, lo_w, lo_w), (hi_a, hi_w, hi_w), (hi_a, lo_w, hi_w), (lo_a, hi_w, lo_w)):
        a, w = _edge_case(cfg, a_val, w0, w1)
        for packing in ("outputs", "tokens"):
            program, result = _run(backend, cfg, a, w, "dense", packing)
            assert program.packing == packing
            assert np.all(result.outputs["Y"] == 64 * a_val * w[0])


@pytest.mark.parametrize("config,pattern", [("chain-4x4-packed", "2:8"), ("chain-8x2-m16", "dense"),
                                            ("chain-8x4-seg", "dense")])
def test_amaranth_random_shapes(config, pattern):
    cfg = both(config)
    for seed, (m, k, n) in enumerate(((1, 37, 13), (1, 150, 2 * cfg.cols + 3), (3, 40, 9))):
        for packing in ("outputs", None):
            _run("amaranth", cfg, *_operands(cfg, m, k, n, seed), pattern, packing)


def test_amaranth_mode_switch_in_one_stream():
    """Two programs' words back to back are not needed: the mode is latched per LOAD_A, and a
    k-chunked output-packed GEMV (several LOAD_As, accumulate) stays exact with stalls."""
    cfg = both("chain-4x4-packed")
    a, w = _operands(cfg, 1, 200, 11, 5)
    program = compile_gemm(cfg, w, 1, "dense", packing="outputs")
    assert program.opcode_counts()["LOAD_A"] > 1 and any(i.accumulate for i in program.instructions)
    from ..rtl import require_simulator
    require_simulator("amaranth")
    stalled = get_backend("amaranth", cfg, stall_seed=3).run(program, {"A": a})
    np.testing.assert_array_equal(stalled.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits))
    assert stalled.cycles > program_cycles(program)


def test_verilator_both_modes():
    """One Verilator build: the all-min GEMV in both modes and a random output-packed GEMV."""
    cfg = both("chain-4x4-packed")
    a, w = _edge_case(cfg, -128, -128, -128, k=32)
    for packing in ("outputs", "tokens"):
        _run("verilator", cfg, a, w, "dense", packing)
    _run("verilator", cfg, *_operands(cfg, 1, 45, 11, 9), "2:8", "outputs")


@pytest.mark.parametrize("config,int4", [("chain-4x4-packed", False), ("chain-8x2-m16", True)])
def test_compiled_block_decode_packs_outputs(config, int4):
    """The machine (``sparsa block``) compiles its GEMMs with the compiler's mode: a decode block on
    ``packing: both`` runs output-packed GEMMs and stays bit-exact, cycles == contract, on both rungs."""
    from sparsa.isa import decode as decode_word
    from sparsa.machine.isa import GemmInstr
    from sparsa.machine.timing import machine_cycles

    from ..test_machine import _run_block, tiny_int4

    cfg = both(config, {"sfu.lanes": 8, "sfu.vmem_words": 4096})
    extra = (tiny_int4("tiny-llama"),) if int4 else ()
    for rung in ("isa", "cycle"):
        out, want, run, bp = _run_block(cfg, "tiny-llama", "decode", 1, 9, 3, rung, *extra)
        assert np.array_equal(out, want)
        assert run.cycles == machine_cycles(cfg, bp.instructions)["total"]
    words = [decode_word(w) for i in bp.instructions if isinstance(i, GemmInstr) for w in i.words]
    assert any(w.op is Opcode.LOAD_A and w.outputs for w in words)


def _both_yaml(tmp_path):
    import yaml

    cfg = both("chain-4x4-packed", {"name": "chain-4x4-both"})
    path = tmp_path / "chain-4x4-both.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def test_cli_packing_choice_and_override(tmp_path, capsys):
    """`sparsa run` reports the compiler's mode; `--packing` forces one; `sparsa compile` writes it
    to program.json and the program directory runs bit-exactly; a mode the config lacks is one line."""
    import json

    from sparsa.cli import main

    path = _both_yaml(tmp_path)
    assert main(["run", str(path), "--gemm", "1x64x32", "--sparsity", "dense"]) == 0
    assert "chain packing           outputs" in capsys.readouterr().out
    assert main(["run", str(path), "--gemm", "1x64x32", "--sparsity", "dense", "--packing", "tokens"]) == 0
    assert "chain packing           tokens" in capsys.readouterr().out
    out = tmp_path / "prog"
    assert main(["compile", str(path), "--gemm", "1x40x20", "--sparsity", "dense", "-o", str(out)]) == 0
    assert json.loads((out / "program.json").read_text())["tiling"]["packing"] == "outputs"
    capsys.readouterr()
    assert main(["run", str(path), "--program", str(out), "--backend", "isa"]) == 0
    assert "bit-exact" in capsys.readouterr().out
    assert main(["run", str(CONFIGS / "chain-4x4-packed.yaml"), "--gemm", "1x64x32", "--packing", "outputs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "packing='outputs' is not allowed by datapath.chain.packing=True" in err
