"""OVP-4 border decoders and the OVP PE against the NumPy reference (naive models)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparsa.hdl.ovp import OVP4PairDecoder
from sparsa.hdl.pe import SparsePE
from sparsa.formats import ovp

from ..conftest import preset
from .helpers import simulate, wrap


def test_pair_decoder_matches_decode_to_exp_int_on_all_256_bytes():
    dec = OVP4PairDecoder()
    exp, integer = ovp.decode_to_exp_int(np.arange(256, dtype=np.uint8)[:, None], ovp.OVP4_INT4)

    async def tb(ctx):
        for b in range(256):
            ctx.set(dec.pair, b)
            await ctx.delay(1e-9)
            got = (ctx.get(dec.even.exp), ctx.get(dec.even.integer), ctx.get(dec.odd.exp), ctx.get(dec.odd.integer))
            assert got == (exp[b, 0], integer[b, 0], exp[b, 1], integer[b, 1]), hex(b)

    sim = Simulator(dec)          # purely combinational: no clock domain
    sim.add_testbench(tb)
    sim.run()


def test_decoded_values_equal_decode_for_every_valid_byte():
    exp, integer = ovp.decode_to_exp_int(np.arange(256, dtype=np.uint8)[:, None], ovp.OVP4_INT4)
    valid = np.array([b for b in range(256) if b not in ovp.reserved_pair_codes()], dtype=np.uint8)
    np.testing.assert_array_equal(integer[valid].astype(np.int32) << exp[valid],
                                  ovp.decode(valid[:, None], ovp.OVP4_INT4))


@pytest.mark.parametrize("name", ["systolic-4x4-ovp4", "systolic-4x4-ovp4-ovp4"])
def test_ovp_pe_random_against_model(name):
    cfg = preset(name)
    pe = SparsePE(cfg)
    rng = np.random.default_rng(7)
    tables = ovp.exp_int_tables(ovp.OVP4_INT4)
    cases = []
    for _ in range(60):
        code = int(rng.integers(0, 16))
        outlier = bool(rng.random() < 0.4)
        we, wi = (tables.outlier_exp[code], tables.outlier_int[code]) if outlier else \
            (tables.normal_exp[code], tables.normal_int[code])
        index = int(rng.integers(0, cfg.group_size))
        if cfg.activation_is_ovp:
            lane = [(int(rng.integers(0, 6)), int(rng.integers(-7, 8))) for _ in range(cfg.group_size)]
        else:
            lane = [int(x) for x in rng.integers(-128, 128, cfg.group_size)]
        cases.append((int(we), int(wi), index, lane, int(rng.integers(-2**31, 2**31))))

    async def tb(ctx):
        for we, wi, index, lane, psum_in in cases:
            ctx.set(pe.weight_in.exp, we)
            ctx.set(pe.weight_in.integer, wi)
            ctx.set(pe.weight_in.index, index)
            ctx.set(pe.load, 1)
            await ctx.tick()
            ctx.set(pe.load, 0)
            for j, x in enumerate(lane):
                if cfg.activation_is_ovp:
                    ctx.set(pe.lane_in[j].exp, x[0])
                    ctx.set(pe.lane_in[j].integer, x[1])
                else:
                    ctx.set(pe.lane_in[j], x)
            ctx.set(pe.psum_in, psum_in)
            ctx.set(pe.en, 1)
            await ctx.tick()
            # the MAC is pipelined (PE_LATENCY = 3): two more enabled cycles with a zero lane
            ctx.set(pe.lane_in.as_value(), 0)
            await ctx.tick().repeat(2)
            ctx.set(pe.en, 0)
            sel = lane[index]
            prod = (wi * sel[1]) << (we + sel[0]) if cfg.activation_is_ovp else (wi * sel) << we
            assert ctx.get(pe.psum_out) == int(wrap(psum_in + prod, cfg.accumulator_bits))

    simulate(pe, tb)
