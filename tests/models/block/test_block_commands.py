"""The reference's SFU steps are the SFU's commands (docs/block.md, "On the SFU's commands").

Each step of :mod:`sparsa.models.block.reference` that docs/block.md maps onto an
:class:`~sparsa.sfu.command.SfuCommand` is run here through the SFU interpreter
(:func:`sparsa.sim.sfu.execute`) with exactly those parameters - QUANTIZE one token at a time,
REQUANT one token at a time with that token's shift, ADD for a bias, ROPE with interleaved tables,
QSTATIC per KV head, SOFTMAX with ``causal`` and ``offset`` - and must equal the reference bit for
bit (the GEMMs, the datapath's part, in NumPy).  The same steps also run as one command each
for all tokens: QUANTIZE with ``row_exponent`` (every token its own exponent, to VMEM) and
REQUANT_ROW on the raw dot products (each row's mantissa and exponent read back from VMEM).  Not
the ISA rung: that needs the SFU's ISA extension; this pins that the golden asks nothing of the
SFU it cannot do.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.models.block import KVCache, block_prefill
from sparsa.models.block.reference import _heads, _rope, _static, attention, int_linear, quantize_rows
from sparsa.sfu.command import SfuCommand, SfuOp, row_words
from sparsa.sfu.fixed import FX_FRAC
from sparsa.sim.sfu import SfuState, execute

from .tiny import tiny, tokens_fx

LANES = 8


class Sfu:
    """An SFU interpreter with a bump allocator over its VMEM."""

    def __init__(self) -> None:
        self.state = SfuState(LANES, 1 << 15)
        self.top = 0

    def put(self, x: np.ndarray) -> int:
        x = np.atleast_2d(np.asarray(x, dtype=np.int64))
        addr = self.top
        self.state.write_rows(addr, x)
        self.top += x.shape[0] * row_words(x.shape[1], LANES)
        return addr

    def run(self, op: SfuOp, a: np.ndarray, b: np.ndarray | None = None, **kw) -> np.ndarray:
        a = np.atleast_2d(a)
        src = self.put(a)
        dst = self.put(np.zeros_like(a))
        extra = {} if b is None else \
            {"b": self.put(b), "b_step": 0 if np.ndim(b) == 1 else row_words(a.shape[1], LANES)}
        execute(self.state, SfuCommand(op, a.shape[0], a.shape[1], dst, src, **extra, **kw))
        return self.state.read_rows(dst, a.shape[0], a.shape[1])

    def quantize_token(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        """QUANTIZE of one token (``rows = 1``, ``unit = n``): codes, mantissa, exponent register.

        QUANTIZE wants ``unit`` a multiple of the lanes, so a row of any other length (P over
        ``keys``) is quantized as its whole words: the tail lanes are zero, which changes neither
        the row's amax nor its codes."""
        n = x.shape[-1]
        padded = np.zeros(row_words(n, LANES) * LANES, dtype=np.int64)
        padded[:n] = x
        scale = self.put(np.zeros((1, LANES)))
        codes = self.run(SfuOp.QUANTIZE, padded, unit=padded.size, bits=8, scale_dst=scale)
        return codes[0, :n], int(self.state.read_rows(scale, 1, 1)[0, 0]), self.state.exponent

    def linear(self, x: np.ndarray, codes_w: np.ndarray, mant: np.ndarray, expo: int,
               bias: np.ndarray | None) -> np.ndarray:
        out = []
        for t in range(x.shape[0]):
            c, m, e = self.quantize_token(x[t])
            acc = m * (c @ codes_w.T)                                      # the datapath
            y = self.run(SfuOp.REQUANT, acc, mant, shift=e + expo - FX_FRAC)
            out.append(y[0] if bias is None else self.run(SfuOp.ADD, y, bias)[0])
        return np.array(out)


    def quantize_rows(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        """One QUANTIZE with ``row_exponent`` over all rows (``unit = n``, any row length):
        the codes, and the VMEM addresses of the row mantissas and the row exponents."""
        rows = x.shape[0]
        scale = self.put(np.zeros((1, rows), dtype=np.int64))
        expo = self.put(np.zeros((1, rows), dtype=np.int64))
        codes = self.run(SfuOp.QUANTIZE, x, unit=x.shape[1], bits=8, scale_dst=scale, row_exponent=True,
                         exp_dst=expo)
        return codes, scale, expo

    def requant_rows(self, dot: np.ndarray, col_mant: np.ndarray, col_exp: int, scale: int, expo: int,
                     bias: np.ndarray | None = None) -> np.ndarray:
        """REQUANT_ROW of raw sums with the row scalars at ``scale`` / ``expo``, then ADD ``bias``."""
        y = self.run(SfuOp.REQUANT_ROW, dot, col_mant, shift=col_exp - FX_FRAC, scale_src=scale, exp_src=expo)
        return y if bias is None else self.run(SfuOp.ADD, y, bias)

    def linear_rows(self, x: np.ndarray, codes_w: np.ndarray, mant: np.ndarray, expo: int,
                    bias: np.ndarray | None) -> np.ndarray:
        """QUANTIZE (row_exponent) -> integer dot (the datapath) -> REQUANT_ROW -> ADD bias."""
        c, scale, e = self.quantize_rows(x)
        return self.requant_rows(c @ codes_w.T, mant, expo, scale, e, bias)


@pytest.mark.parametrize("path,seed", [("linear", 2), ("linear_rows", 3)])
def test_linear_layers_as_sfu_commands(path, seed):
    """Every linear layer of both tiny models equals int_linear bit for bit as SFU commands:
    ``linear`` - QUANTIZE and REQUANT per token (the shift patched per token), then ADD bias;
    ``linear_rows`` - QUANTIZE(row_exponent) -> dot -> REQUANT_ROW -> ADD bias, all tokens at once
    (one command per step, not one per token)."""
    for name in ("tiny-llama", "tiny-bert"):
        m = tiny(name)
        w = m.int_blocks[0]
        x = tokens_fx(m, 5, 1)
        for lin in w.linear.values():
            xin = x if lin.shape[1] == x.shape[1] else \
                np.random.default_rng(seed).integers(-3 << 16, 3 << 16, (5, lin.shape[1]))
            got = getattr(Sfu(), path)(xin, lin.codes, lin.mantissa, lin.exponent, lin.bias)
            assert np.array_equal(got, int_linear(xin, lin)), (name, lin.name)


def test_rope_qstatic_and_one_attention_head_are_commands():
    m = tiny("tiny-llama")
    w, s = m.int_blocks[0], m.int_blocks[0].spec
    x = tokens_fx(m, 6, 4)
    _, cache = block_prefill(w, x[:4])                                # positions 0..3 cached
    h = int_linear(x[4:], w.linear["k"])                              # two new tokens at 4, 5
    sfu = Sfu()
    k_heads = _heads(h, s.kv_heads, s.head_dim)
    tables = np.empty((2, s.head_dim), dtype=np.int64)
    tables[:, 0::2], tables[:, 1::2] = w.rope_cos[4:6], w.rope_sin[4:6]
    k_rot = np.stack([sfu.run(SfuOp.ROPE, k_heads[i], tables) for i in range(s.kv_heads)])
    assert np.array_equal(k_rot, _rope(w, k_heads, 4))
    k_codes = np.stack([sfu.run(SfuOp.QSTATIC, k_rot[i], mantissa=int(w.k_scale.mantissa[i]),
                                exponent=int(w.k_scale.exponent[i]), bits=8) for i in range(s.kv_heads)])
    assert np.array_equal(k_codes, _static(k_rot, w.k_scale))

    # One query head (head 3 reads KV head 1) over a cache of 6 positions, queries at 4 and 5.
    rng = np.random.default_rng(5)
    q = rng.integers(-2 << 16, 2 << 16, (s.heads, 2, s.head_dim))
    kc = np.concatenate([cache.k, k_codes], axis=1)
    vc = np.concatenate([cache.v, rng.integers(-127, 128, (s.kv_heads, 2, s.head_dim))], axis=1)
    want = attention(w, q, KVCache(kc, vc), 4)[:, 3 * s.head_dim:4 * s.head_dim]
    hkv, keys = 1, 6
    scores = []
    for t in range(2):
        c, mq, eq = sfu.quantize_token(q[3, t])
        acc = mq * (c @ kc[hkv].T)
        scores.append(sfu.run(SfuOp.REQUANT, acc, np.full(keys, w.score_scale.mantissa[hkv]),
                              shift=eq + int(w.score_scale.exponent[hkv]) - FX_FRAC)[0])
    p = sfu.run(SfuOp.SOFTMAX, np.array(scores), causal=True, offset=4)
    ctx = []
    for t in range(2):
        c, mp, ep = sfu.quantize_token(p[t])
        acc = mp * (c @ vc[hkv])
        ctx.append(sfu.run(SfuOp.REQUANT, acc, np.full(s.head_dim, w.v_scale.mantissa[hkv]),
                           shift=ep + int(w.v_scale.exponent[hkv]) - FX_FRAC)[0])
    assert np.array_equal(np.array(ctx), want)
    assert np.array_equal(np.array([sfu.quantize_token(r)[0] for r in p]), quantize_rows(p)[0])


def test_one_attention_head_with_row_commands():
    """An attention head's scores and context: QUANTIZE(row_exponent) of the queries and of P,
    REQUANT_ROW of the raw dot products, SOFTMAX between - equal to the reference's head."""
    m = tiny("tiny-llama")
    w, s = m.int_blocks[0], m.int_blocks[0].spec
    rng = np.random.default_rng(9)
    keys, start, hkv = 7, 4, 1
    q = rng.integers(-2 << 16, 2 << 16, (s.heads, keys - start, s.head_dim))
    kc = rng.integers(-127, 128, (s.kv_heads, keys, s.head_dim))
    vc = rng.integers(-127, 128, (s.kv_heads, keys, s.head_dim))
    want = attention(w, q, KVCache(kc, vc), start)[:, 3 * s.head_dim:4 * s.head_dim]
    sfu = Sfu()
    c, scale, expo = sfu.quantize_rows(q[3])
    scores = sfu.requant_rows(c @ kc[hkv].T, np.full(keys, w.score_scale.mantissa[hkv]),
                              int(w.score_scale.exponent[hkv]), scale, expo)
    p = sfu.run(SfuOp.SOFTMAX, scores, causal=True, offset=start)
    pc, pscale, pexpo = sfu.quantize_rows(p)                      # rows of 7: not whole words
    ctx = sfu.requant_rows(pc @ vc[hkv], np.full(s.head_dim, w.v_scale.mantissa[hkv]),
                           int(w.v_scale.exponent[hkv]), pscale, pexpo)
    assert np.array_equal(ctx, want)
