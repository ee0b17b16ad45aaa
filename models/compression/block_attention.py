"""Perplexity of SmolLM2 under block-sparse prefill attention (:mod:`sparsa.formats.attention_blocks`).

Each setting is a prefill length ``T`` (chunk length) and a block size; for each, the float
model is evaluated on the held-out chunks (:func:`~sparsa.models.compression.evaluate.heldout_chunks`,
text no calibration step reads) with plain causal attention and with every policy of the
setting.  ``topk`` policies are calibrated first on chunks of the Lee *background* corpus
(:func:`sparsa.models.real.corpus.token_chunks`, the project's calibration text): the dense
model's attention probabilities are summed per (layer, head, query block, key block)
(:func:`attention_mass`) and the top blocks fixed per layer and head
(:func:`sparsa.formats.attention_blocks.calibrate_topk`); evaluation never sees that text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sparsa.errors import FormatError
from sparsa.formats.attention_blocks import BlockPolicy, block_grid, block_rows, calibrate_topk, kept_pairs
from sparsa.models.real.vector_ops import FloatOps

__all__ = ["AttentionMass", "BlockSetting", "attention_mass", "evaluate_block_attention"]


class AttentionMass(FloatOps):
    """The float backend, summing each layer's attention probabilities per ``block x block`` block.

    :attr:`mass` is ``[layers, heads, nq, nk]`` after a run (layers in call order of the sites
    ``layer{i}.attn_softmax``); other softmax sites are not recorded.
    """

    def __init__(self, block: int, n_layers: int) -> None:
        super().__init__()
        if type(block) is not int or block < 1:
            raise FormatError(f"block must be a positive integer, not {block!r}")
        self.block = block
        self.n_layers = n_layers
        self.mass: np.ndarray | None = None

    def softmax(self, x: np.ndarray, keep: np.ndarray | None = None, *, site: str = "") -> np.ndarray:
        y = super().softmax(x, keep, site=site)
        if site.endswith(".attn_softmax"):
            layer = int(site.removeprefix("layer").split(".")[0])
            *lead, q, k = y.shape
            nq, nk = block_grid(q, k, self.block)
            p = np.zeros((*lead, nq * self.block, nk * self.block), dtype=np.float64)
            p[..., :q, :k] = y
            blocks = p.reshape(*lead, nq, self.block, nk, self.block).sum(axis=(-3, -1))
            blocks = blocks.reshape(-1, *blocks.shape[-3:]).sum(axis=0)  # [heads, nq, nk] over the batch
            if self.mass is None:
                self.mass = np.zeros((self.n_layers, *blocks.shape))
            self.mass[layer] += blocks
        return y


def attention_mass(model: object, chunks: Sequence[np.ndarray], block: int) -> np.ndarray:
    """Attention probability of the dense (causal) model summed per block over ``chunks``.

    Returns
    -------
    ndarray
        ``[layers, heads, nq, nk]`` for chunks of one length ``T`` (``nq = nk = ceil(T / block)``).
    """
    if not len(chunks) or len({np.size(c) for c in chunks}) != 1:
        raise FormatError(f"attention_mass needs chunks of one length, got {sorted({np.size(c) for c in chunks})}")
    rec = AttentionMass(block, model.n_layers)  # type: ignore[attr-defined]
    for c in chunks:
        model.logits(np.asarray(c, dtype=np.int64), vector_ops=rec)  # type: ignore[attr-defined]
    assert rec.mass is not None
    return rec.mass


@dataclass(frozen=True)
class BlockSetting:
    """One row group of the measurement: prefill length, block size and the policies to compare.

    Parameters
    ----------
    length : int
        Chunk (prefill) length in tokens.
    block : int
        Block edge.
    eval_chunks, calib_chunks : int
        Held-out chunks evaluated; background chunks calibrating ``topk``.
    policies : tuple of BlockPolicy
        Policies evaluated besides plain causal attention (their ``block`` must equal ``block``).
    """

    length: int
    block: int
    eval_chunks: int
    calib_chunks: int
    policies: tuple[BlockPolicy, ...]

    def __post_init__(self) -> None:
        for p in self.policies:
            if p.block != self.block:
                raise FormatError(f"policy {p} has block {p.block}, the setting block {self.block}")


def evaluate_block_attention(model: object, settings: Sequence[BlockSetting], *,
                             progress: Callable[[str], None] | None = None) -> list[dict[str, object]]:
    """Held-out perplexity of ``model`` (SmolLM2) under each setting's policies.

    Returns
    -------
    list of dict
        One row per (setting, policy): ``length``, ``block``, ``policy`` (text; ``"causal"`` for
        the baseline), ``kept`` (kept pairs / causal pairs), ``blocks`` (kept / causal blocks),
        ``ppl``, ``ppl_ratio`` (to the setting's causal baseline), ``eval_chunks``, ``seconds``.
    """
    from sparsa.models.real import corpus

    from .evaluate import heldout_chunks

    rows: list[dict[str, object]] = []
    baselines: dict[tuple[int, int], float] = {}
    for st in settings:
        held = heldout_chunks(model.tokenize, st.length, st.eval_chunks)  # type: ignore[attr-defined]
        causal_pairs = st.length * (st.length + 1) // 2
        nq = block_grid(st.length, st.length, st.block)[0]
        mass = None
        for policy in (None, *st.policies):
            t0 = time.perf_counter()
            mask_policy: object = policy
            if policy is not None and policy.kind == "topk":
                if mass is None:
                    calib = corpus.token_chunks(model.tokenize, st.length)[: st.calib_chunks]  # type: ignore[attr-defined]
                    mass = attention_mass(model, calib, st.block)
                mask_policy = calibrate_topk(policy, mass, st.length)
            key = (st.length, st.eval_chunks)
            if policy is None and key in baselines:
                ppl = baselines[key]
            else:
                ppl = model.perplexity(held, attention_mask_policy=mask_policy)  # type: ignore[attr-defined]
            baselines.setdefault(key, ppl)
            counted = policy or BlockPolicy("dense", st.block)
            # kept key blocks per row: only the last key block can be partial, so ceil counts blocks
            blocks = sum(-(-kept // st.block) for _, kept in block_rows(counted, st.length, st.length))
            rows.append({"length": st.length, "block": st.block, "policy": "causal" if policy is None else str(policy),
                         "kept": kept_pairs(counted, st.length, st.length) / causal_pairs,
                         "blocks": blocks / (nq * (nq + 1) // 2), "ppl": ppl, "ppl_ratio": ppl / baselines[key],
                         "eval_chunks": len(held), "seconds": time.perf_counter() - t0})
            if progress is not None:
                progress(f"T={st.length} b={st.block} {rows[-1]['policy']}: ppl {ppl:.3f}")
    return rows

