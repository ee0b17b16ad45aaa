"""Blocks of the real models: SmolLM2-135M and all-MiniLM-L6-v2 as float and integer blocks.

:func:`smollm2_float_block` / :func:`minilm_float_block` take block ``i``'s float weights from a
loaded :mod:`sparsa.models.real` model; :func:`smollm2_hidden` / :func:`minilm_hidden` give the
float64 hidden states entering block ``i`` for a text (the embeddings, then the float blocks
before ``i``); :func:`smollm2_block` / :func:`minilm_block` quantize a block (int8 or int4
weights per output channel, optional N:M pruning) with K/V scales calibrated on
:data:`sparsa.models.real.sentences.CALIBRATION`, which the evaluation sentences never see.
"""

from __future__ import annotations

import numpy as np

from sparsa.errors import ShapeError

from ..real.sentences import CALIBRATION
from .convert import quantize_block
from .float_block import FloatBlock, float_block
from .spec import BlockSpec, BlockWeights

__all__ = ["CALIBRATION_TEXT", "smollm2_float_block", "smollm2_hidden", "smollm2_block", "minilm_float_block",
           "minilm_hidden", "minilm_block", "LLAMA_LINEAR"]

#: The text the K/V cache scales are calibrated on (the calibration sentences, one sequence).
CALIBRATION_TEXT = " ".join(CALIBRATION)
LLAMA_LINEAR = ("q", "k", "v", "o", "gate", "up", "down")
_BERT_LINEAR = ("q", "k", "v", "o", "up", "down")
_MINILM_EPS = 1e-12


def _check_index(i: int, n: int, model: str) -> None:
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n:
        raise ShapeError(f"{model} has blocks 0..{n - 1}, not {i!r}")


def smollm2_float_block(model, i: int) -> FloatBlock:
    """Block ``i`` of a loaded :class:`~sparsa.models.real.smollm2.SmolLM2` in float64."""
    _check_index(i, model.n_layers, "SmolLM2")
    t = model.tensors
    d = t["token_embd.weight"].shape[1]
    hd = d // model.n_heads
    spec = BlockSpec(hidden=d, heads=model.n_heads, kv_heads=model.n_kv_heads, head_dim=hd,
                     ffn=model.linear[f"layer{i}.up"].shape[0], eps=float(model.eps))
    linear = {s: (model.linear[f"layer{i}.{s}"].astype(np.float64), None) for s in LLAMA_LINEAR}
    return FloatBlock(spec, linear, t[f"blk.{i}.attn_norm.weight"].astype(np.float64),
                      t[f"blk.{i}.ffn_norm.weight"].astype(np.float64), rope_base=float(model.rope_base))


def smollm2_hidden(model, text: str, i: int = 0) -> np.ndarray:
    """float64 hidden states ``[T, 576]`` entering SmolLM2 block ``i`` for ``text`` (no BOS, as
    :meth:`~sparsa.models.real.smollm2.SmolLM2.tokenize`)."""
    _check_index(i, model.n_layers, "SmolLM2")
    ids = model.tokenize(text)
    if ids.size == 0:
        raise ShapeError(f"text {text!r} has no tokens")
    x = model.tensors["token_embd.weight"][ids].astype(np.float64)
    for j in range(i):
        x = float_block(smollm2_float_block(model, j), x).y
    return x


def smollm2_block(model, i: int = 0, *, bits: int = 8, pattern: str | None = None, max_positions: int = 256,
                  act_group: int | None = None, kv_qmax: int = 127) -> BlockWeights:
    """SmolLM2 block ``i`` in integer form.

    Parameters
    ----------
    model : SmolLM2
        From :func:`sparsa.models.real.smollm2.load`.
    i : int
        Block index.
    bits : int
        Weight code width (8 or 4), every layer.
    pattern : str, optional
        ``"N:M"`` pruning of every layer along ``in``.
    max_positions : int
        Context capacity (RoPE table length).
    act_group : int, optional
        Per-group activation scales of the linear layers (default per token).
    """
    fb = smollm2_float_block(model, i)
    calib = smollm2_hidden(model, CALIBRATION_TEXT, i)[:max_positions]
    patterns = {s: pattern for s in LLAMA_LINEAR} if pattern else None
    return quantize_block(fb, calib, bits=bits, patterns=patterns, max_positions=max_positions, act_group=act_group,
                          kv_qmax=kv_qmax)


def _minilm_layers(model) -> int:
    return sum(1 for k in model.tensors if k.endswith("attention.output.LayerNorm.weight"))


def minilm_float_block(model, i: int) -> FloatBlock:
    """Block ``i`` of a loaded :class:`~sparsa.models.real.minilm.MiniLM` in float64."""
    t = model.tensors
    _check_index(i, _minilm_layers(model), "MiniLM")
    d = t["embeddings.word_embeddings.weight"].shape[1]
    heads = 12
    spec = BlockSpec(hidden=d, heads=heads, kv_heads=heads, head_dim=d // heads,
                     ffn=model.linear[f"layer{i}.up"][0].shape[0], norm="layernorm", activation="gelu",
                     gated=False, causal=False, rope=None, prenorm=False, eps=_MINILM_EPS)
    linear = {s: tuple(np.asarray(a, dtype=np.float64) for a in model.linear[f"layer{i}.{s}"]) for s in _BERT_LINEAR}
    p = f"encoder.layer.{i}."
    f64 = lambda name: t[p + name].astype(np.float64)  # noqa: E731
    return FloatBlock(spec, linear, f64("attention.output.LayerNorm.weight"), f64("output.LayerNorm.weight"),
                      f64("attention.output.LayerNorm.bias"), f64("output.LayerNorm.bias"))


def minilm_hidden(model, text: str, i: int = 0) -> np.ndarray:
    """float64 hidden states ``[T, 384]`` entering MiniLM block ``i`` for ``text`` ([CLS] ... [SEP]):
    word + position + token-type embeddings, their LayerNorm, then the float blocks before ``i``."""
    _check_index(i, _minilm_layers(model), "MiniLM")
    ids = model.tokenize([text])[0][0]
    t = model.tensors
    x = (t["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + t["embeddings.position_embeddings.weight"][: ids.size] + t["embeddings.token_type_embeddings.weight"][0])
    c = x - x.mean(axis=-1, keepdims=True)
    x = c / np.sqrt(np.mean(c * c, axis=-1, keepdims=True) + _MINILM_EPS) * t["embeddings.LayerNorm.weight"] \
        + t["embeddings.LayerNorm.bias"]
    for j in range(i):
        x = float_block(minilm_float_block(model, j), x).y
    return x


def minilm_block(model, i: int = 0, *, bits: int = 8, pattern: str | None = None, max_positions: int = 256,
                 act_group: int | None = None, kv_qmax: int = 127) -> BlockWeights:
    """MiniLM block ``i`` in integer form (parameters as :func:`smollm2_block`)."""
    fb = minilm_float_block(model, i)
    calib = minilm_hidden(model, CALIBRATION_TEXT, i)[:max_positions]
    patterns = {s: pattern for s in _BERT_LINEAR} if pattern else None
    return quantize_block(fb, calib, bits=bits, patterns=patterns, max_positions=max_positions,
                          act_group=act_group, kv_qmax=kv_qmax)
