# amaranth: UnusedElaboratable=no
"""OutputBank against naive models: tile accumulators (restart on ``first``, hold without
``acc_en``), row writes of every tap slot at once (overwrite or read-modify-write with the row
read the cycle before), synchronous non-transparent reads, the DRAIN slot select; and a
tile-level scenario: k-tile sums written, accumulated and drained slot by slot."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Shape

from sparsa.hdl.chain.output_bank import OutputBank, bank_control_signature

from ...conftest import preset
from ..helpers import expect_error, simulate
from .models import unpack_tokens, wrap_int

PRESETS = [("chain-4x4-2of4", {}), ("chain-4x4-packed", {"buffers.accumulator_depth": 5, "name": "chain-d5"}),
           ("chain-8x4-seg", {})]


def _config(name, overrides):
    return preset(name).with_overrides(overrides) if overrides else preset(name)


def _pack_taps(cfg, taps):
    """``taps[c][u][p]`` as the bits of the ``taps`` port."""
    bits, mask = cfg.accumulator_bits, (1 << cfg.accumulator_bits) - 1
    flat = [taps[c][u][p] for c in range(cfg.cols) for u in range(cfg.chain.max_segments)
            for p in range(cfg.token_lanes)]
    return sum((v & mask) << (k * bits) for k, v in enumerate(flat))


class BankModel:
    """Dictionaries of Python ints: tile accumulators ``acc[c, u, p]``, rows ``mem[row][u][lane]``."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.lanes = cfg.token_lanes * cfg.cols
        self.acc = {}
        slots = cfg.chain.max_segments
        self.mem = [[[0] * self.lanes for _ in range(slots)] for _ in range(cfg.buffers.accumulator_depth)]
        self.read = [[0] * self.lanes for _ in range(cfg.chain.max_segments)]   # row read at the last edge

    def edge(self, taps, *, acc_en, first, wen, waddr, accumulate, raddr):
        cfg, bits = self.cfg, self.cfg.accumulator_bits
        new_read = [list(slot) for slot in self.mem[raddr]]          # read before this edge's write
        for c in range(cfg.cols):
            for u in range(cfg.chain.max_segments):
                for p in range(cfg.token_lanes):
                    total = wrap_int(taps[c][u][p] + (0 if first else self.acc.get((c, u, p), 0)), bits)
                    lane = p * cfg.cols + c
                    if wen:
                        self.mem[waddr][u][lane] = wrap_int(total + (self.read[u][lane] if accumulate else 0), bits)
                    if acc_en:
                        self.acc[c, u, p] = total
        self.read = new_read


@pytest.mark.parametrize("name,overrides", PRESETS)
def test_random_control_against_model(name, overrides):
    cfg = _config(name, overrides)
    bank = OutputBank(cfg)
    model = BankModel(cfg)
    depth, smax, bits = cfg.buffers.accumulator_depth, cfg.chain.max_segments, cfg.accumulator_bits
    rng = np.random.default_rng(depth + smax)
    half = 1 << (bits - 1)

    async def tb(ctx):
        for cycle in range(300):
            taps = rng.integers(-half, half, (cfg.cols, smax, cfg.token_lanes)).tolist()
            ctrl = dict(acc_en=int(rng.random() < 0.7), first=int(rng.random() < 0.3), wen=int(rng.random() < 0.5),
                        waddr=int(rng.integers(depth)), accumulate=int(rng.random() < 0.5),
                        raddr=int(rng.integers(depth)))
            slot = int(rng.integers(smax))
            ctx.set(bank.taps.as_value(), _pack_taps(cfg, taps))
            for key, value in ctrl.items():
                ctx.set(getattr(bank.ctrl, key), value)
            if smax > 1:
                ctx.set(bank.ctrl.slot, slot)
            # rdata: the selected slot of the row read at the last edge
            assert unpack_tokens(ctx.get(bank.rdata.as_value()), cfg, model.lanes) == model.read[slot], cycle
            await ctx.tick()
            model.edge(taps, **ctrl)

    simulate(bank, tb)


def test_tiles_written_accumulated_and_drained():
    """Two passes over 3 output tiles of 2 k-tiles (the second accumulating), then every slot of
    every row read back: row ``r`` slot ``u`` lane ``p * cols + c`` = the sum of both passes'
    k-tile results of tile ``r``, tap ``u``, token ``p``, chain ``c``."""
    cfg = preset("chain-8x4-seg")
    bank = OutputBank(cfg)
    smax, cols, tokens = cfg.chain.max_segments, cfg.cols, cfg.token_lanes
    rng = np.random.default_rng(3)
    passes = [rng.integers(-1000, 1000, (3, 2, cols, smax, tokens)) for _ in range(2)]    # tile, k-tile, c, u, p
    expected = passes[0].sum(axis=1) + passes[1].sum(axis=1)                             # tile, c, u, p
    got = {}

    async def tb(ctx):
        for accumulate, results in enumerate(passes):
            ctx.set(bank.ctrl.accumulate, accumulate)
            for row, tile in enumerate(results):
                for k, taps in enumerate(tile):
                    ctx.set(bank.taps.as_value(), _pack_taps(cfg, taps.tolist()))
                    ctx.set(bank.ctrl.acc_en, 1)
                    ctx.set(bank.ctrl.first, int(k == 0))
                    ctx.set(bank.ctrl.wen, int(k == 1))
                    ctx.set(bank.ctrl.waddr, row)
                    # the controller's contract: the read port shows the row being written in the
                    # write cycle (it is addressed one cycle ahead)
                    ctx.set(bank.ctrl.raddr, row + 1 if k == 1 else row)
                    await ctx.tick()
        ctx.set(bank.ctrl.acc_en, 0)
        ctx.set(bank.ctrl.wen, 0)
        for row in range(3):
            ctx.set(bank.ctrl.raddr, row)
            await ctx.tick()
            for u in range(smax):
                ctx.set(bank.ctrl.slot, u)
                got[row, u] = unpack_tokens(ctx.get(bank.rdata.as_value()), cfg, tokens * cols)

    simulate(bank, tb)
    for (row, u), lanes in got.items():
        assert lanes == [int(expected[row, c, u, p]) for p in range(tokens) for c in range(cols)], (row, u)


def test_signature_and_arguments():
    cfg = preset("chain-4x4-2of4")
    assert "slot" not in bank_control_signature(cfg).members            # one slot: no zero-width port
    seg = preset("chain-8x4-seg")
    assert Shape.cast(bank_control_signature(seg).members["slot"].shape).width == 2
    bank = OutputBank(seg)
    assert bank.depth == seg.buffers.accumulator_depth and bank.config is seg
    assert len(bank.rdata.as_value()) == seg.token_lanes * seg.cols * seg.accumulator_bits
    expect_error(Exception, "OutputBank needs datapath.kind='dsp_chain', not 'systolic'",
                 lambda: OutputBank(preset("systolic-4x4-2of4")))
