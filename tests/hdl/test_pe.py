"""SparsePE against a naive model: the sparse MUX picks lane[index], signed MAC, wrap, enable, load."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sparsa.hdl.pe import SparsePE

from ..conftest import preset
from .helpers import expect_error, simulate, wrap


def _check_pe(cfg, cases, *, forward=True):
    """cases: (value, index, lane, psum_in, en) tuples; checks psum_out / lane_out after each tick."""
    pe = SparsePE(cfg, forward=forward)

    async def tb(ctx):
        psum, lane_reg = 0, [0] * cfg.group_size
        for value, index, lane, psum_in, en in cases:
            ctx.set(pe.weight_in.value, value)
            ctx.set(pe.weight_in.index, index)
            ctx.set(pe.load, 1)
            await ctx.tick()
            ctx.set(pe.load, 0)
            ctx.set(pe.weight_in.value, 0)      # the register must hold without load
            for j, x in enumerate(lane):
                ctx.set(pe.lane_in[j], x)
            ctx.set(pe.psum_in, psum_in)
            ctx.set(pe.en, en)
            await ctx.tick()
            if en:
                psum = int(wrap(psum_in + value * lane[index], cfg.accumulator_bits))
                lane_reg = list(lane)
            assert ctx.get(pe.psum_out) == psum, (value, index, lane, psum_in, en)
            if forward:
                assert [ctx.get(pe.lane_out[j]) for j in range(cfg.group_size)] == lane_reg

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


def test_enable_freezes_and_random_against_model():
    cfg = preset("systolic-4x8-m8")
    rng = np.random.default_rng(5)
    half = 1 << (cfg.accumulator_bits - 1)
    cases = []
    for _ in range(60):
        cases.append((int(rng.integers(-128, 128)), int(rng.integers(0, cfg.group_size)),
                      [int(x) for x in rng.integers(-128, 128, cfg.group_size)],
                      int(rng.integers(-half, half)), int(rng.random() < 0.7)))
    _check_pe(cfg, cases)


def test_last_column_pe_has_no_lane_register():
    cfg = preset("systolic-4x4-2of4")
    pe = _check_pe(cfg, [(7, 1, [1, 2, 3, 4], 10, 1)], forward=False)
    assert "lane_out" not in pe.signature.members


def test_pe_arguments_checked():
    expect_error(TypeError, "config must be an AcceleratorConfig, not None", lambda: SparsePE(None))
    expect_error(TypeError, "forward must be a bool, not 'yes'",
                 lambda: SparsePE(preset("systolic-4x4-2of4"), forward="yes"))
