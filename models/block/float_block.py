"""A transformer block in float64: the float model the integer reference approximates.

:class:`FloatBlock` holds the float weights of one block (LLaMA- or BERT-style, see
:class:`~sparsa.models.block.spec.BlockSpec`); :func:`float_block` runs it on ``T`` tokens at
positions ``0 .. T-1`` and can hand back K (after RoPE) and V for calibrating the static K/V
cache scales.  The formulas are the real models' (:mod:`sparsa.models.real`), in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from sparsa.errors import ConfigError, ShapeError
from sparsa.formats import intq

from .spec import BlockSpec

__all__ = ["FloatBlock", "FloatOutput", "float_block", "rope_angles"]

#: float64 erf (the exact GELU's).
_ERF = np.vectorize(math.erf, otypes=[np.float64])


def rope_angles(positions: int, head_dim: int, base: float) -> np.ndarray:
    """float64 rotation angles ``[positions, head_dim / 2]``: ``p * base**(-2i / head_dim)``."""
    inv = float(base) ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return np.arange(positions, dtype=np.float64)[:, None] * inv[None, :]


@dataclass(frozen=True, eq=False)
class FloatBlock:
    """Float weights of one block.

    Attributes
    ----------
    spec : BlockSpec
        The structure.
    linear : dict of str to (np.ndarray, np.ndarray or None)
        ``name -> (weight [out, in], bias [out] or None)`` for :meth:`BlockSpec.linear_shapes`.
    norm1, norm2 : np.ndarray
        Norm gains ``[hidden]``.
    norm1_bias, norm2_bias : np.ndarray or None
        LayerNorm biases.
    rope_base : float
        RoPE frequency base (unused without RoPE).
    """

    spec: BlockSpec
    linear: dict
    norm1: np.ndarray
    norm2: np.ndarray
    norm1_bias: np.ndarray | None = None
    norm2_bias: np.ndarray | None = None
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        want = self.spec.linear_shapes()
        if set(self.linear) != set(want):
            raise ConfigError(f"float block linear layers must be {', '.join(want)}, "
                              f"not {', '.join(sorted(self.linear))}")
        for name, shape in want.items():
            w, b = self.linear[name]
            w = intq.check_finite(w, f"float block {name} weight")
            if w.shape != shape:
                raise ShapeError(f"float block {name}: weight {w.shape}, expected (out, in) = {shape}")
            if b is not None and np.shape(b) != shape[:1]:
                raise ShapeError(f"float block {name}: bias {np.shape(b)}, expected ({shape[0]},)")
        for i in (1, 2):
            if np.shape(getattr(self, f"norm{i}")) != (self.spec.hidden,):
                raise ShapeError(f"float block norm{i}: shape {np.shape(getattr(self, f'norm{i}'))}, "
                                 f"expected ({self.spec.hidden},)")

    def with_linear(self, weights: dict) -> FloatBlock:
        """A copy with the weights of some layers replaced (``name -> weight [out, in]``; biases kept)."""
        new = dict(self.linear)
        for name, w in weights.items():
            new[name] = (np.asarray(w, dtype=np.float64), new[name][1])
        return replace(self, linear=new)


class FloatOutput(NamedTuple):
    """What :func:`float_block` returns."""

    #: float64 ``[T, hidden]``.
    y: np.ndarray
    #: float64 ``[kv_heads, T, head_dim]`` keys after RoPE.
    k: np.ndarray
    #: float64 ``[kv_heads, T, head_dim]`` values.
    v: np.ndarray


def _norm(fb: FloatBlock, x: np.ndarray, i: int) -> np.ndarray:
    gain, eps = np.asarray(getattr(fb, f"norm{i}"), dtype=np.float64), fb.spec.eps
    if fb.spec.norm == "rmsnorm":
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain
    c = x - x.mean(axis=-1, keepdims=True)
    return c / np.sqrt(np.mean(c * c, axis=-1, keepdims=True) + eps) * gain + getattr(fb, f"norm{i}_bias")


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "silu":
        return x / (1 + np.exp(-x))
    return 0.5 * x * (1 + _ERF(x / np.sqrt(2)))


def _rope(x: np.ndarray, angles: np.ndarray, pairs: str | None) -> np.ndarray:
    if pairs is None:
        return x
    c, s = np.cos(angles), np.sin(angles)
    hd = x.shape[-1]
    ia, ib = (np.arange(0, hd, 2), np.arange(1, hd, 2)) if pairs == "adjacent" else \
        (np.arange(hd // 2), np.arange(hd // 2, hd))
    out = np.empty_like(x)
    out[..., ia] = x[..., ia] * c - x[..., ib] * s
    out[..., ib] = x[..., ia] * s + x[..., ib] * c
    return out


def float_block(fb: FloatBlock, x: np.ndarray) -> FloatOutput:
    """The float64 block on ``x [T, hidden]`` at positions ``0 .. T-1``."""
    s = fb.spec
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != s.hidden:
        raise ShapeError(f"float block input must be [T, {s.hidden}], not shape {x.shape}")
    t, hd = x.shape[0], s.head_dim

    def lin(name: str, y: np.ndarray) -> np.ndarray:
        w, b = fb.linear[name]
        out = y @ np.asarray(w, dtype=np.float64).T
        return out if b is None else out + b

    def heads(y: np.ndarray, n: int) -> np.ndarray:
        return y.reshape(t, n, hd).transpose(1, 0, 2)

    angles = rope_angles(t, hd, fb.rope_base)
    h = _norm(fb, x, 1) if s.prenorm else x
    q = _rope(heads(lin("q", h), s.heads), angles, s.rope)
    k = _rope(heads(lin("k", h), s.kv_heads), angles, s.rope)
    v = heads(lin("v", h), s.kv_heads)
    kr, vr = np.repeat(k, s.group, axis=0), np.repeat(v, s.group, axis=0)  # query head j: KV head j // group
    scores = q @ kr.transpose(0, 2, 1) / np.sqrt(hd)
    if s.causal:
        scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, -np.inf)
    p = np.exp(scores - scores.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    x = x + lin("o", (p @ vr).transpose(1, 0, 2).reshape(t, s.q_width))

    def mlp(y: np.ndarray) -> np.ndarray:
        a = _act(lin("gate", y), s.activation) * lin("up", y) if s.gated else _act(lin("up", y), s.activation)
        return lin("down", a)

    if s.prenorm:
        y = x + mlp(_norm(fb, x, 2))
    else:
        x = _norm(fb, x, 1)
        y = _norm(fb, x + mlp(x), 2)
    return FloatOutput(y, k, v)
