"""The integer reference of one transformer block: the golden every rung of ``sparsa block`` equals.

Every step is a function of :mod:`sparsa.sfu.ops` (fx = Q15.16 in int64) or an exact integer
GEMM; docs/block.md is the prose.  Formats between the steps:

======================  ====================================================================
tensor                  format
======================  ====================================================================
``x`` (residual)        fx ``[T, hidden]``
norm outputs            fx (``ops.rmsnorm`` / ``ops.layernorm``)
GEMM inputs             int8 codes, one dynamic scale **per token** ``m[t] * 2**-e[t]``
                        (``ops.quantize`` on each row alone: every row has its own exponent);
                        linear layers optionally one mantissa per ``act_group`` elements
GEMM sums               ``acc[t, o] = m[t] * sum_i codes[t, i] * w[o, i]`` (the datapath's
                        scaled accumulation, per group with groups; ``w`` int8 or int4)
linear outputs          fx: ``ops.requantize(acc, w_mant, e[t] + w_exp - 16, bias)``
Q, K after RoPE         fx (``ops.rope`` with the absolute positions' fx tables)
K, V cache              int8 codes ``[kv_heads, positions, head_dim]``, one **static** scale per
                        KV head (``ops.quantize_static``); appending a token writes one row
scores                  fx: ``acc[t, j] = m_q[t] * q_codes[t] . k_codes[j]``, requantized with
                        the KV head's ``k_scale / sqrt(head_dim)`` mantissa, shift
                        ``e_q[t] + e_s - 16``
P                       fx ``ops.softmax`` (causal keep-mask ``j <= position``), then int8
                        codes per query row (``ops.quantize``, a row's own exponent)
context                 fx: ``acc[t, c] = m_p[t] * p_codes[t] . v_codes[:, c]``, requantized
                        with the KV head's ``v_scale`` mantissa, shift ``e_p[t] + e_v - 16``
======================  ====================================================================

Why per-token exponents: ``ops.quantize`` shares one exponent across all rows of a call, so a
row's codes would depend on the other rows; quantizing each row alone makes row ``t`` a function
of row ``t`` (and the cache) only, so one-token decode equals the same row of a prefill bit for
bit.  Why static K/V scales: V's scale must not vary along the P.V reduction (the keys), and a
decode step appends one row without touching the rows already cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.formats.actscale import ActScaleSpec
from sparsa.sfu import ops
from sparsa.sfu.fixed import FX_FRAC

from .spec import BlockWeights, IntLinear, StaticScale, check_fx

__all__ = ["ACT_BITS", "TOKEN", "KVCache", "quantize_rows", "scaled_dot", "int_linear", "attention",
           "block_prefill", "block_decode"]

#: Width of every activation code (GEMM inputs, K/V cache, P); attention is int8 x int8 always.
ACT_BITS = 8
#: Per-token dynamic scales with 16-bit mantissas (applied one row at a time).
TOKEN = ActScaleSpec("token", mantissa_bits=16)


@dataclass(frozen=True, eq=False)
class KVCache:
    """The block's K and V cache: int8 codes ``[kv_heads, length, head_dim]`` (K after RoPE).

    The scales are the block's static :attr:`BlockWeights.k_scale` / ``v_scale``; the cache holds
    positions ``0 .. length - 1``.
    """

    k: np.ndarray
    v: np.ndarray

    def __post_init__(self) -> None:
        for name in ("k", "v"):
            a = np.asarray(getattr(self, name))
            if a.ndim != 3 or a.dtype.kind not in "iu":
                raise ShapeError(f"KV cache {name} must be int codes [kv_heads, length, head_dim], not "
                                 f"{a.dtype} {a.shape}")
            if a.size and np.abs(a).max() > 127:
                raise FormatError(f"KV cache {name} codes must be int8 (-127..127), got {int(np.abs(a).max())}")
            object.__setattr__(self, name, a.astype(np.int64))
        if self.k.shape != self.v.shape:
            raise ShapeError(f"KV cache k {self.k.shape} and v {self.v.shape} differ")

    @property
    def length(self) -> int:
        """Cached positions."""
        return int(self.k.shape[1])

    def append(self, k: np.ndarray, v: np.ndarray) -> KVCache:
        """A cache with ``k, v [kv_heads, T, head_dim]`` codes appended after the cached positions."""
        return KVCache(np.concatenate([self.k, k], axis=1), np.concatenate([self.v, v], axis=1))


def quantize_rows(x: np.ndarray, bits: int = ACT_BITS,
                  group: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fx ``x [T, K]`` -> codes ``[T, K]``, mantissas ``[T, G]``, exponents ``[T]``: ``ops.quantize``
    on each row alone (:func:`sparsa.sfu.ops.quantize_rows`; one QUANTIZE command with
    ``row_exponent`` for all T tokens), with one scale per token (``group`` None, ``G = 1``) or
    per ``group`` elements of a token."""
    spec = TOKEN if group is None else ActScaleSpec("group", group=group, mantissa_bits=TOKEN.mantissa_bits)
    return ops.quantize_rows(x, spec, bits)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b.T`` (int8/int4 codes: every partial sum is far below 2**53)."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64).T).astype(np.int64)


def scaled_dot(codes: np.ndarray, mant: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The datapath's scaled sums ``acc[t, o] = sum_g mant[t, g] * codes_g[t] . w_g[o]`` (groups of
    ``ceil(K / G)`` reduction elements; one group: the token's mantissa times the dot product)."""
    g = mant.shape[1]
    size = -(-codes.shape[1] // g)
    acc = np.zeros((codes.shape[0], w.shape[0]), dtype=np.int64)
    for i in range(g):
        part = slice(i * size, (i + 1) * size)
        acc += mant[:, i:i + 1] * _dot(codes[:, part], w[:, part])
    return acc


def _requant_rows(acc: np.ndarray, expo: np.ndarray, col_mant: np.ndarray, col_exp: int,
                  bias: np.ndarray | None = None) -> np.ndarray:
    """Per row ``t``: ``ops.requantize(acc[t], col_mant, expo[t] + col_exp - 16, bias)``.

    With one scale per token (``acc = m[t] * dot``) this is, bit for bit, one REQUANT_ROW
    command on the raw sums ``dot`` (``ops.requantize_rows(dot, m, expo, col_mant, col_exp - 16)``,
    the same integer product rounded once) and an ADD of the bias."""
    out = np.empty(acc.shape, dtype=np.int64)
    for t in range(acc.shape[0]):
        out[t] = ops.requantize(acc[t:t + 1], col_mant, int(expo[t]) + col_exp - FX_FRAC, bias)[0]
    return out


def int_linear(x: np.ndarray, layer: IntLinear, group: int | None = None) -> np.ndarray:
    """fx ``x [T, in]`` -> fx ``[T, out]``: int8 codes per token (or per ``group`` of a token),
    the scaled integer GEMM, requantization."""
    if np.ndim(x) != 2 or np.shape(x)[1] != layer.shape[1]:
        raise ShapeError(f"{layer.name}: input must be fx [T, {layer.shape[1]}], not shape {np.shape(x)}")
    codes, mant, expo = quantize_rows(x, ACT_BITS, group)
    return _requant_rows(scaled_dot(codes, mant, layer.codes), expo, layer.mantissa, layer.exponent, layer.bias)


def _rope(w: BlockWeights, x: np.ndarray, start: int) -> np.ndarray:
    """RoPE of ``x [heads, T, hd]`` at positions ``start .. start + T - 1``."""
    if w.spec.rope is None:
        return x
    pos = slice(start, start + x.shape[1])
    return ops.rope(x, w.rope_cos[pos], w.rope_sin[pos], pairs=w.spec.rope)


def _heads(x: np.ndarray, n: int, hd: int) -> np.ndarray:
    """``[T, n * hd]`` -> ``[n, T, hd]``."""
    return x.reshape(x.shape[0], n, hd).transpose(1, 0, 2)


def _static(x: np.ndarray, scale: StaticScale, qmax: int = 127) -> np.ndarray:
    """int8 codes of fx ``x [kv_heads, T, hd]`` with each head's static scale, saturating at ``qmax``."""
    return np.stack([ops.quantize_static(x[h], int(scale.mantissa[h]), int(scale.exponent[h]), ACT_BITS, qmax)
                     for h in range(x.shape[0])])


def attention(w: BlockWeights, q: np.ndarray, cache: KVCache, start: int) -> np.ndarray:
    """Attention context fx ``[T, heads * hd]`` of fx queries ``q [heads, T, hd]`` (after RoPE) at
    positions ``start ..`` over the cache's ``start + T`` positions."""
    s = w.spec
    qa = np.asarray(q)
    if qa.ndim != 3 or qa.shape[0] != s.heads or qa.shape[2] != s.head_dim:
        raise ShapeError(f"attention: queries must be [{s.heads}, T, {s.head_dim}], not shape {qa.shape}")
    t, keys = qa.shape[1], cache.length
    if not isinstance(start, (int, np.integer)) or start < 0 or start + t != keys:
        raise ShapeError(f"attention: {t} queries from position {start!r} need a cache of {start!r} + {t} "
                         f"positions, not {keys}")
    q = check_fx("attention queries", qa, qa.shape)
    keep = ops.causal_mask(t, keys, start) if s.causal else None
    ctx = np.empty((t, s.q_width), dtype=np.int64)
    for j in range(s.heads):
        h = j // s.group                                                   # GQA: the KV head
        qc, qm, qe = quantize_rows(q[j])
        sm, se = np.full(keys, w.score_scale.mantissa[h]), int(w.score_scale.exponent[h])
        scores = _requant_rows(scaled_dot(qc, qm, cache.k[h]), qe, sm, se)
        p = ops.softmax(scores, keep)
        pc, pm, pe = quantize_rows(p)
        vm, ve = np.full(s.head_dim, w.v_scale.mantissa[h]), int(w.v_scale.exponent[h])
        ctx[:, j * s.head_dim:(j + 1) * s.head_dim] = _requant_rows(scaled_dot(pc, pm, cache.v[h].T), pe, vm, ve)
    return ctx


def _norm(w: BlockWeights, x: np.ndarray, i: int) -> np.ndarray:
    gain = getattr(w, f"norm{i}")
    if w.spec.norm == "rmsnorm":
        return ops.rmsnorm(x, gain, w.spec.eps)
    return ops.layernorm(x, gain, getattr(w, f"norm{i}_bias"), w.spec.eps)


def _mlp(w: BlockWeights, h: np.ndarray) -> np.ndarray:
    g = w.act_group
    up = int_linear(h, w.linear["up"], g)
    if w.spec.gated:
        a = ops.mul(ops.activation(int_linear(h, w.linear["gate"], g), w.spec.activation), up)
    else:
        a = ops.activation(up, w.spec.activation)
    return int_linear(a, w.linear["down"], g)


def _block(w: BlockWeights, x: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
    """The block on ``x [T, hidden]`` at positions ``cache.length ..``; the cache grown by T rows."""
    s, start, g = w.spec, cache.length, w.act_group
    h = _norm(w, x, 1) if s.prenorm else x
    q = _rope(w, _heads(int_linear(h, w.linear["q"], g), s.heads, s.head_dim), start)
    k = _rope(w, _heads(int_linear(h, w.linear["k"], g), s.kv_heads, s.head_dim), start)
    v = _heads(int_linear(h, w.linear["v"], g), s.kv_heads, s.head_dim)
    cache = cache.append(_static(k, w.k_scale, w.kv_qmax), _static(v, w.v_scale, w.kv_qmax))
    x = ops.add(x, int_linear(attention(w, q, cache, start), w.linear["o"], g))
    if s.prenorm:
        return ops.add(x, _mlp(w, _norm(w, x, 2))), cache
    x = _norm(w, x, 1)
    return _norm(w, ops.add(x, _mlp(w, x)), 2), cache


def _check_x(w: BlockWeights, x: np.ndarray, rows: int | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[1] != w.spec.hidden or a.shape[0] < 1 or (rows is not None and a.shape[0] != rows):
        want = f"[{rows if rows is not None else 'T >= 1'}, {w.spec.hidden}]"
        raise ShapeError(f"block input must be fx {want}, not shape {a.shape}")
    return check_fx("block input", a, a.shape)


def block_prefill(weights: BlockWeights, x_fx: np.ndarray) -> tuple[np.ndarray, KVCache]:
    """The block on ``T`` tokens at positions ``0 .. T-1``.

    Parameters
    ----------
    weights : BlockWeights
        The block.
    x_fx : int64 array ``[T, hidden]``
        fx hidden states entering the block.

    Returns
    -------
    (np.ndarray, KVCache)
        fx outputs ``[T, hidden]`` and the cache of the T positions.
    """
    x = _check_x(weights, x_fx, None)
    if x.shape[0] > weights.max_positions:
        raise ShapeError(f"block_prefill: {x.shape[0]} tokens exceed the block's {weights.max_positions} positions")
    s = weights.spec
    empty = np.zeros((s.kv_heads, 0, s.head_dim), dtype=np.int64)
    return _block(weights, x, KVCache(empty, empty))


def block_decode(weights: BlockWeights, x_fx: np.ndarray, kv_cache: KVCache,
                 position: int) -> tuple[np.ndarray, KVCache]:
    """The block on one token at ``position`` over the cached positions ``0 .. position - 1``.

    Equals row ``position`` of :func:`block_prefill` over ``position + 1`` tokens bit for bit.

    Parameters
    ----------
    weights : BlockWeights
        A causal block (bidirectional attention has no one-token decode).
    x_fx : int64 array ``[1, hidden]``
        fx hidden state of the token.
    kv_cache : KVCache
        The cache of positions ``0 .. position - 1`` (from :func:`block_prefill` or earlier decodes).
    position : int
        The token's position: must equal ``kv_cache.length``.

    Returns
    -------
    (np.ndarray, KVCache)
        fx output ``[1, hidden]`` and the cache with the token's K and V appended.
    """
    s = weights.spec
    if not s.causal:
        raise ConfigError("block_decode needs a causal block: with bidirectional attention every output "
                          "depends on later tokens, so run block_prefill over the whole sequence")
    if not isinstance(kv_cache, KVCache):
        raise ShapeError(f"block_decode: kv_cache must be a KVCache, not {type(kv_cache).__name__}")
    if kv_cache.k.shape[0] != s.kv_heads or kv_cache.k.shape[2] != s.head_dim:
        raise ShapeError(f"block_decode: cache [kv_heads, length, head_dim] {kv_cache.k.shape} does not match "
                         f"the block's {s.kv_heads} KV heads of {s.head_dim}")
    if not isinstance(position, (int, np.integer)) or isinstance(position, bool) or position != kv_cache.length:
        raise ShapeError(f"block_decode: position {position!r} must equal the cache length {kv_cache.length}")
    if position >= weights.max_positions:
        raise ShapeError(f"block_decode: position {position} is beyond the block's {weights.max_positions} "
                         f"positions (0..{weights.max_positions - 1})")
    return _block(weights, _check_x(weights, x_fx, 1), kv_cache)
