"""SystolicArray: skew/deskew align a whole result row, latency rows+cols+1, stalls freeze it."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.hdl.array import SystolicArray, latency
from sparsa.layout import pack_activation_beat, pack_weight_beat, unpack_output_beat

from ..conftest import preset
from .helpers import expect_error, mac_reference, simulate


def _run_array(cfg, values, indices, lanes, enables, *, pe_modules=False):
    """Load weights, then feed beats; ``enables[t]`` is the global enable of cycle t.

    A beat is consumed in every enabled cycle (valid_in=1) until all are in; then zeros with
    valid_in=0.  Returns [(cycle, beat index order) ...] of result rows and their values.
    """
    dut = SystolicArray(cfg, pe_modules=pe_modules)
    results = []

    async def tb(ctx):
        for r in range(cfg.rows):
            ctx.set(dut.load, 1)
            ctx.set(dut.load_row, r)
            ctx.set(dut.load_data.as_value(), pack_weight_beat(cfg, values[r], indices[r]))
            await ctx.tick()
        ctx.set(dut.load, 0)
        fed = 0
        for t, en in enumerate(enables):
            beat = pack_activation_beat(cfg, lanes[fed]) if fed < len(lanes) else 0
            ctx.set(dut.lanes_in.as_value(), beat)
            ctx.set(dut.valid_in, int(fed < len(lanes)))
            ctx.set(dut.en, en)
            if en and ctx.get(dut.valid_out):
                results.append((t, unpack_output_beat(cfg, ctx.get(dut.result.as_value()))))
            await ctx.tick()
            if en and fed < len(lanes):
                fed += 1

    simulate(dut, tb)
    return results


@pytest.mark.parametrize("name", ["systolic-4x4-2of4", "systolic-4x8-m8", "systolic-4x4-int4"])
def test_rows_leave_deskewed_after_latency(name):
    cfg = preset(name)
    rng = np.random.default_rng(11)
    wl = 1 << (cfg.weight_bits - 1)
    values = rng.integers(-wl, wl, (cfg.rows, cfg.cols))
    indices = rng.integers(0, cfg.group_size, (cfg.rows, cfg.cols))
    lanes = rng.integers(-128, 128, (6, cfg.rows, cfg.group_size))
    lat = latency(cfg)
    assert lat == cfg.rows + cfg.cols + 1
    results = _run_array(cfg, values, indices, lanes, [1] * (len(lanes) + lat + 3))
    # beat i enters in cycle i and leaves, all columns together, in cycle i + latency
    assert [t for t, _ in results] == [i + lat for i in range(len(lanes))]
    np.testing.assert_array_equal(np.array([y for _, y in results]), mac_reference(values, indices, lanes,
                                                                                   cfg.accumulator_bits))


def test_stalls_freeze_the_pipeline():
    cfg = preset("systolic-4x8-m8")
    rng = np.random.default_rng(12)
    values = rng.integers(-128, 128, (cfg.rows, cfg.cols))
    indices = rng.integers(0, cfg.group_size, (cfg.rows, cfg.cols))
    lanes = rng.integers(-128, 128, (10, cfg.rows, cfg.group_size))
    enables = [int(x) for x in rng.random(80) < 0.5]
    results = _run_array(cfg, values, indices, lanes, enables)
    expected = mac_reference(values, indices, lanes, cfg.accumulator_bits)
    assert len(results) == len(lanes)
    np.testing.assert_array_equal(np.array([y for _, y in results]), expected)
    # a result needs exactly `latency` enabled cycles after its beat's enabled cycle
    enabled = [t for t, en in enumerate(enables) if en]
    assert [t for t, _ in results] == [enabled[i + latency(cfg)] for i in range(len(lanes))]


def test_pe_modules_variant_is_the_same_circuit():
    cfg = preset("systolic-4x4-2of4")
    rng = np.random.default_rng(13)
    values = rng.integers(-128, 128, (cfg.rows, cfg.cols))
    indices = rng.integers(0, cfg.group_size, (cfg.rows, cfg.cols))
    lanes = rng.integers(-128, 128, (5, cfg.rows, cfg.group_size))
    enables = [int(x) for x in rng.random(40) < 0.7]
    flat = _run_array(cfg, values, indices, lanes, enables)
    hier = _run_array(cfg, values, indices, lanes, enables, pe_modules=True)
    assert [t for t, _ in flat] == [t for t, _ in hier]
    np.testing.assert_array_equal(np.array([y for _, y in flat]), np.array([y for _, y in hier]))


def test_one_by_one_array():
    cfg = preset("systolic-4x4-2of4").with_overrides({"datapath.rows": 1, "datapath.cols": 1})
    values, indices = np.array([[-128]]), np.array([[3]])
    lanes = np.array([[[0, 0, 0, -128]], [[1, 2, 3, 4]]])
    results = _run_array(cfg, values, indices, lanes, [1] * 6)
    # latency 1 + 1 + 1 = 3: MUX register, product register, partial sum
    assert latency(cfg) == 3
    assert [(t, y.tolist()) for t, y in results] == [(3, [16384]), (4, [-512])]


def test_array_arguments_checked():
    expect_error(TypeError, "config must be an AcceleratorConfig, not 3", lambda: SystolicArray(3))
    expect_error(TypeError, "pe_modules must be a bool, not 1",
                 lambda: SystolicArray(preset("systolic-4x4-2of4"), pe_modules=1))
