"""Controller on hand-written programs (Amaranth simulation of the whole accelerator).

Cycle counts are checked against sparsa.timing, results against a naive model, and the
flush is shown to be tight: the last accumulator write happens in the last flush cycle,
and a flush one cycle shorter loses the last result row.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.errors import UnsupportedError
from sparsa.chain_timing import chain_latency
from sparsa.hdl.controller import UNASSIGNED_OPCODES, Controller, State
from sparsa.hdl.datapath import hdl_datapath
from sparsa.hdl.top import SparseSystolicAccelerator
from sparsa.isa import Opcode, decode
from sparsa.layout import pack_activation_beat, pack_weight_beat, unpack_output_beat
from sparsa.sim.backends.amaranth_backend import run_streams
from sparsa.timing import compute_flush_cycles, instruction_cycles

from ..conftest import preset
from .helpers import expect_error, mac_reference, simulate, words, wrap

CFG = preset("systolic-4x4-2of4")


def _raw(opcode: int, count: int = 0, accumulate: int = 0) -> int:
    """An instruction word the Python encoder would refuse (count 0, unknown opcodes)."""
    return opcode | (accumulate << 4) | (count << 5)


def _cycles(cfg, ws):
    total = 0
    for w in ws:
        try:
            total += instruction_cycles(cfg, decode(w))
        except ValueError:          # raw words the ISA refuses: count 0
            op, count = w & 15, (w >> 5) & 0xFFFF
            total += 1 + (count + compute_flush_cycles(cfg) if op == Opcode.COMPUTE else count)
    return total


def _run(ws, weights=(), acts=(), n_out=0, cfg=CFG, flush_cycles=None):
    return run_streams(SparseSystolicAccelerator(cfg, flush_cycles=flush_cycles), ws, list(weights), list(acts), n_out)


@pytest.mark.parametrize("program,expected", [
    ([Opcode.HALT], 1),
    ([Opcode.NOP] * 5 + [Opcode.HALT], 6),
    ([(Opcode.LOAD_A, 2), Opcode.HALT], 2),                                     # opcode the datapath lacks: fetch only
    ([_raw(Opcode.DRAIN, 0), Opcode.HALT], 2),                                  # DRAIN 0 = NOP
    ([_raw(Opcode.COMPUTE, 0), Opcode.HALT], 1 + compute_flush_cycles(CFG) + 1),  # COMPUTE 0 = flush only
])
def test_cycle_counter_on_control_only_programs(program, expected):
    ws = words(*program)
    run = _run(ws)
    assert run.cycles == run.ticks == expected == _cycles(CFG, ws)


def _tile(rng, cfg):
    values = rng.integers(-128, 128, (cfg.rows, cfg.cols))
    indices = rng.integers(0, cfg.group_size, (cfg.rows, cfg.cols))
    return values, indices


def test_hand_program_overwrite_accumulate_and_partial_drain():
    cfg = CFG
    rng = np.random.default_rng(31)
    (v1, i1), (v2, i2) = _tile(rng, cfg), _tile(rng, cfg)
    a1, a2, a3 = (rng.integers(-128, 128, (n, cfg.rows, cfg.group_size)) for n in (3, 3, 2))
    ws = words((Opcode.LOAD_W,), (Opcode.COMPUTE, 3, False), (Opcode.COMPUTE, 3, True), (Opcode.DRAIN, 3),
               (Opcode.LOAD_W,), (Opcode.COMPUTE, 2, False), (Opcode.DRAIN, 3), Opcode.HALT)
    weights = [pack_weight_beat(cfg, v1[r], i1[r]) for r in range(cfg.rows)] + \
              [pack_weight_beat(cfg, v2[r], i2[r]) for r in range(cfg.rows)]
    acts = [pack_activation_beat(cfg, x) for x in np.concatenate([a1, a2, a3])]
    run = _run(ws, weights, acts, 6)
    y = np.array([unpack_output_beat(cfg, w) for w in run.outputs])
    first = wrap(mac_reference(v1, i1, a1, 32) + mac_reference(v1, i1, a2, 32), 32)
    second = mac_reference(v2, i2, a3, 32)
    np.testing.assert_array_equal(y[:3], first)
    np.testing.assert_array_equal(y[3:5], second)          # rows 0, 1 overwritten
    np.testing.assert_array_equal(y[5], first[2])           # row 2 untouched by COMPUTE 2
    assert run.cycles == run.ticks == _cycles(cfg, ws)


def _monitor_writes(dut, log):
    """Logs (cycle, state, RAM write) - the bank's ``mem_wen``, one enabled cycle after the request."""
    ctrl = dut.controller

    async def monitor(ctx):
        cycle = 0
        async for _, _, state, wen in ctx.tick().sample(ctrl.state, dut.acc.mem_wen):
            log.append((cycle, state, wen))
            cycle += 1
    return monitor


@pytest.mark.parametrize("name", ["systolic-4x4-2of4", "systolic-4x8-m8"])
def test_flush_is_tight(name):
    """The last accumulator RAM write of every COMPUTE falls in its last flush cycle."""
    cfg = preset(name)
    rng = np.random.default_rng(32)
    v, i = _tile(rng, cfg)
    a = rng.integers(-128, 128, (5, cfg.rows, cfg.group_size))
    ws = words((Opcode.LOAD_W,), (Opcode.COMPUTE, 5, False), (Opcode.DRAIN, 5), Opcode.HALT)
    dut = SparseSystolicAccelerator(cfg)
    log = []
    run = run_streams(dut, ws, [pack_weight_beat(cfg, v[r], i[r]) for r in range(cfg.rows)],
                      [pack_activation_beat(cfg, x) for x in a], 5, monitors=[_monitor_writes(dut, log)])
    np.testing.assert_array_equal([unpack_output_beat(cfg, w) for w in run.outputs],
                                  mac_reference(v, i, a, cfg.accumulator_bits))
    flush = [c for c, state, _ in log if state == State.FLUSH]
    writes = [c for c, _, wen in log if wen]
    assert len(flush) == compute_flush_cycles(cfg) and len(writes) == 5
    assert writes[-1] == flush[-1]
    assert writes == list(range(flush[-1] - 4, flush[-1] + 1))     # one row per cycle, no gaps


def test_one_cycle_shorter_flush_loses_the_last_row():
    """With one flush cycle less, the last row's RAM write spills into the next instruction's
    fetch cycle - where a DRAIN already reads row 0: a one-row COMPUTE then reads stale data."""
    cfg = CFG
    rng = np.random.default_rng(33)
    v, i = _tile(rng, cfg)
    a = rng.integers(-128, 128, (1, cfg.rows, cfg.group_size))
    ws = words((Opcode.LOAD_W,), (Opcode.COMPUTE, 1, False), (Opcode.DRAIN, 1), Opcode.HALT)
    weights = [pack_weight_beat(cfg, v[r], i[r]) for r in range(cfg.rows)]
    acts = [pack_activation_beat(cfg, x) for x in a]
    expected = mac_reference(v, i, a, 32)
    assert np.any(expected[0] != 0)
    short = _run(ws, weights, acts, 1, flush_cycles=compute_flush_cycles(cfg) - 1)
    y = np.array([unpack_output_beat(cfg, w) for w in short.outputs])
    assert np.all(y[0] == 0)                                  # read before it was written
    full = _run(ws, weights, acts, 1)
    np.testing.assert_array_equal([unpack_output_beat(cfg, w) for w in full.outputs], expected)


def test_one_cycle_shorter_flush_writes_after_the_compute():
    """The flush-tightness contract seen on the RAM: one cycle less and the last write of a
    COMPUTE happens after its FLUSH state has ended."""
    cfg = CFG
    rng = np.random.default_rng(34)
    v, i = _tile(rng, cfg)
    a = rng.integers(-128, 128, (4, cfg.rows, cfg.group_size))
    ws = words((Opcode.LOAD_W,), (Opcode.COMPUTE, 4, False), Opcode.HALT)
    log = []
    dut = SparseSystolicAccelerator(cfg, flush_cycles=compute_flush_cycles(cfg) - 1)
    run_streams(dut, ws, [pack_weight_beat(cfg, v[r], i[r]) for r in range(cfg.rows)],
                [pack_activation_beat(cfg, x) for x in a], 0, monitors=[_monitor_writes(dut, log)])
    flush = [c for c, state, _ in log if state == State.FLUSH]
    writes = [c for c, _, wen in log if wen]
    assert len(writes) == 4 and writes[-1] == flush[-1] + 1


def test_done_freezes_counter_and_streams():
    dut = SparseSystolicAccelerator(CFG)
    ws = words(Opcode.NOP, Opcode.HALT)

    async def tb(ctx):
        ctx.set(dut.instr.valid, 1)
        for w in ws:
            ctx.set(dut.instr.payload.as_value(), w)
            await ctx.tick().until(dut.instr.ready)
        ctx.set(dut.weights.valid, 1)
        ctx.set(dut.acts.valid, 1)
        ctx.set(dut.results.ready, 1)
        for _ in range(20):
            assert ctx.get(dut.done) == 1 and ctx.get(dut.cycles) == 2
            assert (ctx.get(dut.instr.ready), ctx.get(dut.weights.ready), ctx.get(dut.acts.ready),
                    ctx.get(dut.results.valid)) == (0, 0, 0, 0)
            await ctx.tick()

    simulate(dut, tb)


def test_unassigned_opcodes_are_the_isa_gaps():
    assert UNASSIGNED_OPCODES == tuple(range(6, 15))


def _illegal_naive_cycles(cfg, before) -> int:
    """Naive model of the stop cycle: each word before costs its fetch (+ a flush for COMPUTE 0),
    the illegal word its fetch."""
    flush = chain_latency(cfg) if cfg.name.startswith("chain") else compute_flush_cycles(cfg)
    return sum(1 + (flush if w & 15 == Opcode.COMPUTE else 0) for w in before) + 1


@pytest.mark.parametrize("config", ["systolic-4x4-2of4", "chain-4x4-2of4"])
@pytest.mark.parametrize("opcode", [6, 9, 14])
@pytest.mark.parametrize("prefix", [0, 2])
def test_illegal_opcode_stops_the_controller(config, opcode, prefix):
    """An unassigned opcode (first word, or after NOP + COMPUTE 0) is fetched in one cycle, then the
    controller stops: done and illegal high, counter frozen, no word or beat taken ever after."""
    cfg = preset(config)
    dut = hdl_datapath(cfg).top(cfg)
    before = words(Opcode.NOP, _raw(Opcode.COMPUTE, 0))[:prefix]
    illegal = _raw(opcode, count=3, accumulate=1)
    expected = _illegal_naive_cycles(cfg, before)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.instr.valid, 1)
        for w in before:
            ctx.set(dut.instr.payload.as_value(), w)
            await ctx.tick().until(dut.instr.ready)
            assert ctx.get(dut.illegal) == 0
        ctx.set(dut.instr.payload.as_value(), illegal)
        await ctx.tick().until(dut.instr.ready)
        ctx.set(dut.instr.payload.as_value(), words(Opcode.HALT)[0])   # offered, never taken
        ctx.set(dut.weights.valid, 1)
        ctx.set(dut.acts.valid, 1)
        ctx.set(dut.results.ready, 1)
        for _ in range(20):
            assert (ctx.get(dut.done), ctx.get(dut.illegal), ctx.get(dut.cycles)) == (1, 1, expected)
            assert (ctx.get(dut.instr.ready), ctx.get(dut.weights.ready), ctx.get(dut.acts.ready),
                    ctx.get(dut.results.valid)) == (0, 0, 0, 0)
            await ctx.tick()
        seen["ok"] = True

    simulate(dut, tb)
    assert seen


@pytest.mark.parametrize("config", ["systolic-4x4-2of4", "chain-4x4-2of4"])
def test_halt_is_not_illegal(config):
    cfg = preset(config)
    dut = hdl_datapath(cfg).top(cfg)

    async def tb(ctx):
        ctx.set(dut.instr.valid, 1)
        for w in words(Opcode.NOP, Opcode.HALT):
            assert ctx.get(dut.illegal) == 0
            ctx.set(dut.instr.payload.as_value(), w)
            await ctx.tick().until(dut.instr.ready)
        for _ in range(3):
            assert (ctx.get(dut.done), ctx.get(dut.illegal), ctx.get(dut.cycles)) == (1, 0, 2)
            await ctx.tick()

    simulate(dut, tb)


def test_arguments_checked():
    expect_error(ValueError, "flush_cycles must be a positive integer, not 0", lambda: Controller(CFG, flush_cycles=0))
    expect_error(ValueError, "flush_cycles must be a positive integer, not 2.5",
                 lambda: SparseSystolicAccelerator(CFG, flush_cycles=2.5))
    expect_error(TypeError, "config must be an AcceleratorConfig, not 'x'", lambda: SparseSystolicAccelerator("x"))
    expect_error(UnsupportedError, "datapath.kind='dsp_chain' is not implemented",
                 lambda: SparseSystolicAccelerator(CFG.with_overrides({"datapath.kind": "dsp_chain"})))
    expect_error(UnsupportedError, "types.weight='ovp8' is not implemented",
                 lambda: SparseSystolicAccelerator(CFG.with_overrides({"types.weight": "ovp8"})))
    expect_error(UnsupportedError, "types.activation='ovp4' needs OVP weights",
                 lambda: SparseSystolicAccelerator(CFG.with_overrides({"types.activation": "ovp4"})))
