# amaranth: UnusedElaboratable=no
"""ChainSlice against naive models: the sparse MUX picks ``word[p][index]``, the (packed) product,
the cascade add, three enabled cycles of latency, stalls."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.chain_layout import PACK_SHIFT
from sparsa.hdl.chain.slice import SLICE_LATENCY, ChainSlice, cascade_shape

from ...conftest import preset
from ..helpers import expect_error, simulate
from .models import pack_word, packed_split, random_word, weight_range, wrap_int

PRESETS = ["chain-4x4-2of4", "chain-4x4-packed", "chain-8x2-m16"]


def _set_inputs(ctx, sl, cfg, value, index, word):
    ctx.set(sl.weight.value, value)
    ctx.set(sl.weight.index, index)
    ctx.set(sl.word.as_value(), pack_word(cfg, word))


@pytest.mark.parametrize("name", PRESETS)
def test_mux_picks_the_indexed_activation(name):
    """A distinct activation per position and token: the product reveals what the MUX chose."""
    cfg = preset(name)
    sl = ChainSlice(cfg, cascade=False)
    word = np.array([[3 * e - 7 + 2 * p for e in range(cfg.group_size)] for p in range(cfg.token_lanes)])
    w = weight_range(cfg)[0] + 1

    async def tb(ctx):
        ctx.set(sl.en, 1)
        for index in range(cfg.group_size):
            _set_inputs(ctx, sl, cfg, w, index, word)
            for _ in range(SLICE_LATENCY):
                await ctx.tick()
            out = ctx.get(sl.cascade_out)
            if cfg.token_lanes == 1:
                assert out == w * word[0][index], index
            else:
                assert packed_split(out) == (w * word[0][index], w * word[1][index]), index

    simulate(sl, tb)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("cascade", [False, True])
def test_pipeline_against_delay_model(name, cascade):
    """``cascade_out`` after enabled cycle ``k`` = ``cascade_in`` of enabled cycle ``k - 1`` plus the
    product of the operands of enabled cycle ``k - 3`` (zero before the first); stalls freeze it."""
    cfg = preset(name)
    sl = ChainSlice(cfg, cascade=cascade)
    bits = cascade_shape(cfg).width
    rng = np.random.default_rng(40 + cascade)
    wlo, whi = weight_range(cfg)

    def product(value, index, word):
        operand = int(word[0][index]) if cfg.token_lanes == 1 else \
            (int(word[1][index]) << PACK_SHIFT) + int(word[0][index])
        return value * operand

    async def tb(ctx):
        products, cins = [], []          # per enabled cycle
        expected = 0
        for cycle in range(250):
            en = int(rng.random() < 0.7)
            value, index = int(rng.integers(wlo, whi + 1)), int(rng.integers(cfg.group_size))
            word = random_word(rng, cfg)
            if rng.random() < 0.1:       # extremes
                value, word = wlo, np.full_like(word, -(1 << (cfg.activation_bits - 1)))
            cin = int(rng.integers(-(1 << (bits - 1)), 1 << (bits - 1))) if cascade else 0
            _set_inputs(ctx, sl, cfg, value, index, word)
            if cascade:
                ctx.set(sl.cascade_in, cin)
            ctx.set(sl.en, en)
            await ctx.tick()
            if en:
                products.append(product(value, index, word))
                cins.append(cin)
                k = len(products)
                expected = wrap_int(cins[k - 1] + (products[k - SLICE_LATENCY] if k >= SLICE_LATENCY else 0), bits)
            assert ctx.get(sl.cascade_out) == expected, cycle

    simulate(sl, tb)


def test_ports_and_arguments():
    cfg = preset("chain-4x4-packed")
    assert "cascade_in" not in ChainSlice(cfg, cascade=False).signature.members
    sl = ChainSlice(cfg, cascade=True)
    assert sl.cascade and sl.config is cfg
    assert sl.signature.members["cascade_out"].shape.width == 48
    assert ChainSlice(preset("chain-4x4-2of4"), cascade=True).signature.members["cascade_out"].shape.width == 32
    expect_error(TypeError, "cascade must be a bool, not 1", lambda: ChainSlice(cfg, cascade=1))
    expect_error(TypeError, "config must be an AcceleratorConfig, not None", lambda: ChainSlice(None, cascade=False))
    expect_error(Exception, "ChainSlice needs datapath.kind='dsp_chain', not 'systolic'",
                 lambda: ChainSlice(preset("systolic-4x4-2of4"), cascade=False))


@pytest.mark.parametrize("name", ["chain-4x4-packed", "chain-8x2-m16"])
def test_output_packing_against_naive_model(name):
    """``chain.packing: both``: with ``pack_outputs`` the product is ``((w1 << 18) + w0) * a0``
    (token 0's picked activation), without it the token-packed product with ``value1`` ignored;
    the mode may change between any two enabled cycles (the controller holds it per COMPUTE)."""
    cfg = preset(name).with_overrides({"datapath.chain.packing": "both"})
    sl = ChainSlice(cfg, cascade=False)
    rng = np.random.default_rng(77)
    wlo, whi = weight_range(cfg)
    alo = -(1 << (cfg.activation_bits - 1))

    async def tb(ctx):
        ctx.set(sl.en, 1)
        products = []
        for cycle in range(200):
            mode = int(rng.integers(2))
            w0, w1, index = int(rng.integers(wlo, whi + 1)), int(rng.integers(wlo, whi + 1)), int(rng.integers(cfg.group_size))
            word = random_word(rng, cfg)
            if rng.random() < 0.2:       # extremes: the most negative everything
                w0 = w1 = wlo
                word = np.full_like(word, alo)
            _set_inputs(ctx, sl, cfg, w0, index, word)
            ctx.set(sl.weight.value1, w1)
            ctx.set(sl.pack_outputs, mode)
            a0, a1 = int(word[0][index]), int(word[1][index])
            products.append(packed_split((w0 * a0 + (w1 * a0 << PACK_SHIFT)) if mode else
                                         (w0 * a0 + (w0 * a1 << PACK_SHIFT))))
            await ctx.tick()
            if len(products) >= SLICE_LATENCY:
                assert packed_split(ctx.get(sl.cascade_out)) == products[-SLICE_LATENCY], cycle

    simulate(sl, tb)
