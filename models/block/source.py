"""A block of a named model and the hidden states a text produces at it (what ``sparsa block`` runs).

The tiny models take the text's UTF-8 bytes as token ids (vocabulary 256); SmolLM2 and MiniLM
their own tokenizers.  A text shorter than the positions asked for is repeated (joined by a
space) until it is long enough; the first ``positions`` tokens are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import ConfigError
from sparsa.sfu import to_fx

from .spec import BlockWeights

__all__ = ["BLOCK_MODELS", "DEFAULT_TEXT", "BlockSource", "load_block_source"]

#: The models ``sparsa block --model`` takes.
BLOCK_MODELS = ("tiny-llama", "tiny-bert", "smollm2", "minilm")
#: The sentence run when no text is given.
DEFAULT_TEXT = "The accelerator runs one transformer block of a real model, bit for bit."


@dataclass(frozen=True, eq=False)
class BlockSource:
    """Block ``block`` of ``model`` in integer form and the fx hidden states ``[positions, hidden]`` entering it."""

    model: str
    block: int
    weights: BlockWeights
    hidden: np.ndarray


def _repeat(text: str, count, positions: int) -> str:
    reps = 1
    while count(" ".join([text] * reps)) < positions:
        reps *= 2
    return " ".join([text] * reps)


def load_block_source(model: str, block: int, positions: int, *, bits: int = 8, pattern: "str | None" = None,
                      text: "str | None" = None, kv_qmax: int = 127) -> BlockSource:
    """Load block ``block`` of ``model`` and the hidden states of the first ``positions`` tokens of ``text``.

    Parameters
    ----------
    model : str
        One of :data:`BLOCK_MODELS`.
    block : int
        Block index (tiny models: 0 or 1).
    positions : int
        Tokens needed (the block's ``max_positions`` is at least this, and at least 256).
    bits : int
        Weight code width of the real models (8 or 4); the tiny models are int8.
    pattern : str, optional
        ``"N:M"`` pruning of the real models' linear layers (the tiny models have their own:
        tiny-llama's MLP is 2:4).
    text : str, optional
        The text (default :data:`DEFAULT_TEXT`).
    kv_qmax : int
        Largest K/V code of the real models' blocks (:attr:`BlockWeights.kv_qmax`; the tiny
        models are quantized with 127 and refuse another).

    Raises
    ------
    ConfigError
        An unknown model, a block index out of range, or an empty text.
    MissingToolError
        A real model that is not installed (the message says how to install it).
    """
    if model not in BLOCK_MODELS:
        raise ConfigError(f"--model must be one of {', '.join(BLOCK_MODELS)}, not {model!r}")
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 1:
        raise ConfigError(f"positions must be a positive int, not {positions!r}")
    text = DEFAULT_TEXT if text is None else text
    if not text.strip():
        raise ConfigError("--text must not be empty")
    max_positions = max(256, positions)
    if model.startswith("tiny-"):
        from .tiny import tiny_model

        if kv_qmax != 127:
            raise ConfigError(f"the tiny models' K/V codes are int8 (kv_qmax 127), not kv_qmax={kv_qmax}: a config "
                              f"whose 4-bit weight port takes the cache as nibble planes runs the real models")
        if bits != 8:
            raise ConfigError(f"the tiny models have int8 weights; a config with {bits}-bit weights runs the "
                              f"real models (--model smollm2 or minilm)")
        m = tiny_model(model)
        _check_block(block, len(m.blocks), model)
        ids = np.frombuffer(_repeat(text, lambda t: len(t.encode()), positions).encode(), dtype=np.uint8)
        weights = m.int_blocks[block]
        if weights.max_positions < positions:
            raise ConfigError(f"{model} holds {weights.max_positions} positions, not {positions}")
        return BlockSource(model, block, weights, to_fx(m.hidden(ids[:positions].astype(np.int64), block)))
    from sparsa.models.real import minilm, smollm2

    from .real import minilm_block, minilm_hidden, smollm2_block, smollm2_hidden

    if model == "smollm2":
        m = smollm2.load()
        weights = smollm2_block(m, block, bits=bits, pattern=pattern, max_positions=max_positions, kv_qmax=kv_qmax)
        full = _repeat(text, lambda t: len(m.tokenize(t)), positions)
        hidden = smollm2_hidden(m, full, block)
    else:
        m = minilm.load()
        weights = minilm_block(m, block, bits=bits, pattern=pattern, max_positions=max_positions, kv_qmax=kv_qmax)
        full = _repeat(text, lambda t: m.tokenize([t])[0][0].size, positions)
        hidden = minilm_hidden(m, full, block)
    return BlockSource(model, block, weights, to_fx(hidden[:positions]))


def _check_block(block: int, n: int, model: str) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < n:
        raise ConfigError(f"--block must be in 0..{n - 1} for {model}, not {block!r}")
