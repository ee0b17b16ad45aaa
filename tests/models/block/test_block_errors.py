"""Bad input to the block reference and its data: one-line errors naming field, value and range."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.models.block import BlockSpec, IntLinear, KVCache, StaticScale, block_decode, block_prefill
from sparsa.models.block.convert import quantize_weight, weight_scale_mantissas
from sparsa.models.block.tiny import tiny_model

from .tiny import tiny, tokens_fx


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.fixture(scope="module")
def llama():
    m = tiny("tiny-llama")
    return m, m.int_blocks[0]


def test_wrong_input_shapes(llama):
    m, w = llama
    with pytest.raises(ShapeError, match=r"block input must be fx \[T >= 1, 64\], not shape \(3, 63\)") as e:
        block_prefill(w, np.zeros((3, 63), dtype=np.int64))
    _one_line(e)
    with pytest.raises(ShapeError, match=r"not shape \(0, 64\)"):
        block_prefill(w, np.zeros((0, 64), dtype=np.int64))
    _, cache = block_prefill(w, tokens_fx(m, 4, 0))
    with pytest.raises(ShapeError, match=r"block input must be fx \[1, 64\], not shape \(2, 64\)"):
        block_decode(w, tokens_fx(m, 2, 1), cache, 4)
    with pytest.raises(FormatError, match="fx codes must be integers, not dtype float64"):
        block_prefill(w, np.zeros((2, 64)))
    with pytest.raises(FormatError, match=r"block input: fx codes must be in \[-2147483648, 2147483647\]"):
        block_prefill(w, np.full((2, 64), 1 << 40, dtype=np.int64))


def test_position_must_match_the_cache(llama):
    m, w = llama
    _, cache = block_prefill(w, tokens_fx(m, 4, 0))
    for bad in (3, 5, True, 4.0):
        with pytest.raises(ShapeError, match=f"block_decode: position {bad!r} must equal the cache length 4") as e:
            block_decode(w, tokens_fx(m, 1, 1), cache, bad)
        _one_line(e)


def test_context_beyond_the_cache(llama):
    m, w = llama
    n = w.max_positions
    with pytest.raises(ShapeError, match=f"block_prefill: {n + 1} tokens exceed the block's {n} positions"):
        block_prefill(w, np.zeros((n + 1, 64), dtype=np.int64))
    full = KVCache(np.zeros((2, n, 16), dtype=np.int64), np.zeros((2, n, 16), dtype=np.int64))
    with pytest.raises(ShapeError, match=f"position {n} is beyond the block's {n} positions \\(0..{n - 1}\\)"):
        block_decode(w, tokens_fx(m, 1, 0), full, n)


def test_cache_must_fit_the_block(llama):
    m, w = llama
    wrong = KVCache(np.zeros((4, 3, 16), dtype=np.int64), np.zeros((4, 3, 16), dtype=np.int64))
    with pytest.raises(ShapeError, match=r"cache \[kv_heads, length, head_dim\] \(4, 3, 16\) does not match "
                                         r"the block's 2 KV heads of 16"):
        block_decode(w, tokens_fx(m, 1, 0), wrong, 3)
    with pytest.raises(ShapeError, match="kv_cache must be a KVCache, not dict"):
        block_decode(w, tokens_fx(m, 1, 0), {}, 0)
    with pytest.raises(FormatError, match=r"KV cache v codes must be int8 \(-127..127\), got 128"):
        KVCache(np.zeros((2, 1, 16), dtype=np.int64), np.full((2, 1, 16), 128))
    with pytest.raises(ShapeError, match=r"KV cache k \(2, 1, 16\) and v \(2, 2, 16\) differ"):
        KVCache(np.zeros((2, 1, 16), dtype=np.int64), np.zeros((2, 2, 16), dtype=np.int64))


def test_int4_codes_out_of_range():
    codes = np.zeros((4, 8), dtype=np.int64)
    codes[2, 5] = 9
    with pytest.raises(FormatError, match=r"q codes: value 9 at \(2, 5\) is outside int4 -7..7") as e:
        IntLinear(codes, np.ones(4, dtype=np.int64), 10, bits=4, name="q")
    _one_line(e)
    codes[2, 5] = -8                                   # the narrow range leaves -8 out
    with pytest.raises(FormatError, match=r"value -8 at \(2, 5\) is outside int4 -7..7"):
        IntLinear(codes, np.ones(4, dtype=np.int64), 10, bits=4, name="q")
    with pytest.raises(FormatError, match="q bits must be one of \\(4, 8\\), not 6"):
        IntLinear(codes, np.ones(4, dtype=np.int64), 10, bits=6, name="q")


def test_linear_fields():
    c = np.zeros((4, 8), dtype=np.int64)
    with pytest.raises(ShapeError, match=r"k mantissa: shape \(3,\), expected \(4,\)"):
        IntLinear(c, np.ones(3, dtype=np.int64), 0, name="k")
    with pytest.raises(FormatError, match=r"k mantissa: mantissas must be in \[0, 2\*\*16\), got \[1, 65536\]"):
        IntLinear(c, np.array([1, 1, 1, 1 << 16]), 0, name="k")
    with pytest.raises(FormatError, match="k exponent must be an int in -128..127, not 300"):
        IntLinear(c, np.ones(4, dtype=np.int64), 300, name="k")
    with pytest.raises(ShapeError, match=r"k bias: shape \(5,\), expected \(4,\)"):
        IntLinear(c, np.ones(4, dtype=np.int64), 0, bias=np.zeros(5, dtype=np.int64), name="k")
    with pytest.raises(FormatError, match=r"v_scale mantissa: mantissas must be in \[1, 2\*\*16\), got \[0, 3\]"):
        StaticScale(np.array([0, 3]), np.array([1, 1]), name="v_scale")


def test_block_spec_and_weights(llama):
    _, w = llama
    with pytest.raises(ConfigError, match="block heads=4 must be a multiple of kv_heads=3"):
        BlockSpec(hidden=64, heads=4, kv_heads=3, head_dim=16, ffn=128)
    with pytest.raises(ConfigError, match="block norm must be one of rmsnorm, layernorm, not 'batchnorm'"):
        BlockSpec(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, norm="batchnorm")
    with pytest.raises(ConfigError, match="block head_dim=15 must be even with RoPE"):
        BlockSpec(hidden=64, heads=4, kv_heads=2, head_dim=15, ffn=128)
    with pytest.raises(ConfigError, match="block rope must be None or one of adjacent, not 'half'"):
        BlockSpec(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, rope="half")
    with pytest.raises(ConfigError, match="block act_group must be an int >= 1, not 0"):
        replace(w, act_group=0)
    with pytest.raises(ConfigError, match="block ffn must be an int >= 1, not 0"):
        BlockSpec(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=0)
    small = quantize_weight(np.ones((32, 64)), 8, name="q")
    with pytest.raises(ShapeError, match=r"block layer 'q': codes \(32, 64\), expected \(out, in\) = \(64, 64\)"):
        replace(w, linear={**w.linear, "q": small})
    with pytest.raises(ConfigError, match="block linear layers must be q, k, v, o, gate, up, down"):
        replace(w, linear={k: v for k, v in w.linear.items() if k != "gate"})
    with pytest.raises(ShapeError, match=r"rope_cos: shape \(127, 8\), expected \(128, 8\)"):
        replace(w, rope_cos=w.rope_cos[:-1])
    with pytest.raises(ConfigError, match="norm1_bias must be None with norm='rmsnorm'"):
        replace(w, norm1_bias=w.norm1)


def test_conversion_inputs():
    with pytest.raises(FormatError, match="q: sparsity must be 'dense' or 'N:M' \\(e.g. '2:4'\\), not '2-4'"):
        quantize_weight(np.ones((4, 8)), 8, "2-4", name="q")
    with pytest.raises(FormatError, match="weight scale: scales must be finite and > 0"):
        weight_scale_mantissas(np.array([1.0, 0.0]))
    with pytest.raises(ConfigError, match="tiny model must be one of tiny-llama, tiny-bert, not 'tiny-gpt'"):
        tiny_model("tiny-gpt")


def test_step_functions_check_their_inputs(llama):
    from sparsa.models.block.reference import attention, int_linear

    _, w = llama
    cache = KVCache(np.zeros((2, 5, 16), dtype=np.int64), np.zeros((2, 5, 16), dtype=np.int64))
    with pytest.raises(ShapeError, match=r"attention: queries must be \[4, T, 16\], not shape \(2, 1, 16\)"):
        attention(w, np.zeros((2, 1, 16), dtype=np.int64), cache, 4)
    with pytest.raises(ShapeError, match=r"attention: 1 queries from position 3 need a cache of 3 \+ 1 "
                                         r"positions, not 5"):
        attention(w, np.zeros((4, 1, 16), dtype=np.int64), cache, 3)
    with pytest.raises(ShapeError, match=r"q: input must be fx \[T, 64\], not shape \(2, 32\)"):
        int_linear(np.zeros((2, 32), dtype=np.int64), w.linear["q"])


def test_an_all_zero_weight_row_keeps_the_other_mantissas_precise():
    """An all-zero row gets scale 1.0 from the int quantizer; it must not set the shared exponent."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 16)) * 1e-3
    w[1] = 0
    lin = quantize_weight(w, 8, name="q")
    assert lin.mantissa[1] == 0 and lin.mantissa.max() >= 1 << 15
    assert np.linalg.norm(lin.dequantized() - w) / np.linalg.norm(w) < 0.01
