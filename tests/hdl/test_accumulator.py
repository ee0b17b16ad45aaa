"""AccumulatorBank: synchronous read, registered write stage, overwrite or wrapping read-modify-write, against a model."""

from __future__ import annotations

import numpy as np

from sparsa.hdl.accumulator import AccumulatorBank, address_bits
from sparsa.layout import pack_lanes, unpack_output_beat

from ..conftest import preset
from .helpers import expect_error, simulate, wrap


def test_read_modify_write_against_model():
    """Requests are registered with the row read for them when ``en``; the RAM is written in the
    next enabled cycle (``mem_wen``).  Random enables freeze the stage."""
    cfg = preset("systolic-4x4-2of4").with_overrides({"buffers.accumulator_depth": 8, "types.accumulator_bits": 18})
    bank = AccumulatorBank(cfg)
    assert bank.depth == 8 and bank.memory_bits == 8 * 4 * 18 and address_bits(cfg) == 3
    rng = np.random.default_rng(21)
    half = 1 << 17
    model = np.zeros((8, cfg.cols), dtype=np.int64)

    async def tb(ctx):
        addr_prev, expected = 0, model[0].copy()
        pending = None          # (addr, accumulate, data, old): registered, not yet written
        writes = 0
        for _ in range(400):
            en = int(rng.random() < 0.8)
            write = rng.random() < 0.6
            accumulate = int(rng.random() < 0.5)
            data = rng.integers(-half, half, cfg.cols)
            # synchronous read: rdata is the row addressed last cycle
            rdata = unpack_output_beat(cfg, ctx.get(bank.rdata.as_value()))
            np.testing.assert_array_equal(rdata, expected)
            # the contract: the row requested this cycle is the one addressed last cycle
            ctx.set(bank.en, en)
            ctx.set(bank.wen, int(write))
            ctx.set(bank.waddr, addr_prev)
            ctx.set(bank.accumulate, accumulate)
            ctx.set(bank.wdata.as_value(), pack_lanes(data, 18))
            assert ctx.get(bank.mem_wen) == int(bool(en and pending is not None))
            # the controller never reads a row with a write pending (rows go up within a
            # COMPUTE, and the flush ends with the last write): keep to that contract
            busy = set()
            if pending is not None:
                busy.add(pending[0])
            if en and write:
                busy.add(addr_prev)
            addr_next = int(rng.choice([a for a in range(8) if a not in busy]))
            ctx.set(bank.raddr, addr_next)
            await ctx.tick()
            if en:
                if pending is not None:
                    addr, acc, pdata, old = pending
                    model[addr] = wrap(old + pdata, 18) if acc else pdata
                    writes += 1
                pending = (addr_prev, accumulate, data, rdata) if write else None
            addr_prev = addr_next
            expected = model[addr_next].copy()
        assert writes > 150

    simulate(bank, tb)


def test_non_power_of_two_depth():
    cfg = preset("systolic-4x4-2of4").with_overrides({"buffers.accumulator_depth": 5})
    assert address_bits(cfg) == 3
    assert AccumulatorBank(cfg).depth == 5


def test_bank_arguments_checked():
    expect_error(TypeError, r"config must be an AcceleratorConfig, not \{\}", lambda: AccumulatorBank({}))
