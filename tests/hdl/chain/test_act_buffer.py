# amaranth: UnusedElaboratable=no
"""ActivationBuffer against a naive model: LOAD_A writes every lane's word at once, slice ``i``
reads the address presented ``slice_delay(i)`` enabled cycles earlier, one enabled cycle of read
latency, no read-during-write forwarding, stalls hold the read data."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sparsa.hdl.chain.act_buffer import ActivationBuffer, act_address_bits, address_delays
from sparsa.hdl.chain.chain import slice_delay

from ...conftest import preset
from ..helpers import expect_error, simulate


@pytest.mark.parametrize("name,overrides", [
    ("chain-4x4-2of4", {}),
    ("chain-8x4-seg", {"datapath.chain.act_depth": 5, "name": "chain-seg-d5"}),     # not a power of two
    ("chain-8x2-m16", {"datapath.chain.group": 1, "name": "chain-m16-g1"}),
])
def test_skewed_reads_against_model(name, overrides):
    cfg = preset(name).with_overrides(overrides) if overrides else preset(name)
    buf = ActivationBuffer(cfg)
    depth, rows = cfg.chain.act_depth, cfg.rows
    word_bits = cfg.token_lanes * cfg.group_size * cfg.activation_bits
    rng = np.random.default_rng(rows + depth)
    bits = random.Random(rows * depth)
    mem = [[0] * depth for _ in range(rows)]        # lane RAMs, words as bit patterns
    history = []                                    # raddr of every enabled cycle

    def word(bits, i):
        return (bits >> (i * word_bits)) & ((1 << word_bits) - 1)

    async def tb(ctx):
        expected = [0] * rows
        for cycle in range(300):
            wen, en = int(rng.random() < 0.3), int(rng.random() < 0.7)
            waddr, raddr = int(rng.integers(depth)), int(rng.integers(depth))
            wdata = bits.getrandbits(rows * word_bits)
            ctx.set(buf.ctrl.wen, wen)
            ctx.set(buf.ctrl.waddr, waddr)
            ctx.set(buf.wdata.as_value(), wdata)
            ctx.set(buf.ctrl.en, en)
            ctx.set(buf.ctrl.raddr, raddr)
            await ctx.tick()
            if en:
                history.append(raddr)
                k = len(history) - 1                   # this enabled cycle
                for i in range(rows):
                    e = k - slice_delay(cfg, i)        # the enabled cycle whose address lane i reads now
                    expected[i] = mem[i][history[e] if e >= 0 else 0]   # read before this edge's write
            if wen:
                for i in range(rows):
                    mem[i][waddr] = word(wdata, i)
            got = ctx.get(buf.rdata.as_value())
            assert [word(got, i) for i in range(rows)] == expected, cycle

    simulate(buf, tb)


def test_geometry_and_arguments():
    cfg = preset("chain-8x4-seg")
    buf = ActivationBuffer(cfg)
    assert buf.depth == cfg.chain.act_depth and buf.config is cfg
    assert address_delays(cfg) == max(slice_delay(cfg, i) for i in range(cfg.rows)) == 4
    assert act_address_bits(cfg.with_overrides({"datapath.chain.act_depth": 1})) == 1
    assert act_address_bits(cfg.with_overrides({"datapath.chain.act_depth": 17})) == 5
    assert len(buf.wdata.as_value()) == len(buf.rdata.as_value()) == cfg.rows * 2 * 4 * 8
    expect_error(Exception, "ActivationBuffer needs datapath.kind='dsp_chain', not 'systolic'",
                 lambda: ActivationBuffer(preset("systolic-4x4-2of4")))
