"""SparsePE against a naive model: the sparse MUX picks lane[index], signed MAC, wrap, enable, load, 3-stage pipeline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sparsa.hdl.pe import SparsePE

from ..conftest import preset
from .helpers import expect_error, simulate, wrap


def _check_pe(cfg, cases, *, forward=True, flush=True):
    """cases: (value, index, lane, psum_in, en) tuples; checks psum_out / lane_out after each tick.

    The model is the PE's three register stages: ``act <= lane[index]``, ``prod <= value * act``,
    ``psum <= psum_in + prod``, all advancing only when ``en``.  With ``flush`` every case is
    followed by two enabled cycles with a zero lane and the same ``psum_in``, so the case's own
    product reaches ``psum_out`` (``psum_in + value * lane[index]``), which is checked too.
    """
    pe = SparsePE(cfg, forward=forward)
    zero = [0] * cfg.group_size

    async def tb(ctx):
        act = prod = psum = 0
        lane_reg = list(zero)
        for value, index, lane, psum_in, en in cases:
            ctx.set(pe.weight_in.value, value)
            ctx.set(pe.weight_in.index, index)
            ctx.set(pe.load, 1)
            ctx.set(pe.en, 0)                   # loading does not advance the pipeline
            await ctx.tick()
            ctx.set(pe.load, 0)
            ctx.set(pe.weight_in.value, 0)      # the register must hold without load
            steps = [(lane, en)] + ([(zero, 1), (zero, 1)] if flush and en else [])
            for k, (x, step_en) in enumerate(steps):
                for j, v in enumerate(x):
                    ctx.set(pe.lane_in[j], v)
                ctx.set(pe.psum_in, psum_in)
                ctx.set(pe.en, step_en)
                await ctx.tick()
                if step_en:
                    psum = int(wrap(psum_in + prod, cfg.accumulator_bits))
                    prod, act = value * act, x[index]
                    lane_reg = list(x)
                assert ctx.get(pe.psum_out) == psum, (value, index, lane, psum_in, en, k)
                if forward:
                    assert [ctx.get(pe.lane_out[j]) for j in range(cfg.group_size)] == lane_reg
            if flush and en:
                assert psum == int(wrap(psum_in + value * lane[index], cfg.accumulator_bits))

    simulate(pe, tb)
    return pe


@pytest.mark.parametrize("name", ["systolic-4x4-2of4", "systolic-4x8-m8", "systolic-4x4-int4"])
def test_sparse_mux_selects_lane_index(name):
    cfg = preset(name)
    g = cfg.group_size
    # a distinct activation per position, so the product reveals which one the MUX chose
    lane = [3 * j - 7 for j in range(g)]
    cases = [(5, index, lane, 0, 1) for index in range(g)]
    _check_pe(cfg, cases)


@pytest.mark.parametrize("name", ["systolic-4x4-2of4", "systolic-4x4-int4"])
def test_signed_extremes_and_wrap(name):
    cfg = preset(name)
    wmin, wmax = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1
    amin, amax = -(1 << (cfg.activation_bits - 1)), (1 << (cfg.activation_bits - 1)) - 1
    top = (1 << (cfg.accumulator_bits - 1)) - 1
    g = cfg.group_size
    cases = []
    for w, a in itertools.product((wmin, -1, 0, 1, wmax), (amin, -1, 0, 1, amax)):
        cases.append((w, g - 1, [0] * (g - 1) + [a], 0, 1))
    cases += [
        (wmin, 0, [amin] + [0] * (g - 1), top, 1),          # -128 * -128 on top of the max: wraps
        (wmax, 0, [amin] + [0] * (g - 1), -top - 1, 1),     # negative overflow wraps too
    ]
    _check_pe(cfg, cases)


def test_pipeline_latency_is_three_enabled_cycles():
    """A lane's product appears on psum_out exactly PE_LATENCY = 3 enabled cycles later."""
    from sparsa.timing import PE_LATENCY

    cfg = preset("systolic-4x4-2of4")
    pe = SparsePE(cfg)

    async def tb(ctx):
        ctx.set(pe.weight_in.value, -3)
        ctx.set(pe.weight_in.index, 2)
        ctx.set(pe.load, 1)
        await ctx.tick()
        ctx.set(pe.load, 0)
        ctx.set(pe.psum_in, 100)
        seen = []
        for t in range(6):
            ctx.set(pe.lane_in.as_value(), 0)
            if t == 0:
                for j, v in enumerate([1, 2, 7, 4]):
                    ctx.set(pe.lane_in[j], v)
            ctx.set(pe.en, int(t != 1))         # one stall cycle: not counted
            await ctx.tick()
            seen.append(ctx.get(pe.psum_out))
        # enabled cycles 0, 2, 3 -> psum_out shows 100 - 21 after the third enabled cycle
        assert seen == [100, 100, 100, 100 - 21, 100, 100]
        assert PE_LATENCY == 3

    simulate(pe, tb)


def test_enable_freezes_and_random_against_model():
    cfg = preset("systolic-4x8-m8")
    rng = np.random.default_rng(5)
    half = 1 << (cfg.accumulator_bits - 1)
    cases = []
    for _ in range(60):
        cases.append((int(rng.integers(-128, 128)), int(rng.integers(0, cfg.group_size)),
                      [int(x) for x in rng.integers(-128, 128, cfg.group_size)],
                      int(rng.integers(-half, half)), int(rng.random() < 0.7)))
    _check_pe(cfg, cases, flush=False)


def test_last_column_pe_has_no_lane_register():
    cfg = preset("systolic-4x4-2of4")
    pe = _check_pe(cfg, [(7, 1, [1, 2, 3, 4], 10, 1)], forward=False)
    assert "lane_out" not in pe.signature.members


def test_pe_arguments_checked():
    expect_error(TypeError, "config must be an AcceleratorConfig, not None", lambda: SparsePE(None))
    expect_error(TypeError, "forward must be a bool, not 'yes'",
                 lambda: SparsePE(preset("systolic-4x4-2of4"), forward="yes"))
