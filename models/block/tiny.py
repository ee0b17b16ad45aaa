"""Seeded random tiny transformers for fast block tests: ``tiny-llama`` and ``tiny-bert``.

=============  ===============================================================================
``tiny-llama`` 2 blocks, hidden 64, 4 query heads / 2 KV heads of 16, SwiGLU 128, vocabulary 256,
               RMSNorm, RoPE (adjacent pairs, base 10000), causal; MLP weights pruned 2:4
``tiny-bert``  2 blocks, hidden 64, 4 heads of 16, GELU MLP 128, vocabulary 256, post-LayerNorm,
               biases everywhere, bidirectional
=============  ===============================================================================

Weights are ``N(0, 1/in)``, norm gains ``1 + 0.1 N(0, 1)``, biases ``0.02 N(0, 1)``, embeddings
``N(0, 1)`` (tiny-bert's LayerNormed).  :func:`tiny_model` returns the float blocks and their
integer blocks (int8 weights, K/V scales calibrated on :data:`CALIBRATION_TOKENS` random tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import ConfigError, ShapeError

from .convert import quantize_block
from .float_block import FloatBlock, float_block
from .spec import BlockSpec

__all__ = ["TINY_MODELS", "CALIBRATION_TOKENS", "TinyModel", "tiny_model", "random_float_block"]

#: The tiny models' names.
TINY_MODELS = ("tiny-llama", "tiny-bert")
#: Random tokens the K/V scales are calibrated on.
CALIBRATION_TOKENS = 64
_VOCAB, _BLOCKS, _POSITIONS = 256, 2, 128
_SPECS = {
    "tiny-llama": BlockSpec(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128),
    "tiny-bert": BlockSpec(hidden=64, heads=4, kv_heads=4, head_dim=16, ffn=128, norm="layernorm",
                           activation="gelu", gated=False, causal=False, rope=None, prenorm=False, eps=1e-12),
}
_PRUNED = {"tiny-llama": {"gate": "2:4", "up": "2:4", "down": "2:4"}, "tiny-bert": {}}


@dataclass(frozen=True, eq=False)
class TinyModel:
    """A tiny model: embeddings, float blocks and their integer blocks.

    Attributes
    ----------
    name : str
        ``tiny-llama`` or ``tiny-bert``.
    embedding : np.ndarray
        float64 ``[vocab, hidden]``.
    blocks : tuple of FloatBlock
        Float blocks.
    int_blocks : tuple of BlockWeights
        Their integer forms.
    """

    name: str
    embedding: np.ndarray
    blocks: tuple
    int_blocks: tuple

    def hidden(self, ids: np.ndarray, block: int = 0) -> np.ndarray:
        """float64 hidden states ``[T, hidden]`` of token ``ids`` entering block ``block`` (float blocks)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0 or ids.min() < 0 or ids.max() >= self.embedding.shape[0]:
            raise ShapeError(f"{self.name}: ids must be a non-empty vector in 0..{self.embedding.shape[0] - 1}")
        if not 0 <= block < len(self.blocks):
            raise ShapeError(f"{self.name} has blocks 0..{len(self.blocks) - 1}, not {block!r}")
        x = self.embedding[ids]
        for fb in self.blocks[:block]:
            x = float_block(fb, x).y
        return x


def random_float_block(spec: BlockSpec, rng: np.random.Generator) -> FloatBlock:
    """A float block of structure ``spec`` with random weights (the tiny models' draw, any size)."""
    bias = spec.norm == "layernorm"

    def vec(n: int, base: float, spread: float) -> np.ndarray:
        return base + spread * rng.standard_normal(n)

    linear = {name: (rng.standard_normal(shape) / np.sqrt(shape[1]), vec(shape[0], 0, 0.02) if bias else None)
              for name, shape in spec.linear_shapes().items()}
    d = spec.hidden
    norms = {"norm1": vec(d, 1, 0.1), "norm2": vec(d, 1, 0.1)}
    if bias:
        norms.update(norm1_bias=vec(d, 0, 0.02), norm2_bias=vec(d, 0, 0.02))
    return FloatBlock(spec, linear, rope_base=10000.0, **norms)


def tiny_model(name: str, seed: int = 0) -> TinyModel:
    """The tiny model ``name`` drawn with ``seed``, with int8 integer blocks.

    Parameters
    ----------
    name : str
        One of :data:`TINY_MODELS`.
    seed : int
        Seed of the float weights and of the calibration tokens.
    """
    if name not in _SPECS:
        raise ConfigError(f"tiny model must be one of {', '.join(TINY_MODELS)}, not {name!r}")
    spec = _SPECS[name]
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((_VOCAB, spec.hidden))
    if spec.norm == "layernorm":
        emb = (emb - emb.mean(axis=1, keepdims=True)) / emb.std(axis=1, keepdims=True)
    blocks = tuple(random_float_block(spec, rng) for _ in range(_BLOCKS))
    model = TinyModel(name, emb, blocks, ())
    calib = rng.integers(0, _VOCAB, CALIBRATION_TOKENS)
    ints = tuple(quantize_block(fb, model.hidden(calib, i), patterns=_PRUNED[name], max_positions=_POSITIONS)
                 for i, fb in enumerate(blocks))
    return TinyModel(name, emb, blocks, ints)
