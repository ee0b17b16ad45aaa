# amaranth: UnusedElaboratable=no
"""ChainController on its own against naive models: the state sequence and cycle count of
hand-written programs equal :mod:`sparsa.chain_timing`; the datapath control (buffer writes and
reads, the tag that reaches the bank ``chain_latency`` enabled cycles after its beat, bank
writes addressed one cycle ahead, the DRAIN's row/slot order for every segment count, the cut
bits) follows from the instruction stream alone, also with stalls."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.chain_timing import chain_latency, program_cycles
from sparsa.hdl.chain.controller import ChainController, ChainState
from sparsa.isa import Instruction, Opcode, decode, encode

from ...conftest import preset
from ..helpers import expect_error, simulate

SEG = "chain-8x4-seg"


def _raw(opcode: int, count: int = 0) -> int:
    """An instruction word the Python encoder refuses (count 0, unknown opcodes)."""
    return int(opcode) | (count << 5)


def run_program(ctrl, words, *, weights_valid=None, acts_valid=None, results_ready=None, limit=2000):
    """Feed ``words``; drive the stream handshakes from the given per-cycle functions (default 1).
    Returns one record per cycle (the outputs during that cycle, before its clock edge) up to
    and including the first DONE cycle."""
    cfg = ctrl.config
    records = []
    sources = [(ctrl.weights_valid, weights_valid), (ctrl.acts_valid, acts_valid), (ctrl.results_ready, results_ready)]

    async def tb(ctx):
        i = 0
        for cycle in range(limit):
            ctx.set(ctrl.instr.valid, int(i < len(words)))
            ctx.set(ctrl.instr.payload.as_value(), words[i] if i < len(words) else 0)
            for port, fn in sources:
                ctx.set(port, 1 if fn is None else fn(cycle))
            rec = {name: ctx.get(getattr(ctrl, name)) for name in
                   ("state", "en", "done", "cycles", "cut", "weights_valid", "weights_ready", "acts_valid",
                    "acts_ready", "results_valid", "results_ready")}
            rec.update({f"act.{n}": ctx.get(getattr(ctrl.act, n)) for n in ("wen", "waddr", "en", "raddr")})
            rec.update({f"bank.{n}": ctx.get(getattr(ctrl.bank, n)) for n in
                        ("acc_en", "first", "wen", "waddr", "accumulate", "raddr")})
            rec["bank.slot"] = ctx.get(ctrl.bank.slot) if cfg.chain.max_segments > 1 else 0
            records.append(rec)
            if rec["done"]:
                return
            if ctx.get(ctrl.instr.ready) and i < len(words):
                i += 1
            await ctx.tick()
        raise AssertionError("no HALT")

    simulate(ctrl, tb)
    return records


def expected_states(ctrl, words):
    """FETCH, then the body of each instruction by the contract (raw words: count 0 / unknown)."""
    flush = ctrl.flush_cycles
    states = []
    for w in words:
        op, count = w & 15, (w >> 5) & 0xFFFF
        states.append(ChainState.FETCH)
        if op == Opcode.HALT:
            return states + [ChainState.DONE]
        if op == Opcode.LOAD_A:
            states += [ChainState.LOAD_A] * count
        elif op == Opcode.COMPUTE:
            states += [ChainState.STREAM] * count + [ChainState.FLUSH] * flush
        elif op == Opcode.DRAIN:
            states += [ChainState.DRAIN] * count
    raise AssertionError("no HALT")


@pytest.mark.parametrize("name", ["chain-4x4-2of4", SEG])
def test_state_sequence_and_cycles_equal_the_contract(name):
    cfg = preset(name)
    ctrl = ChainController(cfg)
    program = [Instruction(Opcode.LOAD_A, 3, segments=cfg.chain.max_segments), Instruction(Opcode.COMPUTE, 6),
               Instruction(Opcode.DRAIN, 2 * cfg.chain.max_segments), Instruction(Opcode.NOP),
               Instruction(Opcode.LOAD_W), Instruction(Opcode.COMPUTE, 3, accumulate=True), Instruction(Opcode.HALT)]
    words = [encode(i) for i in program]
    records = run_program(ctrl, words)
    assert [r["state"] for r in records] == expected_states(ctrl, words)
    assert records[-1]["cycles"] == len(records) - 1 == program_cycles(cfg, [decode(w) for w in words])


def test_raw_words_and_a_short_flush():
    """COMPUTE 0 is a flush only, LOAD_A 0 / DRAIN 0 and the opcodes the chain has no unit for
    (LOAD_W, LOAD_S, whatever their count) are fetches; flush_cycles overrides the flush length.
    (Unassigned opcodes stop the controller: tests/test_illegal_instruction.py.)"""
    cfg = preset("chain-4x4-2of4")
    words = [_raw(Opcode.COMPUTE, 0), _raw(Opcode.LOAD_A, 0), _raw(Opcode.DRAIN, 0), _raw(Opcode.LOAD_W), _raw(Opcode.LOAD_S, 3),
             encode(Instruction(Opcode.COMPUTE, 2)), encode(Instruction(Opcode.HALT))]
    for flush in (None, 2):
        ctrl = ChainController(cfg, flush_cycles=flush)
        assert ctrl.flush_cycles == (chain_latency(cfg) if flush is None else 2)
        records = run_program(ctrl, words)
        assert [r["state"] for r in records] == expected_states(ctrl, words)
        assert records[-1]["cycles"] == len(records) - 1


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("stalls", [False, True])
def test_compute_control_against_beat_model(stalls, k):
    """LOAD_A k writes buffer words 0..k-1; COMPUTE n takes beat b when ``weights_valid``, reads its
    k-tile ``b % k`` and, ``chain_latency`` enabled cycles later, drives the tile accumulators
    (``first`` on k-tile 0) and on its tile's last k-tile writes bank row ``b // k``, whose
    address was on ``raddr`` the cycle before (k = 1: a write every cycle).  The last write
    falls in the last flush cycle."""
    cfg = preset(SEG)
    n = 12
    ctrl = ChainController(cfg)
    lat = chain_latency(cfg)
    rng = np.random.default_rng(11 + k)
    valid = [int(not stalls or rng.random() < 0.6) for _ in range(400)]
    words = [encode(i) for i in (Instruction(Opcode.LOAD_A, k), Instruction(Opcode.COMPUTE, n, accumulate=True),
                                 Instruction(Opcode.HALT))]
    rec = run_program(ctrl, words, weights_valid=lambda c: valid[c], acts_valid=lambda c: valid[c])
    # LOAD_A: word `beat` of the buffer on every accepted activation beat
    loads = [(t, r["act.waddr"]) for t, r in enumerate(rec) if r["act.wen"]]
    assert [a for _, a in loads] == list(range(k))
    assert all(rec[t]["state"] == ChainState.LOAD_A and rec[t]["acts_valid"] for t, _ in loads)
    # COMPUTE: beats taken, enabled cycles
    taken = [t for t, r in enumerate(rec) if r["state"] == ChainState.STREAM and r["weights_valid"]]
    enabled = [t for t, r in enumerate(rec) if r["en"]]
    assert enabled == [t for t, r in enumerate(rec) if r["state"] == ChainState.FLUSH or t in taken]
    assert len(taken) == n and all(rec[t]["act.en"] == rec[t]["en"] for t in range(len(rec)))
    assert [rec[t]["act.raddr"] for t in taken] == [b % k for b in range(n)]
    events = {enabled[enabled.index(t) + lat]: b for b, t in enumerate(taken)}
    for t, r in enumerate(rec):
        b = events.get(t)
        assert r["bank.acc_en"] == int(b is not None), t
        assert r["bank.wen"] == int(b is not None and b % k == k - 1), t
        if b is not None:
            assert r["bank.first"] == int(b % k == 0) and r["bank.accumulate"] == 1
        if r["bank.wen"]:
            assert r["bank.waddr"] == b // k and rec[t - 1]["bank.raddr"] == b // k, t
    flush = [t for t, r in enumerate(rec) if r["state"] == ChainState.FLUSH]
    assert len(flush) == lat and max(events) == flush[-1]
    if not stalls:
        assert rec[-1]["cycles"] == program_cycles(cfg, [decode(w) for w in words])


@pytest.mark.parametrize("segments", [1, 2, 4])
def test_drain_order_and_cuts_for_every_segment_count(segments):
    """DRAIN beat b is bank row b // S (addressed the cycle before it is shown, held while the
    output stalls), slot (b % S + 1) * step - 1 with step = Smax / S; cut[u] = (u + 1) % step == 0."""
    cfg = preset(SEG)
    smax = cfg.chain.max_segments
    step = smax // segments
    n = 3 * segments + 1
    rng = np.random.default_rng(segments)
    ready = [int(rng.random() < 0.6) for _ in range(400)]
    ctrl = ChainController(cfg)
    words = [encode(i) for i in (Instruction(Opcode.LOAD_A, 1, segments=segments), Instruction(Opcode.DRAIN, n),
                                 Instruction(Opcode.HALT))]
    rec = run_program(ctrl, words, results_ready=lambda c: ready[c])
    b = 0
    for t, r in enumerate(rec):
        if r["state"] != ChainState.DRAIN:
            continue
        assert r["results_valid"] == 1
        assert rec[t - 1]["bank.raddr"] == b // segments, (t, b)
        assert r["bank.slot"] == (b % segments + 1) * step - 1, (t, b)
        b += r["results_ready"]
    assert b == n
    after_load = [r for r in rec if r["state"] != ChainState.LOAD_A][2:]
    for r in after_load:
        assert r["cut"] == sum(1 << u for u in range(smax) if (u + 1) % step == 0 or u == smax - 1)


def test_segment_field_the_config_does_not_support_runs_uncut():
    cfg = preset(SEG)
    ctrl = ChainController(cfg)
    words = [encode(Instruction(Opcode.LOAD_A, 1, segments=4)), encode(Instruction(Opcode.LOAD_A, 1, segments=3)),
             encode(Instruction(Opcode.HALT))]
    rec = run_program(ctrl, words)
    assert rec[2]["cut"] == 0b1111 and rec[-1]["cut"] == 0b1000


def test_ports_and_arguments():
    cfg = preset("chain-4x4-packed")
    ctrl = ChainController(cfg)
    assert ctrl.latency == chain_latency(cfg) == ctrl.flush_cycles and ctrl.config is cfg
    assert "slot" not in ctrl.signature.members["bank"].signature.members
    assert [s.name for s in ChainState] == ["FETCH", "LOAD_A", "STREAM", "FLUSH", "DRAIN", "DONE", "ILLEGAL"]
    expect_error(ValueError, "flush_cycles must be a positive integer, not 0",
                 lambda: ChainController(cfg, flush_cycles=0))
    expect_error(ValueError, "flush_cycles must be a positive integer, not True",
                 lambda: ChainController(cfg, flush_cycles=True))
    expect_error(Exception, "ChainController needs datapath.kind='dsp_chain', not 'systolic'",
                 lambda: ChainController(preset("systolic-4x4-2of4")))
