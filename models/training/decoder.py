"""A differentiable Llama-style decoder (the SmolLM2 architecture) in NumPy: forward with caches, backward.

Used by sparse fine-tuning (:func:`sparsa.models.compression.finetune.finetune_smollm2`): the pruned
student is trained against the dense teacher.  The forward pass computes what
:meth:`sparsa.models.real.smollm2.SmolLM2.logits` computes, in the same op order (equal up to
float32 rounding, tested on the real weights) and the backward pass is its exact gradient
(checked against central finite differences in float64 in ``tests/training/test_decoder.py``).

One block (pre-norm; ``H`` query heads, ``K`` key/value heads, query head ``j`` reads KV head
``j // (H / K)``; RoPE rotates *adjacent* pairs ``(x[2i], x[2i+1])`` of every head, the
llama.cpp row order of the GGUF)::

    h   = rms(x) * g_attn                         rms(x) = x / sqrt(mean(x^2) + eps)
    q, k, v = rope(h Wq^T), rope(h Wk^T), h Wv^T
    p   = softmax(q k^T / sqrt(hd) + causal)
    x1  = x + (p v) Wo^T
    h2  = rms(x1) * g_ffn
    out = x1 + (silu(h2 Wgate^T) * (h2 Wup^T)) Wdown^T

The head (:func:`head_forward`): ``logits = (rms(x) * g_out) E^T`` with the tied embedding ``E``.

Trainable here: the seven projections of every block (``[out, in]``, no biases - SmolLM2 has
none).  The embedding / head, the RMSNorm gains and RoPE are frozen: N:M pruning does not touch
them, and the gradient with respect to the block input is returned so a caller could train them.

Memory: a block's cache holds its input, the roped q/k, v, the attention probabilities
``[n, K, H/K, T, T]``, the context, the mid residual and the two FFN pre-activations; the
normalized inputs and the SwiGLU product are recomputed in the backward pass (cheap, elementwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sparsa.errors import ShapeError

__all__ = [
    "LINEAR_SUFFIXES",
    "DecoderConfig",
    "DecoderLayerCache",
    "HeadCache",
    "decoder_backward",
    "decoder_forward",
    "head_backward",
    "head_forward",
    "rope_tables",
]

#: The linear layers of one block, in execution order (SmolLM2's naming).
LINEAR_SUFFIXES: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")


@dataclass(frozen=True)
class DecoderConfig:
    """Hyper-parameters of the decoder (SmolLM2: 9 / 3 heads, RoPE base 1e5, eps 1e-5)."""

    n_heads: int
    n_kv_heads: int
    rope_base: float
    eps: float

    def __post_init__(self) -> None:
        for what, v in (("n_heads", self.n_heads), ("n_kv_heads", self.n_kv_heads)):
            if type(v) is not int or v < 1:
                raise ShapeError(f"{what} must be a positive integer, not {v!r}")
        if self.n_heads % self.n_kv_heads:
            raise ShapeError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")

    @classmethod
    def of(cls, model: object) -> DecoderConfig:
        """The configuration of a loaded :class:`~sparsa.models.real.smollm2.SmolLM2`."""
        return cls(model.n_heads, model.n_kv_heads, model.rope_base, model.eps)  # type: ignore[attr-defined]


@dataclass
class DecoderLayerCache:
    """What one block's backward pass needs from its forward pass."""

    x: np.ndarray      # block input [n, T, d]
    r1: np.ndarray     # rms(x) [n, T, 1]
    q: np.ndarray      # roped queries [n, K, rep, T, hd]
    k: np.ndarray      # roped keys [n, K, 1, T, hd]
    v: np.ndarray      # values [n, K, 1, T, hd]
    p: np.ndarray      # attention probabilities [n, K, rep, T, T]
    ctx: np.ndarray    # attention output before Wo [n, T, d]
    x1: np.ndarray     # mid residual [n, T, d]
    r2: np.ndarray     # rms(x1) [n, T, 1]
    gate: np.ndarray   # h2 Wgate^T [n, T, ffn]
    up: np.ndarray     # h2 Wup^T [n, T, ffn]


@dataclass
class HeadCache:
    """What :func:`head_backward` needs."""

    x: np.ndarray
    r: np.ndarray


def rope_tables(length: int, hd: int, base: float, dtype: np.dtype = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``cos, sin`` of RoPE angles ``[length, hd / 2]`` (computed in float64, as SmolLM2 does)."""
    inv = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(length, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(dtype), np.sin(ang).astype(dtype)


def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def _rope_backward(dy: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Transpose of the rotation: rotate by the negative angle."""
    da, db = dy[..., 0::2], dy[..., 1::2]
    out = np.empty_like(dy)
    out[..., 0::2] = da * cos + db * sin
    out[..., 1::2] = db * cos - da * sin
    return out


def _rms(x: np.ndarray, eps: float) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + x.dtype.type(eps))


def _rms_backward(dy: np.ndarray, x: np.ndarray, rms: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient of ``x / rms(x) * g`` with respect to ``x``."""
    gg = dy * g
    xhat = x / rms
    return (gg - xhat * np.mean(gg * xhat, axis=-1, keepdims=True)) / rms


def _mm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` over the last axis of ``x [..., in]`` with ``w [out, in]``."""
    return (x.reshape(-1, x.shape[-1]) @ w.T).reshape(x.shape[:-1] + (w.shape[0],))


def _mm_back(dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (dy.reshape(-1, dy.shape[-1]) @ w).reshape(dy.shape[:-1] + (w.shape[1],))


def _wgrad(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    return dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1])


def _silu_parts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``silu(g) = g / (1 + exp(-g))`` (SmolLM2's expression) and ``sigmoid(g)``."""
    den = 1 + np.exp(-g)
    return g / den, 1 / den


def decoder_forward(x: np.ndarray, linear: Mapping[str, np.ndarray], norms: Mapping[str, np.ndarray], layers: int,
                    cfg: DecoderConfig, *, cache: bool = True,
                    ) -> tuple[list[np.ndarray], list[DecoderLayerCache]]:
    """Run ``layers`` decoder blocks on the embedded tokens (causal attention within each row).

    Parameters
    ----------
    x : np.ndarray
        ``[n, T, d]`` token embeddings (float32 for training, float64 for gradient checks).
    linear : mapping
        ``"layer{i}.{q,k,v,o,gate,up,down}" -> weight [out, in]``.
    norms : mapping
        The GGUF names ``blk.{i}.attn_norm.weight`` and ``blk.{i}.ffn_norm.weight``.
    layers : int
        Decoder depth.
    cfg : DecoderConfig
        Heads, RoPE base, RMSNorm epsilon.
    cache : bool
        Keep what :func:`decoder_backward` needs (False for the teacher: no caches, less memory).

    Returns
    -------
    hidden : list of np.ndarray
        The output of every block (``hidden[-1]`` goes to the head).
    caches : list of DecoderLayerCache
        For :func:`decoder_backward` (empty without ``cache``).
    """
    if x.ndim != 3:
        raise ShapeError(f"decoder_forward needs x [n, T, d], got shape {x.shape}")
    n, length, d = x.shape
    if d % cfg.n_heads:
        raise ShapeError(f"model width {d} is not a multiple of n_heads={cfg.n_heads}")
    hd = d // cfg.n_heads
    kv, rep = cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads
    dt = x.dtype.type
    cos, sin = rope_tables(length, hd, cfg.rope_base, x.dtype)
    causal = np.triu(np.full((length, length), -np.inf, dtype=x.dtype), 1)
    scale = dt(1 / np.sqrt(hd))
    hidden: list[np.ndarray] = []
    caches: list[DecoderLayerCache] = []
    for i in range(layers):
        w = {s: linear[f"layer{i}.{s}"] for s in LINEAR_SUFFIXES}
        r1 = _rms(x, cfg.eps)
        h = x / r1 * norms[f"blk.{i}.attn_norm.weight"]
        # [n, T, heads*hd] -> [n, K, rep, T, hd]: query head j = kv * rep + r reads KV head kv
        q = _mm(h, w["q"]).reshape(n, length, kv, rep, hd).transpose(0, 2, 3, 1, 4)
        k = _mm(h, w["k"]).reshape(n, length, kv, 1, hd).transpose(0, 2, 3, 1, 4)
        v = _mm(h, w["v"]).reshape(n, length, kv, 1, hd).transpose(0, 2, 3, 1, 4)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        s = q @ k.swapaxes(-1, -2) * scale + causal
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        ctx = (s @ v).transpose(0, 3, 1, 2, 4).reshape(n, length, d)
        x1 = x + _mm(ctx, w["o"])
        r2 = _rms(x1, cfg.eps)
        h2 = x1 / r2 * norms[f"blk.{i}.ffn_norm.weight"]
        g = _mm(h2, w["gate"])
        u = _mm(h2, w["up"])
        act, _ = _silu_parts(g)
        out = x1 + _mm(act * u, w["down"])
        if cache:
            caches.append(DecoderLayerCache(x, r1, q, k, v, s, ctx, x1, r2, g, u))
        hidden.append(out)
        x = out
    return hidden, caches


def decoder_backward(d_hidden: list[np.ndarray | None], caches: list[DecoderLayerCache],
                     linear: Mapping[str, np.ndarray], norms: Mapping[str, np.ndarray], cfg: DecoderConfig,
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Gradients of a loss that depends on the blocks' outputs.

    Parameters
    ----------
    d_hidden : list
        ``dL/d hidden[i]`` for each block (``None`` where the loss does not read that block).
    caches, linear, norms, cfg
        As from / for :func:`decoder_forward`.

    Returns
    -------
    grads : dict
        ``"layer{i}.{q,...,down}" -> dW [out, in]`` for every block at or before the last one
        the loss reads.
    dx : np.ndarray
        Gradient with respect to the decoder input (the embeddings).
    """
    if len(d_hidden) != len(caches):
        raise ShapeError(f"{len(d_hidden)} hidden-state gradients for {len(caches)} blocks")
    grads: dict[str, np.ndarray] = {}
    carry = None
    for i in reversed(range(len(caches))):
        c = caches[i]
        dout = d_hidden[i] if carry is None else (carry if d_hidden[i] is None else carry + d_hidden[i])
        if dout is None:
            continue
        n, length, d = c.x.shape
        kv, rep, hd = c.q.shape[1], c.q.shape[2], c.q.shape[-1]
        cos, sin = rope_tables(length, hd, cfg.rope_base, c.x.dtype)
        scale = c.x.dtype.type(1 / np.sqrt(hd))
        w = {s: linear[f"layer{i}.{s}"] for s in LINEAR_SUFFIXES}
        g_attn, g_ffn = norms[f"blk.{i}.attn_norm.weight"], norms[f"blk.{i}.ffn_norm.weight"]
        # FFN
        act, sig = _silu_parts(c.gate)
        grads[f"layer{i}.down"] = _wgrad(dout, act * c.up)
        dm = _mm_back(dout, w["down"])
        du = dm * act
        dg = dm * c.up * (sig * (1 + c.gate * (1 - sig)))
        del dm, act, sig
        h2 = c.x1 / c.r2 * g_ffn
        grads[f"layer{i}.gate"] = _wgrad(dg, h2)
        grads[f"layer{i}.up"] = _wgrad(du, h2)
        del h2
        dh2 = _mm_back(dg, w["gate"]) + _mm_back(du, w["up"])
        dx1 = dout + _rms_backward(dh2, c.x1, c.r2, g_ffn)
        del dg, du, dh2
        # attention
        grads[f"layer{i}.o"] = _wgrad(dx1, c.ctx)
        dctx = _mm_back(dx1, w["o"]).reshape(n, length, kv, rep, hd).transpose(0, 2, 3, 1, 4)
        dp = dctx @ c.v.swapaxes(-1, -2)
        dv = (c.p.swapaxes(-1, -2) @ dctx).sum(axis=2)
        ds = c.p * (dp - (dp * c.p).sum(axis=-1, keepdims=True)) * scale
        del dp, dctx
        dq = _rope_backward(ds @ c.k, cos, sin)
        dk = _rope_backward((ds.swapaxes(-1, -2) @ c.q).sum(axis=2), cos, sin)
        del ds
        dq = dq.transpose(0, 3, 1, 2, 4).reshape(n, length, kv * rep * hd)
        dk = dk.transpose(0, 2, 1, 3).reshape(n, length, kv * hd)
        dv = dv.transpose(0, 2, 1, 3).reshape(n, length, kv * hd)
        h = c.x / c.r1 * g_attn
        grads[f"layer{i}.q"] = _wgrad(dq, h)
        grads[f"layer{i}.k"] = _wgrad(dk, h)
        grads[f"layer{i}.v"] = _wgrad(dv, h)
        del h
        dh = _mm_back(dq, w["q"]) + _mm_back(dk, w["k"]) + _mm_back(dv, w["v"])
        carry = dx1 + _rms_backward(dh, c.x, c.r1, g_attn)
    if carry is None:
        raise ShapeError("no block output carries a gradient")
    return grads, carry


def head_forward(x: np.ndarray, norm: np.ndarray, emb: np.ndarray, eps: float) -> tuple[np.ndarray, HeadCache]:
    """``logits [..., vocab] = (rms(x) * norm) emb^T`` (SmolLM2's final norm and tied head)."""
    r = _rms(x, eps)
    return _mm(x / r * norm, emb), HeadCache(x, r)


def head_backward(dlogits: np.ndarray, cache: HeadCache, norm: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Gradient with respect to the head's input (the last block's output); the head is frozen."""
    return _rms_backward(_mm_back(dlogits, emb), cache.x, cache.r, norm)
