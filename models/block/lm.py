"""A decoder language model in integer form, and greedy generation with the integer reference.

:class:`IntLM` is the embedding table (fx), the integer blocks (:class:`~.spec.BlockWeights`), the
final norm and the LM head (:class:`~.spec.IntLinear`, per-output-channel weight scales, tied to
the embedding in SmolLM2 and the tiny models).  :func:`reference_generate` is the golden that
``sparsa generate`` equals on every rung: prefill the prompt through every block
(:func:`~.reference.block_prefill`), logits of the last token (final norm, then
:func:`~.reference.int_linear` of the LM head), greedy argmax (ties: the lowest id), then one
:func:`~.reference.block_decode` per block for each generated token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import ConfigError, ShapeError
from sparsa.sfu import ops, to_fx

from .convert import quantize_weight
from .reference import block_decode, block_prefill, int_linear
from .spec import BlockWeights, IntLinear, check_fx

__all__ = ["IntLM", "Generation", "lm_logits", "greedy", "reference_generate", "tiny_lm", "smollm2_lm"]


@dataclass(frozen=True, eq=False)
class IntLM:
    """A decoder LM in integer form.

    Attributes
    ----------
    name : str
        Model name.
    embedding : np.ndarray
        fx token embeddings ``[vocab, hidden]``.
    blocks : tuple of BlockWeights
        The blocks, in order.
    final_norm : np.ndarray
        fx gain ``[hidden]`` of the final RMSNorm.
    lm_head : IntLinear
        ``[vocab, hidden]``.
    eps : float
        The final norm's epsilon.
    """

    name: str
    embedding: np.ndarray
    blocks: tuple
    final_norm: np.ndarray
    lm_head: IntLinear
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if not self.blocks or not all(isinstance(b, BlockWeights) for b in self.blocks):
            raise ConfigError(f"{self.name}: blocks must be a non-empty tuple of BlockWeights")
        s = self.blocks[0].spec
        if not s.causal or any(b.spec != s for b in self.blocks):
            raise ConfigError(f"{self.name}: the blocks must share one causal structure")
        vocab = self.lm_head.shape[0]
        object.__setattr__(self, "embedding", check_fx("embedding", self.embedding, (vocab, s.hidden)))
        object.__setattr__(self, "final_norm", check_fx("final norm", self.final_norm, (s.hidden,)))
        if self.lm_head.shape != (vocab, s.hidden):
            raise ShapeError(f"{self.name}: lm_head {self.lm_head.shape} must be (vocab, {s.hidden})")

    @property
    def vocab(self) -> int:
        """Vocabulary size."""
        return self.lm_head.shape[0]

    @property
    def max_positions(self) -> int:
        """The shortest KV-cache capacity of the blocks."""
        return min(b.max_positions for b in self.blocks)

    def check_generation(self, prompt: np.ndarray, new_tokens: int) -> np.ndarray:
        """The prompt's ids, refused (:class:`ShapeError`) when empty, outside the vocabulary, or when
        the prompt and ``new_tokens`` need more positions than the blocks hold."""
        ids = self.check_ids(prompt, "prompt")
        if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
            raise ShapeError(f"new tokens must be a positive int, not {new_tokens!r}")
        if ids.size + new_tokens - 1 > self.max_positions:
            raise ShapeError(f"{ids.size} prompt + {new_tokens} new tokens need {ids.size + new_tokens - 1} positions; "
                             f"{self.name} holds {self.max_positions}")
        return ids

    def check_ids(self, ids: np.ndarray, what: str = "token ids") -> np.ndarray:
        """``ids`` as int64, refused when empty or outside the vocabulary."""
        a = np.asarray(ids, dtype=np.int64).reshape(-1)
        if a.size == 0 or a.min() < 0 or a.max() >= self.vocab:
            raise ShapeError(f"{self.name}: {what} must be a non-empty list of ids in 0..{self.vocab - 1}")
        return a


@dataclass(frozen=True)
class Generation:
    """Greedy generation: the prompt's ids and the new ids (one per step, the first from prefill)."""

    prompt: tuple[int, ...]
    tokens: tuple[int, ...]


def lm_logits(model: IntLM, x: np.ndarray) -> np.ndarray:
    """fx logits ``[rows, vocab]`` of fx hidden states ``x [rows, hidden]`` (final RMSNorm, LM head)."""
    return int_linear(ops.rmsnorm(x, model.final_norm, model.eps), model.lm_head)


def greedy(logits: np.ndarray) -> int:
    """The id of the largest logit (the lowest id among equals)."""
    return int(np.argmax(np.asarray(logits).reshape(-1)))


def reference_generate(model: IntLM, prompt: np.ndarray, new_tokens: int) -> Generation:
    """Greedy generation of ``new_tokens`` ids after ``prompt`` with the integer reference.

    Raises
    ------
    ShapeError
        An empty prompt, an id outside the vocabulary, or more positions than the blocks hold.
    """
    ids = model.check_generation(prompt, new_tokens)
    x = model.embedding[ids]
    caches = []
    for w in model.blocks:
        x, cache = block_prefill(w, x)
        caches.append(cache)
    out = [greedy(lm_logits(model, x[-1:]))]
    for step in range(new_tokens - 1):
        pos = ids.size + step
        x = model.embedding[[out[-1]]]
        for i, w in enumerate(model.blocks):
            x, caches[i] = block_decode(w, x, caches[i], pos)
        out.append(greedy(lm_logits(model, x)))
    return Generation(tuple(int(i) for i in ids), tuple(out))


def tiny_lm(name: str = "tiny-llama") -> IntLM:
    """The tiny LM: tiny-llama's two int8 blocks, a unit final norm, the LM head tied to the embedding."""
    from .tiny import tiny_model

    m = tiny_model(name)
    if not m.int_blocks[0].spec.causal:
        raise ConfigError(f"{name} is not a decoder; generation takes tiny-llama")
    head = quantize_weight(m.embedding, 8, name="lm_head")
    return IntLM(name, to_fx(m.embedding), m.int_blocks, to_fx(np.ones(m.embedding.shape[1])), head)


def smollm2_lm(model, *, bits: int = 8, pattern: "str | None" = None, max_positions: int = 256,
               kv_qmax: int = 127) -> IntLM:
    """SmolLM2-135M in integer form: every block (:func:`.real.smollm2_block`), the LM head tied to the
    embedding and quantized like the blocks' layers (``bits``, per output channel)."""
    from .convert import quantize_block
    from .float_block import float_block
    from .real import CALIBRATION_TEXT, LLAMA_LINEAR, smollm2_float_block, smollm2_hidden

    # Block i's calibration states are the float blocks before it applied to the calibration text,
    # exactly as smollm2_block(model, i) computes them, but each float block runs once.
    x = smollm2_hidden(model, CALIBRATION_TEXT, 0)
    blocks = []
    for i in range(model.n_layers):
        fb = smollm2_float_block(model, i)
        blocks.append(quantize_block(fb, x[:max_positions], bits=bits, max_positions=max_positions, kv_qmax=kv_qmax,
                                     patterns={s: pattern for s in LLAMA_LINEAR} if pattern else None))
        x = float_block(fb, x).y
    blocks = tuple(blocks)
    emb = np.asarray(model.tensors["token_embd.weight"], dtype=np.float64)
    head = quantize_weight(emb, bits, name="lm_head")
    return IntLM("smollm2", to_fx(emb), blocks, to_fx(model.tensors["output_norm.weight"]), head, model.eps)
