"""A transformer block known by its structure alone: what the estimator costs without weights.

:class:`BlockShape` stands in for :class:`~sparsa.models.block.spec.BlockWeights` in the block
compiler's lowering (:func:`sparsa.compiler.block.block_cycles`): it has the same attributes, with
the linear layers as :class:`LinearShape` (shape, N:M pattern, bias or not) and every constant a
cheap placeholder of the right shape, so the lowering emits the same instructions - GEMMs as their
datapath instruction counts - and the same cycles, for any weights of that structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.models.block.spec import BlockSpec

__all__ = ["BlockShape", "LinearShape"]


@dataclass(frozen=True)
class LinearShape:
    """A linear layer known by its shape: ``(out, in)``, its N:M pattern (or ``dense``), a bias or not."""

    shape: tuple[int, int]
    pattern: str = "dense"
    has_bias: bool = False

    #: No weights: the lowering costs the GEMM from its shape (``IntLinear.codes`` otherwise).
    codes = None
    #: Placeholder column-scale exponent (the command's shift; its cycles do not depend on it).
    exponent = 0

    @property
    def mantissa(self) -> np.ndarray:
        """Placeholder column-scale mantissas ``[out]`` (loaded like the real ones, same cycles)."""
        return np.ones(self.shape[0], dtype=np.int64)

    @property
    def bias(self) -> "np.ndarray | None":
        """Placeholder bias ``[out]`` when the layer has one."""
        return np.zeros(self.shape[0], dtype=np.int64) if self.has_bias else None


@dataclass(frozen=True)
class _UnitScale:
    mantissa: np.ndarray
    exponent: np.ndarray


@dataclass(frozen=True)
class BlockShape:
    """A block known by its structure alone: what :func:`block_cycles` costs (no weights, no data).

    Parameters
    ----------
    spec : BlockSpec
        The structure.
    patterns : mapping
        N:M pattern per linear layer name (absent: dense).
    biases : bool
        Whether the linear layers have biases (BERT-style).
    max_positions : int
        The KV cache's capacity.
    kv_qmax : int
        Largest K/V code (:attr:`BlockWeights.kv_qmax`).
    """

    spec: BlockSpec
    patterns: "dict[str, str] | None" = None
    biases: bool = False
    max_positions: int = 4096
    kv_qmax: int = 127
    act_group = None

    @property
    def linear(self) -> dict:
        pats = self.patterns or {}
        return {name: LinearShape(shape, pats.get(name, "dense"), self.biases)
                for name, shape in self.spec.linear_shapes().items()}

    def __getattr__(self, name: str):
        s = object.__getattribute__(self, "spec")
        if name in ("norm1", "norm2"):
            return np.zeros(s.hidden, dtype=np.int64)
        if name in ("norm1_bias", "norm2_bias"):
            return np.zeros(s.hidden, dtype=np.int64) if s.norm == "layernorm" else None
        if name in ("rope_cos", "rope_sin"):
            return np.zeros((self.max_positions, s.head_dim // 2), dtype=np.int64) if s.rope else None
        if name in ("k_scale", "v_scale", "score_scale"):
            return _UnitScale(np.ones(s.kv_heads, dtype=np.int64), np.zeros(s.kv_heads, dtype=np.int64))
        raise AttributeError(name)
