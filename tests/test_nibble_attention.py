"""Attention's int8 x int8 products on a 4-bit weight port: two nibble passes (sparsa.compiler.attention).

The split is exact, the int4 datapath runs each plane bit-exactly, the SFU's MUL + ADD combine the
planes into the int8 x int8 product, and the estimator costs exactly two passes plus the combine.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparsa.compiler import compile_gemm
from sparsa.compiler.attention import NIBBLE_QMAX, combine_nibbles, operand_passes, split_nibbles
from sparsa.compiler.vector import lower_vector_op
from sparsa.errors import FormatError, UnsupportedError
from sparsa.sfu import ops
from sparsa.sfu.fixed import FX_FRAC
from sparsa.sim import get_backend
from sparsa.sim.datapath import sim_datapath
from sparsa.sim.estimator import estimate_gemm
from sparsa.sim.vector_cost import config_sfu

from .conftest import preset


def test_every_code_splits_into_two_signed_nibbles():
    codes = np.arange(-128, NIBBLE_QMAX + 1)
    hi, lo = split_nibbles(codes)
    assert hi.min() >= -8 and hi.max() <= 7 and lo.min() >= -8 and lo.max() <= 7
    assert np.array_equal(16 * hi + lo, codes)
    for bad in (120, 127):
        with pytest.raises(FormatError, match=rf"in \[-128, 119\] to split into two signed nibbles, got \[-3, {bad}\]"):
            split_nibbles(np.array([-3, bad]))
    with pytest.raises(FormatError, match="integer codes"):
        split_nibbles(np.array([1.0]))


@settings(max_examples=50)
@given(st.integers(1, 9), st.integers(1, 40), st.integers(1, 9), st.data())
def test_two_planes_give_the_int8_product(m, k, n, data):
    x = data.draw(arrays(np.int64, (m, k), elements=st.integers(-127, 127)))
    w = data.draw(arrays(np.int64, (k, n), elements=st.integers(-128, NIBBLE_QMAX)))
    hi, lo = split_nibbles(w)
    assert np.array_equal(combine_nibbles(x @ hi, x @ lo), x @ w)


@pytest.mark.parametrize("backend", ["isa", "cycle", "amaranth"])
def test_the_int4_datapath_computes_an_int8_product_in_two_passes(backend):
    """Q.K^T of int8 codes on systolic-4x4-int4: each nibble plane is a dense int4 GEMM run on the
    backend, and the SFU's MUL (by 16.0 in fx) and ADD of the two results equal ``Q @ K.T``."""
    cfg = preset("systolic-4x4-int4")
    rng = np.random.default_rng(11)
    q, k = rng.integers(-127, 128, (5, 16)), rng.integers(-128, NIBBLE_QMAX + 1, (9, 16))
    planes = []
    for plane in split_nibbles(k.T):
        program = compile_gemm(cfg, plane, q.shape[0], "dense")
        planes.append(get_backend(backend, cfg).run(program, {"A": q}).outputs["Y"])
    combined = ops.add(ops.mul(planes[0], np.full(planes[0].shape, 16 << FX_FRAC)), planes[1])
    assert np.array_equal(combined, q @ k.T)


def test_operand_passes():
    assert operand_passes(preset("systolic-4x4-2of4"), 8) == 1
    assert operand_passes(preset("systolic-4x4-int4"), 8) == 2
    assert operand_passes(preset("systolic-4x4-ovp4"), 8) == 2
    assert operand_passes(preset("systolic-4x4-int4"), 4) == 1
    with pytest.raises(UnsupportedError, match="a 16-bit attention operand on the 4-bit weight port"):
        operand_passes(preset("systolic-4x4-int4"), 16)


@pytest.mark.parametrize("config", ["u280-flightllm", "systolic-4x4-int4", "systolic-4x4-ovp4"])
@pytest.mark.parametrize("kind,m,k,n", [("attention_qk", 9, 64, 257), ("attention_av", 9, 257, 64)])
def test_the_estimator_costs_two_passes_and_the_combine(config, kind, m, k, n):
    cfg = preset(config)
    one = sim_datapath(cfg).estimate_gemm(cfg, m, k, n, "dense", name="a", kind=kind, count=3, weight_format=None,
                                          act_format="int8", static_weight=False, overlap=True)
    est = estimate_gemm(cfg, m, k, n, name="a", kind=kind, count=3, act_format="int8", static_weight=False)
    combine = lower_vector_op("nibble_combine", m * 3, n, config_sfu(cfg))
    assert est.passes == 2 and est.sfu_commands == combine.command_count
    assert est.compute_cycles == 2 * one.compute_cycles + combine.cycles()
    assert est.array_macs == 2 * one.array_macs and est.macs == one.macs
    assert est.offchip_bytes == one.offchip_bytes                 # one int8 byte holds both nibbles
    assert est.energy_pj["mac"] == pytest.approx(est.array_macs * cfg.energy.mac_pj[f"{cfg.types.weight}xint8"])


def test_an_int8_port_runs_attention_in_one_pass():
    cfg = preset("systolic-4x4-2of4")
    one = sim_datapath(cfg).estimate_gemm(cfg, 9, 64, 100, "dense", name="a", kind="attention_qk", count=1,
                                          weight_format=None, act_format="int8", static_weight=False, overlap=True)
    assert estimate_gemm(cfg, 9, 64, 100, name="a", kind="attention_qk", act_format="int8",
                         static_weight=False) == one


@pytest.mark.parametrize("config", ["u280-flightllm", "systolic-8x8-2of4"])
def test_cycles_by_unit_add_up(config):
    """The report's split: every layer's matrix + SFU + memory stall is its cycles; a vector op's
    SFU part is all its compute, an attention GEMM's on a 4-bit port its combine."""
    from sparsa.models.workloads import get_workload
    from sparsa.sim.estimator import estimate_workload

    cfg = preset(config)
    est = estimate_workload(cfg, get_workload("smollm2-135m", phase="decode", context=64))
    for layer in est.layers:
        units = layer.cycles_by_unit()
        assert sum(units.values()) == pytest.approx(layer.cycles) and min(units.values()) >= 0
        if layer.macs == 0:
            assert units["matrix"] == 0 and units["sfu"] == layer.compute_cycles
        elif layer.passes == 2:
            assert units["sfu"] == lower_vector_op("nibble_combine", layer.m * layer.count, layer.n,
                                                   config_sfu(cfg)).cycles()
        else:
            assert units["sfu"] == 0
    total = est.cycles_by_unit()
    assert sum(total.values()) == pytest.approx(est.cycles) and est.summary()["cycles_by_unit"] == total
    assert (total["sfu"] > 0) and (total["matrix"] > 0)
