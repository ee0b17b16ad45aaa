"""A differentiable BERT encoder (the MiniLM architecture) in NumPy: forward with caches, backward.

Used by sparse fine-tuning (:mod:`sparsa.models.compression.finetune`): the pruned student is trained
against the dense teacher.  The forward pass computes what
:meth:`sparsa.models.real.minilm.MiniLM.hidden_states` computes (same erf GELU, same LayerNorm
epsilon; equal up to float32 rounding, tested) and the backward pass is its exact gradient
(checked against central finite differences in float64 in ``tests/training/test_encoder.py``).

One layer (post-LN BERT)::

    q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv          (split into H heads)
    p   = softmax(q k^T / sqrt(hd) + mask_bias)
    x1  = LN1(x + (p v) Wo^T + bo)
    out = LN2(x1 + gelu(x1 Wup^T + bup) Wdown^T + bdown)

Trainable here: the six linear weights and biases of every layer (``[out, in]`` like the model).
LayerNorms and embeddings are frozen (they are not what N:M pruning touches).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sparsa.errors import ShapeError

__all__ = ["LINEAR_SUFFIXES", "EncoderLayerCache", "encoder_forward", "encoder_backward", "gelu_erf", "gelu_erf_grad"]

#: The linear layers of one encoder layer, in execution order (MiniLM's naming).
LINEAR_SUFFIXES: tuple[str, ...] = ("q", "k", "v", "o", "up", "down")


def _erf(x: np.ndarray) -> np.ndarray:
    # the same Abramowitz & Stegun 7.1.26 approximation MiniLM's reference uses (|error| < 1.5e-7)
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(
        -a * a)
    return (s * y).astype(x.dtype, copy=False)


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU ``0.5 x (1 + erf(x / sqrt 2))``, in the dtype of ``x``."""
    return (0.5 * x * (1.0 + _erf(x * x.dtype.type(1 / np.sqrt(2))))).astype(x.dtype, copy=False)


def gelu_erf_grad(x: np.ndarray) -> np.ndarray:
    """``d gelu / dx = Phi(x) + x phi(x)``."""
    cdf = 0.5 * (1.0 + _erf(x * x.dtype.type(1 / np.sqrt(2))))
    pdf = np.exp(-0.5 * x * x) * x.dtype.type(1 / np.sqrt(2 * np.pi))
    return (cdf + x * pdf).astype(x.dtype, copy=False)


def _ln_forward(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = xc * inv
    return xhat * g + b, (xhat, inv)


def _ln_backward(dy: np.ndarray, g: np.ndarray, cache) -> np.ndarray:
    xhat, inv = cache
    gg = dy * g
    return inv * (gg - gg.mean(axis=-1, keepdims=True) - xhat * (gg * xhat).mean(axis=-1, keepdims=True))


@dataclass
class EncoderLayerCache:
    """What one layer's backward pass needs from its forward pass."""

    x: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    p: np.ndarray
    ctx: np.ndarray
    ln1: tuple
    x1: np.ndarray
    u: np.ndarray
    h: np.ndarray
    ln2: tuple


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1, x.shape[-1])
    return (flat @ w.T + b).reshape(x.shape[:-1] + (w.shape[0],))


def encoder_forward(x: np.ndarray, mask: np.ndarray, linear: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    norms: Mapping[str, np.ndarray], layers: int, heads: int, eps: float = 1e-12,
                    ) -> tuple[list[np.ndarray], list[EncoderLayerCache]]:
    """Run ``layers`` encoder layers on the embedded input.

    Parameters
    ----------
    x : np.ndarray
        ``[n, T, d]`` embeddings after the embedding LayerNorm.
    mask : np.ndarray
        ``[n, T]`` attention mask (1 = real token, 0 = padding).
    linear : mapping
        ``"layer{i}.{q,k,v,o,up,down}" -> (weight [out, in], bias [out])``.
    norms : mapping
        MiniLM's safetensors names ``encoder.layer.{i}.attention.output.LayerNorm.{weight,bias}``
        and ``encoder.layer.{i}.output.LayerNorm.{weight,bias}``.
    layers, heads : int
        Encoder depth and attention heads.

    Returns
    -------
    hidden : list of np.ndarray
        The output of every layer (``hidden[-1]`` is the last hidden state).
    caches : list of EncoderLayerCache
        For :func:`encoder_backward`.
    """
    if x.ndim != 3 or mask.shape != x.shape[:2]:
        raise ShapeError(f"encoder_forward needs x [n, T, d] and mask [n, T], got {x.shape} and {mask.shape}")
    n, length, d = x.shape
    if d % heads:
        raise ShapeError(f"model width {d} is not a multiple of heads={heads}")
    hd = d // heads
    dt = x.dtype.type
    scale = dt(1 / np.sqrt(hd))
    bias = ((1.0 - mask) * -1e9).astype(x.dtype)[:, None, None, :]

    def split(y: np.ndarray) -> np.ndarray:
        return y.reshape(n, length, heads, hd).transpose(0, 2, 1, 3)

    hidden, caches = [], []
    for i in range(layers):
        p_ = f"encoder.layer.{i}."
        lin = {s: linear[f"layer{i}.{s}"] for s in LINEAR_SUFFIXES}
        q = split(_linear(x, *lin["q"]))
        k = split(_linear(x, *lin["k"]))
        v = split(_linear(x, *lin["v"]))
        s = q @ k.transpose(0, 1, 3, 2) * scale + bias
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n, length, d)
        x1, ln1 = _ln_forward(x + _linear(ctx, *lin["o"]), norms[p_ + "attention.output.LayerNorm.weight"],
                              norms[p_ + "attention.output.LayerNorm.bias"], eps)
        u = _linear(x1, *lin["up"])
        h = gelu_erf(u)
        out, ln2 = _ln_forward(x1 + _linear(h, *lin["down"]), norms[p_ + "output.LayerNorm.weight"],
                               norms[p_ + "output.LayerNorm.bias"], eps)
        caches.append(EncoderLayerCache(x, q, k, v, s, ctx, ln1, x1, u, h, ln2))
        hidden.append(out)
        x = out
    return hidden, caches


def encoder_backward(d_hidden: list[np.ndarray | None], caches: list[EncoderLayerCache],
                     linear: Mapping[str, tuple[np.ndarray, np.ndarray]], norms: Mapping[str, np.ndarray],
                     heads: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Gradients of a loss that depends on every layer's output.

    Parameters
    ----------
    d_hidden : list
        ``dL/d hidden[i]`` for each layer (``None`` where the loss does not read that layer).
    caches, linear, norms, heads
        As from / for :func:`encoder_forward`.

    Returns
    -------
    grads : dict
        ``"layer{i}.{name}" -> (dW [out, in], db [out])``.
    dx : np.ndarray
        Gradient with respect to the encoder input (the embeddings).
    """
    if len(d_hidden) != len(caches):
        raise ShapeError(f"{len(d_hidden)} hidden-state gradients for {len(caches)} layers")
    grads: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    carry = None
    for i in reversed(range(len(caches))):
        c = caches[i]
        dout = d_hidden[i] if carry is None else (carry if d_hidden[i] is None else carry + d_hidden[i])
        if dout is None:
            continue
        p_ = f"encoder.layer.{i}."
        n, length, d = c.x.shape
        hd = d // heads
        scale = c.x.dtype.type(1 / np.sqrt(hd))
        lin = {s: linear[f"layer{i}.{s}"] for s in LINEAR_SUFFIXES}

        def wgrad(name: str, dy: np.ndarray, x: np.ndarray, i: int = i) -> None:
            dy2 = dy.reshape(-1, dy.shape[-1])
            grads[f"layer{i}.{name}"] = (dy2.T @ x.reshape(-1, x.shape[-1]), dy2.sum(axis=0))

        def back(dy: np.ndarray, name: str) -> np.ndarray:
            return (dy.reshape(-1, dy.shape[-1]) @ lin[name][0]).reshape(dy.shape[:-1] + (lin[name][0].shape[1],))

        dr2 = _ln_backward(dout, norms[p_ + "output.LayerNorm.weight"], c.ln2)
        wgrad("down", dr2, c.h)
        du = back(dr2, "down") * gelu_erf_grad(c.u)
        wgrad("up", du, c.x1)
        dx1 = dr2 + back(du, "up")
        dr1 = _ln_backward(dx1, norms[p_ + "attention.output.LayerNorm.weight"], c.ln1)
        wgrad("o", dr1, c.ctx)
        dctx = back(dr1, "o").reshape(n, length, heads, hd).transpose(0, 2, 1, 3)
        dp = dctx @ c.v.transpose(0, 1, 3, 2)
        dv = c.p.transpose(0, 1, 3, 2) @ dctx
        ds = c.p * (dp - (dp * c.p).sum(axis=-1, keepdims=True)) * scale
        dq = ds @ c.k
        dk = ds.transpose(0, 1, 3, 2) @ c.q

        def merge(y: np.ndarray) -> np.ndarray:
            return y.transpose(0, 2, 1, 3).reshape(n, length, d)

        dq, dk, dv = merge(dq), merge(dk), merge(dv)
        wgrad("q", dq, c.x)
        wgrad("k", dk, c.x)
        wgrad("v", dv, c.x)
        carry = dr1 + back(dq, "q") + back(dk, "k") + back(dv, "v")
    if carry is None:
        raise ShapeError("no layer output carries a gradient")
    return grads, carry
