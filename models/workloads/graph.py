"""Typed layer-graph IR for whole-model workloads.

Size: the layer-graph IR (op types, shapes, byte and MAC counts) and its checks; the op classes
share helpers and are small, so one module keeps the IR readable in one place.

A :class:`Workload` is an ordered tuple of operations with exact shapes:

* :class:`GemmLayer` - one GEMM ``(m x k) @ (k x n)`` with ``k`` the reduction axis,
  repeated ``count`` times on independent operands (attention heads, conv groups).
  The left operand ("activation", ``m x k``) streams; the right operand
  ("weight", ``k x n``) is a static weight, or for activation-activation GEMMs
  (``QK^T``, ``AV``) the KV cache.
* :class:`VectorOp` - element-wise / reduction work that costs memory traffic and
  vector-unit cycles but no MACs (norms, softmax, activations, embedding lookups).

Counting conventions (see ``docs/workloads.md``):

* ``macs`` counts what a dense accelerator computes: a causal attention score
  matrix is counted in full; :attr:`GemmLayer.useful_macs` gives the part
  inside the causal triangle.
* A prefill attention GEMM with a block-sparse policy (``attention_blocks``, from
  :mod:`sparsa.formats.attention_blocks`) still reports the dense ``macs``;
  :attr:`GemmLayer.kept_macs` counts the kept blocks a block-sparse engine computes and
  :attr:`GemmLayer.useful_macs` the kept blocks' pairs inside the causal triangle.
* Parameters of a layer whose weight is tied to another layer
  (``shares_weight_with``) are counted once, on the owner.

Every class is a frozen, slotted dataclass that checks its arguments on arrival
and raises :class:`sparsa.errors.ShapeError` / :class:`~sparsa.errors.FormatError`
with the bad value quoted.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from sparsa.errors import FormatError, ShapeError
from sparsa.formats import FORMATS
from sparsa.formats.attention_blocks import BlockPolicy, block_rows, kept_pairs
from sparsa.formats.nm import check_nm, parse_nm

__all__ = [
    "GemmKind",
    "VectorKind",
    "Phase",
    "NumberFormat",
    "ConvGeometry",
    "GemmLayer",
    "VectorOp",
    "Op",
    "KVCache",
    "Workload",
    "TransformerBlocks",
    "parse_sparsity",
]

#: What a GEMM computes; activation-activation kinds are ``attention_qk`` / ``attention_av``.
GemmKind: TypeAlias = Literal["linear", "conv", "attention_qk", "attention_av", "lm_head"]
#: Non-GEMM operations that cost memory traffic or vector-unit work.
VectorKind: TypeAlias = Literal[
    "embedding",
    "layernorm",
    "rmsnorm",
    "batchnorm",
    "softmax",
    "rope",
    "swiglu",
    "gelu",
    "relu",
    "tanh",
    "eltwise_add",
    "kv_write",
    "maxpool",
    "avgpool",
    "mean_pool",
    "l2norm",
]
#: Inference phase: LLM ``prefill`` / ``decode``, or one ``forward`` pass (encoders, CNNs).
Phase: TypeAlias = Literal["prefill", "decode", "forward"]

_GEMM_KINDS: frozenset[str] = frozenset(get_args(GemmKind))
_VECTOR_KINDS: frozenset[str] = frozenset(get_args(VectorKind))
_PHASES: frozenset[str] = frozenset(get_args(Phase))
_ACT_ACT_KINDS: frozenset[str] = frozenset({"attention_qk", "attention_av"})


class NumberFormat(enum.StrEnum):
    """Element format of a GEMM operand.

    The value is the spelling used in YAML (``int4``, ``ovp4``, ...).  Scales and
    N:M metadata are not part of the element width; the estimator adds them.
    """

    INT4 = "int4"
    INT8 = "int8"
    OVP4 = "ovp4"
    OVP8 = "ovp8"
    FP16 = "fp16"

    @property
    def bits(self) -> int:
        """Bits per stored element (``4``, ``8`` or ``16``), from :data:`sparsa.formats.FORMATS`."""
        return FORMATS[self.value].bits


#: The one pattern parser, :func:`sparsa.formats.nm.parse_nm`, under the IR's name:
#: ``"2:4"`` -> ``(2, 4)``, ``"dense"`` -> ``None``, FormatError otherwise.
parse_sparsity = parse_nm


def _positive(owner: str, field: str, value: object) -> None:
    if type(value) is not int or value < 1:
        raise ShapeError(f"{owner}: {field} must be a positive integer, not {value!r}")


def _nonnegative(owner: str, field: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise ShapeError(f"{owner}: {field} must be a non-negative integer, not {value!r}")


def _name_ok(cls: str, name: object) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ShapeError(f"{cls} name must be a non-empty string without outer spaces, not {name!r}")


@dataclass(frozen=True, slots=True)
class ConvGeometry:
    """Geometry of a 2-D convolution that a :class:`GemmLayer` lowers via im2col.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts of input and output feature maps.
    in_height, in_width : int
        Input feature-map size (before padding).
    kernel : tuple of int
        ``(kh, kw)``.
    stride, padding, dilation : tuple of int
        Per-axis ``(h, w)`` values, PyTorch semantics.
    groups : int
        Channel groups; each group is one GEMM instance (``count``).
    """

    in_channels: int
    out_channels: int
    in_height: int
    in_width: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        for f in ("in_channels", "out_channels", "in_height", "in_width", "groups"):
            _positive("ConvGeometry", f, getattr(self, f))
        for f, check in (
            ("kernel", _positive),
            ("stride", _positive),
            ("padding", _nonnegative),
            ("dilation", _positive),
        ):
            pair = getattr(self, f)
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ShapeError(f"ConvGeometry: {f} must be an (h, w) tuple, not {pair!r}")
            for v in pair:
                check("ConvGeometry", f, v)
        for f in ("in_channels", "out_channels"):
            if getattr(self, f) % self.groups:
                raise ShapeError(
                    f"ConvGeometry: {f} {getattr(self, f)} is not divisible by groups {self.groups}"
                )
        if self.out_height < 1 or self.out_width < 1:
            raise ShapeError(
                f"ConvGeometry: a {self.kernel} kernel (dilation {self.dilation}, padding "
                f"{self.padding}) does not fit a {self.in_height}x{self.in_width} input"
            )

    @property
    def out_height(self) -> int:
        """Output height ``floor((H + 2p - d(k-1) - 1) / s) + 1``."""
        return _conv_out(self.in_height, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0])

    @property
    def out_width(self) -> int:
        """Output width, same formula as :attr:`out_height` on the w axis."""
        return _conv_out(self.in_width, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1])


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True, slots=True)
class GemmLayer:
    """One GEMM ``(m x k) @ (k x n)``, repeated ``count`` times on independent operands.

    Parameters
    ----------
    name : str
        Unique dotted name inside the workload (``blocks.3.attn.q_proj``).
    m, k, n : int
        GEMM shape; ``k`` is the reduction axis (the axis N:M groups run along).
        Batch and sequence/spatial positions are folded into ``m``.
    kind : GemmKind
        ``linear``, ``conv`` (im2col-lowered), ``attention_qk``, ``attention_av``, ``lm_head``.
    count : int, default 1
        Independent instances, each with its own ``k x n`` operand (attention:
        batch x KV heads; conv: groups).  Totals multiply by it.
    weight_is_static : bool, default True
        False for activation-activation GEMMs: the ``k x n`` operand is the KV
        cache (bytes count as activations/KV), never a parameter and never N:M
        weight-sparse.  Must be False exactly for the attention kinds.
    bias : bool, default False
        Whether ``n`` bias values per instance are added (parameters, not MACs).
    shares_weight_with : str or None
        Name of the op that owns this weight (tied ``lm_head``); its parameters
        are counted there, but this layer still reads them.
    causal : bool, default False
        Attention only: keys past a query's position are masked.  ``macs`` still
        counts the full rectangle; see :attr:`useful_macs`.
    q_per_kv : int, default 1
        Attention only: query heads sharing one K/V head (GQA).  Rows of ``m`` are
        ``q_per_kv`` heads x query positions, so each KV head is read once.
    conv : ConvGeometry or None
        The convolution this GEMM lowers (``kind == "conv"`` only).
    sparsity : tuple of int or None
        ``(N, M)`` weight sparsity along ``k``; ``None`` is dense.
    weight_format, act_format : NumberFormat or None
        Element formats of the ``k x n`` and ``m x k`` operands; ``None`` means
        unassigned (the accelerator default applies).
    attention_blocks : BlockPolicy or None
        Causal prefill attention only (``queries == keys``): the block-sparse policy that
        decides which (query-block, key-block) pairs are computed; ``None`` is the dense
        rectangle.  See :attr:`block_rows` and :attr:`kept_macs`.
    """

    name: str
    m: int
    k: int
    n: int
    kind: GemmKind
    count: int = 1
    weight_is_static: bool = True
    bias: bool = False
    shares_weight_with: str | None = None
    causal: bool = False
    q_per_kv: int = 1
    conv: ConvGeometry | None = None
    sparsity: tuple[int, int] | None = None
    weight_format: NumberFormat | None = None
    act_format: NumberFormat | None = None
    attention_blocks: BlockPolicy | None = None

    def __post_init__(self) -> None:
        _name_ok("GemmLayer", self.name)
        who = f"GemmLayer {self.name!r}"
        for f in ("m", "k", "n", "count", "q_per_kv"):
            _positive(who, f, getattr(self, f))
        if self.kind not in _GEMM_KINDS:
            raise ShapeError(f"{who}: kind must be one of {sorted(_GEMM_KINDS)}, not {self.kind!r}")
        act_act = self.kind in _ACT_ACT_KINDS
        if self.weight_is_static is act_act:
            raise ShapeError(
                f"{who}: weight_is_static={self.weight_is_static!r} contradicts kind {self.kind!r} "
                "(only attention_qk/attention_av multiply two activations)"
            )
        if not act_act and (self.causal or self.q_per_kv != 1):
            raise ShapeError(f"{who}: causal/q_per_kv apply to attention GEMMs only, not {self.kind!r}")
        if act_act and (self.bias or self.shares_weight_with is not None):
            raise ShapeError(f"{who}: an activation-activation GEMM has no bias or shared weight")
        if self.m % self.q_per_kv:
            raise ShapeError(f"{who}: m {self.m} is not a multiple of q_per_kv {self.q_per_kv}")
        if (self.kind == "conv") is (self.conv is None):
            raise ShapeError(f"{who}: conv geometry must be given exactly for kind 'conv'")
        if self.sparsity is not None:
            if not isinstance(self.sparsity, tuple) or len(self.sparsity) != 2:
                raise FormatError(f"{who}: sparsity must be an (N, M) tuple or None, not {self.sparsity!r}")
            check_nm(*self.sparsity)
            if act_act:
                raise FormatError(
                    f"{who}: N:M sparsity {self.sparsity[0]}:{self.sparsity[1]} needs a static weight; "
                    f"{self.kind} multiplies activations by the KV cache"
                )
        for f in ("weight_format", "act_format"):
            v = getattr(self, f)
            if v is not None and not isinstance(v, NumberFormat):
                raise FormatError(f"{who}: {f} must be a NumberFormat or None, not {v!r}")
        if self.attention_blocks is not None:
            if not isinstance(self.attention_blocks, BlockPolicy):
                raise FormatError(f"{who}: attention_blocks must be a BlockPolicy or None, not {self.attention_blocks!r}")
            if not (act_act and self.causal and self._queries_keys[0] == self._queries_keys[1]):
                raise ShapeError(f"{who}: a block-sparse attention policy needs a causal prefill attention GEMM "
                                 f"(queries == keys), not kind {self.kind!r} with causal={self.causal!r}")

    @property
    def _queries_keys(self) -> tuple[int, int]:
        """Attention: ``(query positions, keys)`` of one head."""
        return self.m // self.q_per_kv, self.n if self.kind == "attention_qk" else self.k

    @property
    def _width(self) -> int:
        """Attention: the axis that is neither queries nor keys (head dim)."""
        return self.k if self.kind == "attention_qk" else self.n

    @property
    def block_rows(self) -> tuple[tuple[int, int], ...] | None:
        """Per query block ``(query rows, kept keys)`` of a block-sparse layer, else ``None``
        (:func:`sparsa.formats.attention_blocks.block_rows`; rows per head, kept keys in tokens)."""
        if self.attention_blocks is None:
            return None
        return block_rows(self.attention_blocks, *self._queries_keys, causal=True)

    @property
    def kept_macs(self) -> int:
        """MACs a block-sparse engine computes: whole kept blocks (:attr:`macs` without a policy)."""
        rows = self.block_rows
        if rows is None:
            return self.macs
        return self.q_per_kv * sum(r * kept for r, kept in rows) * self._width * self.count

    @property
    def macs(self) -> int:
        """Multiply-accumulates a dense engine performs: ``m * k * n * count``."""
        return self.m * self.k * self.n * self.count

    @property
    def useful_macs(self) -> int:
        """MACs inside the causal mask and the kept blocks (equal to :attr:`macs` unless ``causal``).

        Query row ``i`` of ``q = m / q_per_kv`` rows sits at position
        ``keys - q + i`` and sees ``keys - q + i + 1`` keys, where ``keys`` is ``n``
        for ``attention_qk`` and ``k`` for ``attention_av``.
        """
        if not self.causal:
            return self.macs
        queries, keys = self._queries_keys
        if self.attention_blocks is not None:
            visible = kept_pairs(self.attention_blocks, queries, keys, causal=True)
        else:
            visible = queries * (keys - queries) + queries * (queries + 1) // 2
        return self.q_per_kv * visible * self._width * self.count

    @property
    def weight_elements(self) -> int:
        """Elements of the ``k x n`` operand over all instances (weights or KV cache)."""
        return self.k * self.n * self.count

    @property
    def input_elements(self) -> int:
        """Elements of the ``m x k`` operand over all instances (im2col-expanded for conv)."""
        return self.m * self.k * self.count

    @property
    def output_elements(self) -> int:
        """Elements of the ``m x n`` result over all instances."""
        return self.m * self.n * self.count

    @property
    def params(self) -> int:
        """Trainable parameters this layer owns (0 for KV operands and tied weights)."""
        if not self.weight_is_static or self.shares_weight_with is not None:
            return 0
        return self.weight_elements + (self.n * self.count if self.bias else 0)


@dataclass(frozen=True, slots=True)
class VectorOp:
    """A non-GEMM operation: memory traffic and vector work, no MACs.

    Parameters
    ----------
    name : str
        Unique dotted name inside the workload.
    elements : int
        Output elements produced (over the whole batch).
    kind : VectorKind
        What the op computes (``softmax``, ``rmsnorm``, ``embedding``, ...).
    input_elements : int or None
        Activation elements read; ``None`` means equal to ``elements``.  Two-input
        ops (residual add, SwiGLU) read twice their output.
    params : int, default 0
        Parameters the op owns (norm gains/biases, embedding tables).
    row_length : int or None
        Elements per row: ``elements`` is :attr:`rows` rows of this many (a norm's ``d_model``,
        a softmax's keys, RoPE's ``head_dim``, an activation's FFN width, a channel vector);
        ``None`` means one row of all ``elements``.  Row operations (norms, softmax) cost per
        row, so a vector unit needs it.
    causal_queries : int, default 0
        Softmax only: 0 for no mask; else the rows form blocks of this many consecutive query
        positions (one head's queries), query ``i`` of a block seeing keys
        ``j <= row_length - causal_queries + i``.
    """

    name: str
    elements: int
    kind: VectorKind
    input_elements: int | None = None
    params: int = 0
    row_length: int | None = None
    causal_queries: int = 0

    def __post_init__(self) -> None:
        _name_ok("VectorOp", self.name)
        who = f"VectorOp {self.name!r}"
        _positive(who, "elements", self.elements)
        if self.input_elements is not None:
            _positive(who, "input_elements", self.input_elements)
        _nonnegative(who, "params", self.params)
        if self.kind not in _VECTOR_KINDS:
            raise ShapeError(f"{who}: kind must be one of {sorted(_VECTOR_KINDS)}, not {self.kind!r}")
        if self.row_length is not None:
            _positive(who, "row_length", self.row_length)
            if self.elements % self.row_length:
                raise ShapeError(f"{who}: elements {self.elements} are not whole rows of row_length {self.row_length}")
        _nonnegative(who, "causal_queries", self.causal_queries)
        if self.causal_queries:
            if self.kind != "softmax":
                raise ShapeError(f"{who}: causal_queries applies to softmax, not {self.kind!r}")
            if self.rows % self.causal_queries or self.causal_queries > self.length:
                raise ShapeError(f"{who}: causal_queries {self.causal_queries} must divide the {self.rows} rows "
                                 f"and not exceed the row length {self.length}")

    @property
    def length(self) -> int:
        """Elements per row (:attr:`row_length`, or ``elements`` when it is ``None``)."""
        return self.elements if self.row_length is None else self.row_length

    @property
    def rows(self) -> int:
        """Rows: ``elements / length``."""
        return self.elements // self.length

    @property
    def reads(self) -> int:
        """Activation elements read (``input_elements`` or ``elements``)."""
        return self.elements if self.input_elements is None else self.input_elements


#: One node of a workload.
Op: TypeAlias = GemmLayer | VectorOp


@dataclass(frozen=True, slots=True)
class KVCache:
    """Size of an LLM's key/value cache after the modelled step.

    Parameters
    ----------
    n_layers : int
        Decoder blocks (each holds one K and one V cache).
    batch : int
        Sequences.
    n_kv_heads, head_dim : int
        KV heads and their width.
    entries : int
        Cached positions per sequence after the step (prefill: ``L``; decode at
        context ``L``: ``L + 1``).
    element_bits : int, default 16
        Bits per cached element (fp16 unless a workload file sets ``kv_cache``).
    """

    n_layers: int
    batch: int
    n_kv_heads: int
    head_dim: int
    entries: int
    element_bits: int = 16

    def __post_init__(self) -> None:
        for f in ("n_layers", "batch", "n_kv_heads", "head_dim", "entries", "element_bits"):
            _positive("KVCache", f, getattr(self, f))

    @property
    def elements_per_layer(self) -> int:
        """``2 * batch * n_kv_heads * head_dim * entries`` (K and V)."""
        return 2 * self.batch * self.n_kv_heads * self.head_dim * self.entries

    @property
    def bytes_per_layer(self) -> int:
        """Bytes of K and V in one block, rounded up to whole bytes."""
        return -(-self.elements_per_layer * self.element_bits // 8)

    @property
    def total_bytes(self) -> int:
        """Bytes over all blocks."""
        return self.bytes_per_layer * self.n_layers



@dataclass(frozen=True)
class TransformerBlocks:
    """The repeated blocks of a transformer workload: ``count`` blocks of structure ``spec``
    (a :class:`sparsa.models.block.spec.BlockSpec`), their linear layers with biases or not.

    The layers of block ``i`` are the workload's ``blocks.{i}.*``; their N:M patterns are read
    from the layer graph (:meth:`Workload.block_patterns`), so a workload file's overrides count.
    """

    spec: Any
    count: int
    biases: bool = False


@dataclass(frozen=True, slots=True)
class Workload:
    """An ordered layer graph with exact shapes.

    Parameters
    ----------
    name : str
        Model name (registry key, e.g. ``llama2-7b``).
    phase : Phase
        ``prefill``, ``decode`` or ``forward``.
    batch : int
        Sequences or images.
    context : int or None
        Prefill: prompt length; decode: tokens already cached; encoder: sequence
        length; ``None`` for CNNs and MLPs.
    layers : tuple of GemmLayer and VectorOp
        Operations in execution order, names unique.
    kv_cache : KVCache or None
        KV cache of decoder LLMs.
    source : str
        Where the hyperparameters came from (published config, GGUF file, ...).
    block : TransformerBlocks or None
        Transformers: the structure of their ``blocks.{i}`` (what the machine compiles, one
        program per block; :func:`sparsa.compiler.block.block_cycles`); None otherwise.
    """

    name: str
    phase: Phase
    batch: int
    context: int | None
    layers: tuple[Op, ...]
    kv_cache: KVCache | None = None
    source: str = ""
    block: "TransformerBlocks | None" = None

    def __post_init__(self) -> None:
        _name_ok("Workload", self.name)
        if self.phase not in _PHASES:
            raise ShapeError(f"Workload {self.name!r}: phase must be one of {sorted(_PHASES)}, not {self.phase!r}")
        _positive(f"Workload {self.name!r}", "batch", self.batch)
        if self.context is not None:
            _positive(f"Workload {self.name!r}", "context", self.context)
        if not isinstance(self.layers, tuple) or not self.layers:
            raise ShapeError(f"Workload {self.name!r}: layers must be a non-empty tuple, not {self.layers!r}")
        seen: set[str] = set()
        for op in self.layers:
            if not isinstance(op, GemmLayer | VectorOp):
                raise ShapeError(f"Workload {self.name!r}: not a GemmLayer or VectorOp: {op!r}")
            if op.name in seen:
                raise ShapeError(f"Workload {self.name!r}: duplicate layer name {op.name!r}")
            seen.add(op.name)
        for g in self.gemms():
            if g.shares_weight_with is not None and g.shares_weight_with not in seen:
                raise ShapeError(
                    f"Workload {self.name!r}: {g.name!r} shares the weight of unknown op {g.shares_weight_with!r}"
                )

    def __iter__(self) -> Iterator[Op]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def gemms(self) -> Iterator[GemmLayer]:
        """Iterate over the GEMM layers in order."""
        return (op for op in self.layers if isinstance(op, GemmLayer))

    def vector_ops(self) -> Iterator[VectorOp]:
        """Iterate over the vector operations in order."""
        return (op for op in self.layers if isinstance(op, VectorOp))

    def layer(self, name: str) -> Op:
        """Return the op called ``name``.

        Raises
        ------
        KeyError
            If no op has that name (the message quotes it).
        """
        for op in self.layers:
            if op.name == name:
                return op
        raise KeyError(f"workload {self.name!r} has no layer {name!r}")

    @property
    def total_macs(self) -> int:
        """MACs a dense engine performs over the whole graph."""
        return sum(g.macs for g in self.gemms())

    @property
    def useful_macs(self) -> int:
        """MACs outside causal masks (and inside kept attention blocks)."""
        return sum(g.useful_macs for g in self.gemms())

    @property
    def kept_macs(self) -> int:
        """MACs a block-sparse engine computes (:attr:`GemmLayer.kept_macs` summed)."""
        return sum(g.kept_macs for g in self.gemms())

    def macs_by_kind(self) -> dict[str, int]:
        """Dense MACs per :data:`GemmKind`, in first-seen order."""
        out: dict[str, int] = {}
        for g in self.gemms():
            out[g.kind] = out.get(g.kind, 0) + g.macs
        return out

    @property
    def weight_params(self) -> int:
        """Static GEMM weights and biases (tied weights once, KV operands excluded)."""
        return sum(g.params for g in self.gemms())

    @property
    def total_params(self) -> int:
        """All parameters: :attr:`weight_params` plus embeddings and norm gains."""
        return self.weight_params + sum(v.params for v in self.vector_ops())

    def block_patterns(self, i: int = 0) -> dict[str, str]:
        """N:M pattern (``"N:M"`` or ``"dense"``) of each linear layer of block ``i``, by the block
        spec's layer names (``q, k, v, o, gate, up, down``; ``fc1`` is ``up``, ``fc2`` ``down``)."""
        names = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate",
                 "up_proj": "up", "down_proj": "down", "fc1": "up", "fc2": "down"}
        out = {}
        for g in self.gemms():
            prefix, _, leaf = g.name.rpartition(".")
            if prefix.startswith(f"blocks.{i}.") and leaf in names and g.sparsity is not None:
                n, m = g.sparsity
                out[names[leaf]] = f"{n}:{m}" if n < m else "dense"
        return out

    def replace_layers(self, layers: tuple[Op, ...]) -> Workload:
        """Return a copy with ``layers`` substituted (checked again)."""
        return dataclasses.replace(self, layers=layers)
