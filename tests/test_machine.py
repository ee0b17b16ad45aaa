"""The machine: its encoding, its rungs, and the compiled block bit-exact against the integer reference.

Every rung runs the *encoded* word stream (decoded by :func:`sparsa.machine.isa.decode_machine`),
with the weights read back from the device memory's bytes, and must equal
:func:`sparsa.models.block.block_prefill` / ``block_decode`` bit for bit - the block's output and
the KV cache it appended - with the cycle rung's count equal to the contract's
(:func:`sparsa.machine.timing.machine_cycles`).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.compiler.attention import NIBBLE_QMAX
from sparsa.compiler.block import compile_block
from sparsa.errors import ConfigError, FormatError, IllegalInstructionError, UnsupportedError
from sparsa.machine.isa import (
    GemmInstr,
    HaltInstr,
    KvStoreInstr,
    LoadInstr,
    MoveInstr,
    Plane,
    SfuInstr,
    StoreInstr,
    WeightKind,
    decode_machine,
    encode_machine,
)
from sparsa.machine.timing import machine_cycles
from sparsa.models.block import KVCache, block_decode, block_prefill
from sparsa.models.block.convert import quantize_block
from sparsa.sfu.command import SfuCommand, SfuOp
from sparsa.sfu.encoding import COMMAND_WORDS, decode_command, encode_command
from sparsa.sim.machine import run_machine

from .conftest import preset
from .models.block.tiny import tiny, tokens_fx

#: One systolic and one chain preset, each with an 8-lane SFU.
PRESETS = ("systolic-8x8-2of4", "chain-4x4-2of4")


def machine(name: str, lanes: int = 8, words: int = 4096):
    return preset(name).with_overrides({"sfu.lanes": lanes, "sfu.vmem_words": words})


@st.composite
def commands(draw):
    op = draw(st.sampled_from(list(SfuOp)))
    n = draw(st.integers(1, 4096))
    kw = {}
    if op == SfuOp.QUANTIZE:
        kw["unit"] = n
        kw["row_exponent"] = draw(st.booleans())
    if op == SfuOp.SOFTMAX:
        kw["causal"] = draw(st.booleans())
    if op == SfuOp.QSTATIC:
        kw["mantissa"] = draw(st.integers(1, (1 << 24) - 1))
    addr = st.integers(0, (1 << 24) - 1)
    return SfuCommand(op, draw(st.integers(1, 65535)), n, draw(addr), draw(addr), b=draw(addr), b_step=draw(addr),
                      shift=draw(st.integers(-63, 63)), exponent=draw(st.integers(-128, 127)),
                      bits=draw(st.sampled_from((4, 8))), eps_code=draw(st.integers(0, (1 << 47) - 1)),
                      offset=draw(addr), mantissa_bits=draw(st.integers(2, 24)), scale_dst=draw(addr),
                      exp_dst=draw(addr), scale_src=draw(addr), exp_src=draw(addr), **kw)


@settings(max_examples=200, deadline=None)
@given(commands())
def test_sfu_command_words_round_trip(cmd):
    words = encode_command(cmd)
    assert len(words) == COMMAND_WORDS and all(0 <= w < 1 << 32 for w in words)
    assert decode_command(words) == cmd


def test_sfu_command_words_refuse_reserved_bits_and_unknown_ops():
    words = encode_command(SfuCommand(SfuOp.ADD, 1, 8, 0, 8, b=16))
    bad = list(words)
    bad[-1] |= 1 << 31
    with pytest.raises(FormatError, match="reserved"):
        decode_command(bad)
    bad = list(words)
    bad[0] = (bad[0] & ~0xF) | 15
    with pytest.raises(FormatError, match="op 15 is not assigned"):
        decode_command(bad)
    with pytest.raises(FormatError, match="12 32-bit words"):
        decode_command(words[:-1])


def test_machine_stream_round_trips_every_instruction():
    gemm_words = (0x1, 0x2 | 1 << 5, 0x3 | 1 << 5)                       # LOAD_W, COMPUTE 1, DRAIN 1
    instrs = [SfuInstr(SfuCommand(SfuOp.SOFTMAX, 3, 40, 100, 100, causal=True, offset=7)),
              GemmInstr(WeightKind.KEYS, 4096, 1, 2, 3, 4, 5, 6, 7, gemm_words),
              LoadInstr(64, 10, 2, 9), StoreInstr(128, 11, 3, 17), KvStoreInstr(256, 12, 1, 200, 64),
              MoveInstr(1, 2, 3, 4, 5, 6), HaltInstr()]
    assert decode_machine(encode_machine(instrs)) == instrs


def test_machine_stream_refuses_bad_words():
    halt = encode_machine([HaltInstr()])
    with pytest.raises(IllegalInstructionError):
        decode_machine([13, *halt])                      # an unassigned opcode
    with pytest.raises(FormatError, match="datapath instruction outside a GEMM"):
        decode_machine([0x2 | 4 << 5, *halt])            # COMPUTE 4 at machine level
    with pytest.raises(FormatError, match="ends inside MOVE"):
        decode_machine([11, 1])
    with pytest.raises(FormatError, match="without HALT"):
        decode_machine(encode_machine([MoveInstr(1, 1, 2, 1, 1, 1)]))
    with pytest.raises(FormatError, match="not a datapath instruction"):
        GemmInstr(WeightKind.IMAGE, 0, 0, 1, 0, 1, 1, 1, 1, (halt[0],))


def tiny_int4(name: str):
    """A tiny model's block 0 with int4 weights and K/V codes within +-119, for 4-bit weight ports."""
    m = tiny(name)
    calib = np.random.default_rng(0).integers(0, m.embedding.shape[0], 64)
    return quantize_block(m.blocks[0], m.hidden(calib, 0), bits=4, max_positions=128, kv_qmax=NIBBLE_QMAX)


def _run_block(cfg, name, phase, tokens, start, seed, rung, w=None):
    m = tiny(name)
    w = m.int_blocks[0] if w is None else w
    x_all = tokens_fx(m, start + tokens, seed)
    if phase == "prefill":
        want, cache = block_prefill(w, x_all)
        before = None
    else:
        empty = np.zeros((w.spec.kv_heads, 0, w.spec.head_dim), np.int64)
        before = block_prefill(w, x_all[:start])[1] if start else KVCache(empty, empty)
        want, cache = block_decode(w, x_all[start:], before, start)
    bp = compile_block(cfg, w, phase, tokens, start)
    dm = bp.device_memory(x_all[start:], None if before is None else before.k, None if before is None else before.v)
    run = run_machine(cfg, bp.words(), dm, bp.programs, rung)
    out = bp.read_output(run.dm)
    got = bp.read_cache(run.dm)
    for kind in ("k", "v"):
        for h in range(w.spec.kv_heads):
            assert np.array_equal(getattr(got, kind)[h], getattr(cache, kind)[h]), (kind, h)
    return out, want, run, bp


@pytest.mark.parametrize("preset_name", PRESETS)
@pytest.mark.parametrize("name,phase", [("tiny-llama", "prefill"), ("tiny-llama", "decode"), ("tiny-bert", "prefill")])
@pytest.mark.parametrize("rung", ["isa", "cycle"])
def test_compiled_block_is_bit_exact(preset_name, name, phase, rung):
    cfg = machine(preset_name)
    tokens, start = (6, 0) if phase == "prefill" else (1, 9)
    out, want, run, bp = _run_block(cfg, name, phase, tokens, start, 3, rung)
    assert np.array_equal(out, want)
    contract = machine_cycles(cfg, bp.instructions)
    assert run.cycles == contract["total"] and run.cycles_by_unit == {u: contract[u] for u in run.cycles_by_unit}
    assert all(contract[u] > 0 for u in ("matrix", "sfu", "memory"))


@pytest.mark.parametrize("preset_name", ["systolic-4x4-int4", "chain-8x2-m16"])
@pytest.mark.parametrize("name,phase", [("tiny-llama", "decode"), ("tiny-bert", "prefill")])
def test_compiled_block_on_a_4bit_weight_port(preset_name, name, phase):
    """int4 weights, and attention's int8 K/V in two nibble planes (GEMMs HIGH and LOW, the SFU's
    MUL 16 + ADD), K/V codes saturating at 119 (QSTATIC ``qmax``), on both rungs."""
    cfg = machine(preset_name)
    w = tiny_int4(name)
    tokens, start = (5, 0) if phase == "prefill" else (1, 11)
    for rung in ("isa", "cycle"):
        out, want, run, bp = _run_block(cfg, name, phase, tokens, start, 4, rung, w)
        assert np.array_equal(out, want)
        # a LOW-plane GEMM per query head against K and V; one token stacks the heads sharing a KV head
        per = w.spec.kv_heads if tokens == 1 else w.spec.heads
        assert sum(isinstance(i, GemmInstr) and i.plane is Plane.LOW for i in bp.instructions) == 2 * per
        assert run.cycles == machine_cycles(cfg, bp.instructions)["total"]


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(PRESETS), st.integers(1, 12), st.integers(0, 40), st.integers(0, 99), st.sampled_from((8, 16)))
def test_compiled_block_random_lengths(preset_name, tokens, context, seed, lanes):
    """Random prefill lengths, decode contexts, inputs and SFU widths, on the cycle rung."""
    cfg = machine(preset_name, lanes)
    out, want, _, _ = _run_block(cfg, "tiny-llama", "prefill", tokens, 0, seed, "cycle")
    assert np.array_equal(out, want)
    out, want, _, _ = _run_block(cfg, "tiny-llama", "decode", 1, context, seed, "cycle")
    assert np.array_equal(out, want)


def test_one_token_stacks_the_heads_of_a_kv_head():
    """Decode: the query heads sharing a KV head are the rows of one K^T GEMM and one V GEMM (their
    K and V stream once), no head is moved, and the result is still the reference's."""
    cfg = machine("systolic-8x8-2of4")
    w = tiny("tiny-llama").int_blocks[0]
    out, want, _, bp = _run_block(cfg, "tiny-llama", "decode", 1, 13, 2, "cycle")
    assert np.array_equal(out, want)
    gemms = [i for i in bp.instructions if isinstance(i, GemmInstr) and i.w_kind is not WeightKind.IMAGE]
    assert len(gemms) == 2 * w.spec.kv_heads and all(g.m == w.spec.group for g in gemms)
    assert not any(isinstance(i, MoveInstr) for i in bp.instructions)


def test_a_corrupted_weight_byte_changes_the_output():
    """The ISA rung reads the weights from the device memory's bytes: flipping one byte of an
    image changes the block's output (the comparison can fail)."""
    cfg = machine("systolic-8x8-2of4")
    m = tiny("tiny-llama")
    w = m.int_blocks[0]
    x = tokens_fx(m, 4, 5)
    want, _ = block_prefill(w, x)
    bp = compile_block(cfg, w, "prefill", 4)
    dm = bp.device_memory(x)
    reg = bp.region("w.q.m4")                                     # the q image, scheduled for 4 rows
    dm[reg.addr + 3] ^= 0x11
    run = run_machine(cfg, bp.words(), dm, bp.programs, "isa")
    out = bp.read_output(run.dm)
    assert not np.array_equal(out, want)


def test_gemm_words_must_be_the_formers_schedule():
    cfg = machine("systolic-8x8-2of4")
    bp = compile_block(cfg, tiny("tiny-llama").int_blocks[0], "prefill", 2)
    i = next(i for i, ins in enumerate(bp.instructions) if isinstance(ins, GemmInstr))
    g = bp.instructions[i]
    bp.instructions[i] = GemmInstr(g.w_kind, g.w_addr, g.a_addr, g.a_stride, g.y_addr, g.y_stride, g.m, g.k, g.n,
                                   g.words[:-1], g.plane)
    x = tokens_fx(tiny("tiny-llama"), 2, 0)
    with pytest.raises(FormatError, match="not the schedule"):
        run_machine(cfg, bp.words(), bp.device_memory(x), bp.programs, "isa")


def test_compile_refusals_name_the_value():
    w = tiny("tiny-llama").int_blocks[0]
    with pytest.raises(ConfigError, match="no sfu: section"):
        compile_block(preset("systolic-8x8-2of4"), w, "prefill", 2)
    with pytest.raises(ConfigError, match="sfu.vmem_words=64"):
        compile_block(machine("systolic-8x8-2of4", words=64), w, "prefill", 8)
    with pytest.raises(ConfigError, match="max_positions=128"):
        compile_block(machine("systolic-8x8-2of4"), w, "decode", 1, 128)
    with pytest.raises(ConfigError, match="bidirectional"):
        compile_block(machine("systolic-8x8-2of4"), tiny("tiny-bert").int_blocks[0], "decode", 1, 3)
    with pytest.raises(UnsupportedError, match="head_dim=16 must be a multiple of sfu.lanes=32"):
        compile_block(machine("systolic-8x8-2of4", lanes=32), w, "prefill", 2)
    with pytest.raises(UnsupportedError, match="kv_qmax=127"):
        compile_block(preset("u280-flightllm").with_overrides({"sfu.lanes": 8}), w, "prefill", 2)
