"""The integer block reference (:mod:`sparsa.models.block.reference`) on the tiny models.

* decode consistency: ``block_decode`` at position ``C`` on the cache of ``block_prefill`` over
  ``C`` tokens equals row ``C`` of ``block_prefill`` over ``C + 1`` tokens, and its cache equals
  that prefill's cache, bit for bit (hypothesis over ``C``, model seeds, token seeds and both
  blocks of tiny-llama); so do several decode steps in a row;
* tiny-bert (bidirectional) refuses decode: its rows depend on later tokens;
* GQA: query heads ``2h, 2h + 1`` read KV head ``h`` and nothing else;
* int4 weights with per-group activation scales keep decode consistency;
* golden checksums: the fx outputs of both tiny models on fixed tokens, so a change of any bit of
  the dataflow (a rounding, a shift, a format) shows here before it reaches another rung.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsa.errors import ConfigError
from sparsa.models.block import KVCache, block_decode, block_prefill, quantize_block
from sparsa.models.block.reference import attention

from .tiny import tiny, tokens_fx


@settings(max_examples=25, deadline=None)
@given(context=st.integers(1, 40), model_seed=st.integers(0, 3), token_seed=st.integers(0, 1000),
       block=st.integers(0, 1))
def test_decode_equals_the_prefill_row(context, model_seed, token_seed, block):
    m = tiny("tiny-llama", model_seed)
    w = m.int_blocks[block]
    x = tokens_fx(m, context + 1, token_seed, block)
    y_all, cache_all = block_prefill(w, x)
    y_pre, cache = block_prefill(w, x[:context])
    y_dec, cache_dec = block_decode(w, x[context:], cache, context)
    assert np.array_equal(y_pre, y_all[:context])
    assert np.array_equal(y_dec[0], y_all[context])
    assert np.array_equal(cache_dec.k, cache_all.k) and np.array_equal(cache_dec.v, cache_all.v)


def test_several_decode_steps_equal_the_prefill_rows():
    m = tiny("tiny-llama")
    w = m.int_blocks[0]
    x = tokens_fx(m, 24, 7)
    y_all, _ = block_prefill(w, x)
    _, cache = block_prefill(w, x[:16])
    for pos in range(16, 24):
        y, cache = block_decode(w, x[pos:pos + 1], cache, pos)
        assert np.array_equal(y[0], y_all[pos]), pos
    assert cache.length == 24


def test_bidirectional_block_refuses_decode():
    m = tiny("tiny-bert")
    w = m.int_blocks[0]
    x = tokens_fx(m, 5, 0)
    y, cache = block_prefill(w, x)
    # Bidirectional: an earlier row changes when a later token is added, so no decode exists.
    y6, _ = block_prefill(w, tokens_fx(m, 6, 0))
    assert not np.array_equal(y6[:5], y)
    with pytest.raises(ConfigError, match="block_decode needs a causal block"):
        block_decode(w, x[:1], cache, 5)


def test_query_heads_share_their_kv_head():
    """Changing KV head 1 changes the contexts of query heads 2 and 3 only (tiny-llama: 4 query
    heads, 2 KV heads, query head j reads KV head j // 2)."""
    m = tiny("tiny-llama")
    w = m.int_blocks[0]
    s = w.spec
    rng = np.random.default_rng(3)
    t, keys = 4, 12
    q = rng.integers(-2 << 16, 2 << 16, (s.heads, t, s.head_dim))
    k = rng.integers(-127, 128, (s.kv_heads, keys, s.head_dim))
    v = rng.integers(-127, 128, (s.kv_heads, keys, s.head_dim))
    base = attention(w, q, KVCache(k, v), keys - t)
    k2, v2 = k.copy(), v.copy()
    k2[1] = rng.integers(-127, 128, k2[1].shape)
    v2[1] = rng.integers(-127, 128, v2[1].shape)
    changed = attention(w, q, KVCache(k2, v2), keys - t)
    hd = s.head_dim
    for j in range(s.heads):
        same = np.array_equal(base[:, j * hd:(j + 1) * hd], changed[:, j * hd:(j + 1) * hd])
        assert same == (j // s.group == 0), j


def test_causal_rows_ignore_later_tokens():
    m = tiny("tiny-llama")
    w = m.int_blocks[1]
    x = tokens_fx(m, 10, 2, 1)
    x2 = x.copy()
    x2[7:] = tokens_fx(m, 3, 99, 1)
    y, _ = block_prefill(w, x)
    y2, _ = block_prefill(w, x2)
    assert np.array_equal(y[:7], y2[:7]) and not np.array_equal(y[7:], y2[7:])


#: sha-256 (first 16 hex digits) of the little-endian int64 fx outputs of block 0 and block 1 of
#: each tiny model (seed 0) on 20 tokens of seed 0; measured by this reference.
GOLDEN = {
    "tiny-llama": ("72d6475cd6d1c4aa", "b9b144fccc5f547d"),
    "tiny-bert": ("40681713ac1968b1", "a5b76ba82f068d5c"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_checksums(name):
    m = tiny(name)
    got = []
    for b in range(2):
        y, _ = block_prefill(m.int_blocks[b], tokens_fx(m, 20, 0, b))
        got.append(hashlib.sha256(y.astype("<i8").tobytes()).hexdigest()[:16])
    assert tuple(got) == GOLDEN[name]


@pytest.mark.parametrize("context", [1, 9, 30])
def test_decode_with_int4_weights_and_group_scales(context):
    """int4 weights (attention stays int8 x int8) and activation scales per group of 16: decode
    still equals the prefill row, because every row is quantized alone."""
    m = tiny("tiny-llama")
    x0 = m.hidden(np.arange(40), 0)
    w = quantize_block(m.blocks[0], x0, bits=4, patterns={"gate": "2:4", "up": "2:4", "down": "2:4"},
                       max_positions=64, act_group=16)
    assert all(lin.bits == 4 and np.abs(lin.codes).max() <= 7 for lin in w.linear.values())
    x = tokens_fx(m, context + 1, context)
    y_all, _ = block_prefill(w, x)
    _, cache = block_prefill(w, x[:context])
    y, _ = block_decode(w, x[context:], cache, context)
    assert np.array_equal(y[0], y_all[context])


def test_kv_qmax_bounds_the_cache_codes():
    """kv_qmax=119 (a 4-bit weight port's nibble planes) saturates K/V at 119, recalibrates the
    static scales to it, and keeps decode equal to the prefill row."""
    from sparsa.compiler.attention import NIBBLE_QMAX
    from sparsa.models.block.convert import quantize_block

    m = tiny("tiny-llama")
    calib = np.random.default_rng(0).integers(0, 256, 64)
    w = quantize_block(m.blocks[0], m.hidden(calib, 0), max_positions=128, kv_qmax=NIBBLE_QMAX)
    x = tokens_fx(m, 12, 3) * 4                                      # beyond the calibration: saturates
    y, cache = block_prefill(w, x)
    assert max(np.abs(cache.k).max(), np.abs(cache.v).max()) == NIBBLE_QMAX
    y_d, _ = block_decode(w, x[11:], KVCache(cache.k[:, :11], cache.v[:, :11]), 11)
    assert np.array_equal(y_d[0], y[11])
    w127 = quantize_block(m.blocks[0], m.hidden(calib, 0), max_positions=128)
    assert (w127.k_scale.value < w.k_scale.value).all()             # mapped to 127 instead of 119
