"""Tiny models shared by the block tests (built once per session; each takes ~50 ms)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sparsa.models.block.tiny import TinyModel, tiny_model
from sparsa.sfu import to_fx


@lru_cache(maxsize=None)
def tiny(name: str, seed: int = 0) -> TinyModel:
    """:func:`tiny_model`, cached."""
    return tiny_model(name, seed)


def tokens_fx(model: TinyModel, count: int, seed: int, block: int = 0) -> np.ndarray:
    """fx hidden states ``[count, 64]`` entering ``block`` for ``count`` random tokens drawn with ``seed``."""
    ids = np.random.default_rng(1000 + seed).integers(0, model.embedding.shape[0], count)
    return to_fx(model.hidden(ids, block))
