"""AccumulatorBank: synchronous read, overwrite or wrapping read-modify-write, against a dict model."""

from __future__ import annotations

import numpy as np

from sparsa.hdl.accumulator import AccumulatorBank, address_bits
from sparsa.layout import pack_lanes, unpack_output_beat

from ..conftest import preset
from .helpers import expect_error, simulate, wrap


def test_read_modify_write_against_model():
    cfg = preset("systolic-4x4-2of4").with_overrides({"buffers.accumulator_depth": 8, "types.accumulator_bits": 18})
    bank = AccumulatorBank(cfg)
    assert bank.depth == 8 and bank.memory_bits == 8 * 4 * 18 and address_bits(cfg) == 3
    rng = np.random.default_rng(21)
    half = 1 << 17
    model = np.zeros((8, cfg.cols), dtype=np.int64)

    async def tb(ctx):
        addr_prev, expected = 0, model[0].copy()
        for _ in range(300):
            write = rng.random() < 0.6
            accumulate = int(rng.random() < 0.5)
            data = rng.integers(-half, half, cfg.cols)
            # synchronous read: rdata is the row addressed last cycle
            rdata = unpack_output_beat(cfg, ctx.get(bank.rdata.as_value()))
            np.testing.assert_array_equal(rdata, expected)
            # the contract: the row written this cycle is the one addressed last cycle
            ctx.set(bank.wen, int(write))
            ctx.set(bank.waddr, addr_prev)
            ctx.set(bank.accumulate, accumulate)
            ctx.set(bank.wdata.as_value(), pack_lanes(data, 18))
            addr_next = int(rng.integers(0, 8))
            if write and addr_next == addr_prev:
                # the controller never reads the row it writes in the same cycle (the read port
                # is not transparent); keep to that contract
                addr_next = (addr_next + 1) % 8
            ctx.set(bank.raddr, addr_next)
            await ctx.tick()
            if write:
                model[addr_prev] = wrap(model[addr_prev] + data, 18) if accumulate else data
            addr_prev = addr_next
            expected = model[addr_next].copy()

    simulate(bank, tb)


def test_non_power_of_two_depth():
    cfg = preset("systolic-4x4-2of4").with_overrides({"buffers.accumulator_depth": 5})
    assert address_bits(cfg) == 3
    assert AccumulatorBank(cfg).depth == 5


def test_bank_arguments_checked():
    expect_error(TypeError, r"config must be an AcceleratorConfig, not \{\}", lambda: AccumulatorBank({}))
