"""Compression schemes: their vocabulary, the weight compressor and the activation quantizers.

The evaluation drivers that run these schemes on real models are :mod:`sparsa.models.compression.evaluate`.

A *scheme* is (weight format, activation format, sparsity):

* weights: ``fp32``; ``int8`` / ``int4`` symmetric per output channel (narrow range, MSE clipping
  search); ``ovp4`` / ``ovp8`` OliVe outlier-victim pairs with per-row MSE scales (OVP-4 picks
  int4 or flint4 normals per tensor).
* activations (the input of every quantized linear layer): ``none`` (weight-only), ``int8`` /
  ``int4`` per tensor, ``ovp4`` / ``ovp8`` per tensor; scales calibrated by MSE on data that is
  disjoint from the evaluation data, on the model whose weights are already compressed.
  Dynamic scales (no calibration; :mod:`sparsa.formats.actscale`): ``int8/token`` /
  ``int4/token`` (one scale per token) and ``int8/gN`` / ``int4/gN`` (one scale per token and
  group of ``N`` consecutive input elements, e.g. ``int8/g128``), computed from each input with
  the accelerator's exact fixed-point scales (``mantissa * 2**-exponent``, 16-bit mantissas
  by default, one shared exponent per tensor, mantissas rounded up so nothing clips); the
  fake-quantized input is ``codes * s_hat`` (:func:`parse_acts`).
* sparsity: ``dense`` or ``N:M`` (magnitude pruning of groups of M consecutive weights along the
  input axis with :func:`sparsa.formats.nm.compress`); quantization then runs on the
  compressed values of each row (N:M order: group by group, kept values in increasing index
  order), which is also how OVP pairs are formed in memory.

Calibrated pruning (``Scheme.prune`` = ``magnitude`` / ``wanda`` / ``sparsegpt``, see
:mod:`sparsa.models.compression.pruning`): the sparse weights come from one-shot pruning calibrated on
text disjoint from the evaluation data (MiniLM: the sentences of the last ``calib_samples`` Lee articles;
SmolLM2: the last ``calib_samples`` 256-token Lee chunks), sequentially (layer L+1 sees the
already pruned and quantized layers), jointly with the weight quantization (SparseGPT quantizes
inside its sweep, GPTQ-style).  Without ``prune`` the N:M path is the plain magnitude pruning
described above.

Only the projection layers inside the transformer blocks are compressed (MiniLM: 36, SmolLM2:
210); embeddings, norms and the LM head stay as loaded.

Metrics: MiniLM mean / minimum cosine between compressed and fp32 sentence embeddings;
SmolLM2 perplexity on held-out 256-token chunks of the Lee corpus.  Memory: bytes per dense
weight including fp32 per-row scales, per-tensor format tags, N:M indices (``log2 M`` bits per
kept value) and padding of every row to whole bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from sparsa.errors import FormatError

from sparsa.formats import FORMATS, actscale, intq, nm, ovp

from . import pruning

__all__ = [
    "WEIGHT_FORMATS",
    "ACT_FORMATS",
    "ACT_NAMES_HELP",
    "parse_acts",
    "act_name",
    "Scheme",
    "CompressedLayer",
    "parse_sparsity",
    "compress_weight",
    "ActQuant",
    "DynamicActQuant",
    "fake_quant_dynamic",
    "grid",
    "PruneOptions",
    "FINETUNE_LOSSES",
    "QAT_FORMATS",
    "QAT_SCALE_EVERY",
    "QAT_FINAL_SCALES",
    "MINILM_FINETUNE",
    "SMOLLM2_FINETUNE",
]

#: Weight formats: fp32 (not quantized) and every quantized format of :data:`sparsa.formats.FORMATS`.
WEIGHT_FORMATS: tuple[str, ...] = pruning.WEIGHT_FORMATS
#: Per-tensor activation formats: ``none`` (weight-only) and every quantized format.
ACT_FORMATS: tuple[str, ...] = ("none",) + tuple(f.name for f in FORMATS.values() if f.quantized)
#: Losses :func:`~sparsa.models.compression.finetune.finetune_smollm2` accepts.
FINETUNE_LOSSES: tuple[str, ...] = ("kl", "hidden", "kl+hidden")
#: Weight formats that fine-tune quantization-aware (``weight_format=``); ``"fp32"`` / None train in float.
QAT_FORMATS: tuple[str, ...] = tuple(f.name for f in FORMATS.values() if f.quantized)
#: Default steps between two scale searches in quantization-aware fine-tuning (0: searched at step 1 only).
QAT_SCALE_EVERY = 0
#: How QAT quantizes the final master weights: ``"held"`` (the scales of the last search during
#: training) or ``"search"`` (a fresh search on the final masters).
QAT_FINAL_SCALES: tuple[str, ...] = ("held", "search")
#: The activation names :func:`parse_acts` accepts, for error messages and ``--help``.
ACT_NAMES_HELP = ("none, int8, int4, ovp4, ovp8 (per-tensor static), int8/token, int4/token (dynamic per token), "
                  "int8/gN, int4/gN (dynamic per token and group of N inputs, e.g. int8/g128)")
_DYNAMIC_RE = re.compile(r"(int8|int4)/(token|g([1-9]\d*))")


def parse_acts(name: str, mantissa_bits: int = 16) -> "tuple[str, actscale.ActScaleSpec]":
    """Split an activation name into (base format, scale granularity).

    ``"int8"`` -> ``("int8", tensor)`` (static per-tensor, calibrated); ``"int8/token"`` ->
    ``("int8", token)``; ``"int4/g64"`` -> ``("int4", group 64)``; ``"none"`` and the OVP
    formats are per tensor.

    Parameters
    ----------
    name : str
        Activation name (see :data:`ACT_NAMES_HELP`).
    mantissa_bits : int
        Scale-mantissa width of the dynamic granularities.

    Raises
    ------
    FormatError
        An unknown name (one line listing the valid names).
    """
    if isinstance(name, str) and name in ACT_FORMATS:
        return name, actscale.ActScaleSpec("tensor", mantissa_bits=mantissa_bits)
    m = _DYNAMIC_RE.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise FormatError(f"unknown activation format {name!r}; expected one of {ACT_NAMES_HELP}")
    if m.group(2) == "token":
        return m.group(1), actscale.ActScaleSpec("token", mantissa_bits=mantissa_bits)
    return m.group(1), actscale.ActScaleSpec("group", group=int(m.group(3)), mantissa_bits=mantissa_bits)


def act_name(fmt: str, spec: "actscale.ActScaleSpec") -> str:
    """Inverse of :func:`parse_acts`: ``("int8", group 128)`` -> ``"int8/g128"``."""
    if spec.granularity == "tensor":
        return fmt
    if fmt not in ("int8", "int4"):
        raise FormatError(f"activation format {fmt!r} has per-tensor scales only, not {spec.granularity!r}")
    return f"{fmt}/token" if spec.granularity == "token" else f"{fmt}/g{spec.group}"


#: The one pattern parser, :func:`sparsa.formats.nm.parse_nm`, under the schemes' name:
#: ``"dense"`` -> None, ``"N:M"`` -> ``(N, M)`` (FormatError otherwise).
parse_sparsity = nm.parse_nm


@dataclass(frozen=True)
class Scheme:
    """One compression scheme; construction checks the names."""

    weights: str = "fp32"
    acts: str = "none"
    sparsity: str = "dense"
    #: calibrated pruning method (``magnitude``, ``wanda``, ``sparsegpt``); None = plain N:M magnitude
    prune: "str | None" = None
    #: scale-mantissa width of dynamic activation scales (``int8/token``, ``int4/g64`` ...)
    act_mantissa_bits: int = 16

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_FORMATS:
            raise FormatError(f"unknown weight format {self.weights!r}; expected one of {', '.join(WEIGHT_FORMATS)}")
        parse_acts(self.acts, self.act_mantissa_bits)
        if self.prune is None:
            nm.parse_nm(self.sparsity)
            return
        if self.prune not in pruning.METHODS:
            raise FormatError(f"unknown pruning method {self.prune!r}; expected one of {', '.join(pruning.METHODS)}")
        if self.sparsity != "dense":
            pruning.parse_sparsity(self.sparsity)  # N:M or an unstructured fraction

    @property
    def pruned(self) -> bool:
        """True when the weights come from calibrated pruning."""
        return self.prune is not None and self.sparsity != "dense"

    @property
    def label(self) -> str:
        """``W<weights>/A<acts>/<sparsity>[/<prune>]``."""
        return f"W{self.weights}/A{self.acts}/{self.sparsity}" + (f"/{self.prune}" if self.pruned else "")


def grid(weights: Iterable[str], acts: Iterable[str], sparsity: Iterable[str],
         prune: "Iterable[str] | None" = None, *, act_mantissa_bits: int = 16) -> list[Scheme]:
    """All schemes of the cartesian product, in (sparsity, prune, weights, acts) order.

    With ``prune`` (methods), every sparse pattern is evaluated with each method; ``dense``
    appears once.  ``act_mantissa_bits`` applies to the dynamic activation scales.
    """
    methods = list(prune) if prune is not None else [None]
    out = []
    for s in sparsity:
        for p in (methods if s != "dense" else methods[:1]):
            out += [Scheme(w, a, s, p if s != "dense" else None, act_mantissa_bits)
                    for w in weights for a in acts]
    return out


@dataclass(frozen=True)
class PruneOptions:
    """Calibration settings of calibrated pruning (see :mod:`sparsa.models.compression.pruning`).

    Attributes
    ----------
    calib_samples : int or None
        MiniLM: Lee articles, split into sentences (default 64, ~16.5k tokens); SmolLM2: 256-token
        chunks (default 16, 4096 tokens).  Both are taken from the end of the corpus, disjoint from the evaluation data.
    damp : float
        SparseGPT dampening (fraction of the mean Hessian diagonal).
    blocksize : int
        SparseGPT column block.
    config : AcceleratorConfig or None
        Check every pattern against this accelerator first; OVP pairs form on its slots.
    target : str
        ``"pruned"`` or ``"dense"`` (see :func:`sparsa.models.compression.pruning.prune_layer`).
    finetune_steps : int
        After pruning, this many steps of masked distillation against the dense model
        (:func:`sparsa.models.compression.finetune.finetune_minilm`: hidden states;
        :func:`~sparsa.models.compression.finetune.finetune_smollm2`: ``finetune_loss``), in float from the
        method's fp32 pruned weights; int8 / OVP-4 rows quantize the fine-tuned weights (same
        masks), or, with ``finetune_qat``, are fine-tuned each on their own format.  0 = no
        fine-tuning.
    finetune_qat : bool
        Quantization-aware fine-tuning: every quantized weight format is fine-tuned separately
        with its quantizer in the forward pass (straight-through estimator; ``weight_format=`` of
        :func:`~sparsa.models.compression.finetune.finetune_minilm`), from the same fp32 pruned weights and
        masks; the fp32 row is the float fine-tuning.  Rows say ``+qatSTEPS`` instead of ``+ftSTEPS``.
    finetune_scale_every : int
        QAT: steps between per-row scale searches (0 = frozen after step 1, the default
        :data:`QAT_SCALE_EVERY`).
    finetune_final_scales : str
        QAT: the final masters are quantized on the scales of the last search (``"held"``) or
        with a fresh search (``"search"``).
    finetune_lr, finetune_batch : float or None, int or None
        Peak learning rate (Adam, cosine decay) and sentences (MiniLM) / sequences (SmolLM2) per
        step; None = the model's default (MiniLM 3e-4 and 16, SmolLM2 :data:`SMOLLM2_FINETUNE`).
    finetune_seq : int
        SmolLM2: tokens per training sequence (the 256-token training chunks cut into pieces).
    finetune_loss : str
        SmolLM2: ``kl``, ``hidden`` or ``kl+hidden`` (see :mod:`sparsa.models.compression.finetune`).
    """

    calib_samples: "int | None" = None
    damp: float = 0.01
    blocksize: int = 128
    config: object = None
    target: str = "pruned"
    finetune_steps: int = 0
    finetune_lr: "float | None" = None
    finetune_batch: "int | None" = None
    finetune_seq: int = 256
    finetune_loss: str = "kl"
    finetune_qat: bool = False
    finetune_scale_every: int = QAT_SCALE_EVERY
    finetune_final_scales: str = "held"

    def lr_batch(self, model: str) -> tuple[float, int]:
        """(learning rate, batch) for ``model`` (``"minilm"`` / ``"smollm2"``), defaults filled in."""
        lr, batch = MINILM_FINETUNE if model == "minilm" else SMOLLM2_FINETUNE
        return (lr if self.finetune_lr is None else self.finetune_lr,
                batch if self.finetune_batch is None else self.finetune_batch)



#: Default (learning rate, batch) of MiniLM fine-tuning: 16 sentences per step.
MINILM_FINETUNE: tuple[float, int] = (3e-4, 16)
#: Default (learning rate, batch) of SmolLM2 fine-tuning: sequences of ``finetune_seq`` tokens per step.
SMOLLM2_FINETUNE: tuple[float, int] = (1e-4, 1)


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressedLayer:
    """A compressed weight: its dense float32 reconstruction and storage accounting.

    Attributes
    ----------
    weight : np.ndarray
        ``[out, in]`` float32, exactly what the stored codes decode to (zeros where pruned).
    nbytes : int
        Storage: values + scales + format tag + N:M indices, each row padded to whole bytes.
    n_weights : int
        Dense weight count ``out * in``.
    outliers : int
        Elements stored as OVP outliers (0 for other formats).
    normal : str
        OVP normal type chosen for this tensor (``""`` for other formats).
    scale : np.ndarray or None
        float32 ``[out, 1]`` per-row scales of the stored values (None for fp32); pass the layer
        as ``compress_weight(..., scales_from=layer)`` to quantize other values on the same grid.
    """

    weight: np.ndarray
    nbytes: int
    n_weights: int
    outliers: int = 0
    normal: str = ""
    scale: "np.ndarray | None" = field(default=None, repr=False)


def _quantize_rows(values: np.ndarray, fmt: str, name: str, scales_from: "CompressedLayer | None" = None,
                   ) -> tuple[np.ndarray, int, int, str, "np.ndarray | None"]:
    """Quantize a row-major [rows, cols] block; returns (dequantized, bytes, outliers, normal, scales).

    The per-row scales (and the OVP normal type) are searched by MSE, or taken from
    ``scales_from`` (a :class:`CompressedLayer` of the same format and row count).
    """
    rows, cols = values.shape
    if fmt == "fp32":
        return values, 4 * values.size, 0, "", None
    if scales_from is not None:
        s_given = scales_from.scale
        if s_given is None or np.shape(s_given) != (rows, 1) or (fmt.startswith("ovp") != bool(scales_from.normal)):
            raise FormatError(f"{name}: scales_from must be a {fmt} layer with {rows} row scales, got scale shape "
                              f"{None if s_given is None else np.shape(s_given)} and OVP normal {scales_from.normal!r}")
    if fmt in ("int8", "int4"):
        bits = FORMATS[fmt].bits
        s = intq.search_int_scale(values, bits, "row") if scales_from is None else scales_from.scale
        deq = intq.dequantize_int(intq.quantize_int(values, s, bits, name=name), s)
        return deq, rows * (-(-cols * bits // 8) + 4), 0, "", s
    padded = values if cols % 2 == 0 else np.concatenate([values, np.zeros((rows, 1), np.float32)], axis=1)
    if scales_from is None:
        t = ovp.quantize_weight(padded, FORMATS[fmt].bits, name=name)
    else:
        fm = ovp.get_format(scales_from.normal)
        if fm.bits != FORMATS[fmt].bits:
            raise FormatError(f"{name}: scales_from is {scales_from.normal!r}, not a {fmt} layer")
        t = ovp.OVPTensor(ovp.encode(padded, scales_from.scale, fm, name=name), scales_from.scale, fm)
    return t.dequantize()[:, :cols], t.nbytes, _count_victims(t), t.fmt.name, t.scale


def _count_victims(t: ovp.OVPTensor) -> int:
    """Number of pairs holding an outlier (= number of victim codes)."""
    if t.fmt.bits == 4:
        return int(np.count_nonzero((t.codes & 0xF) == 8) + np.count_nonzero((t.codes >> 4) == 8))
    return int(np.count_nonzero(t.codes == t.fmt.victim_code))


def compress_weight(w: np.ndarray, fmt: str, sparsity: str = "dense", *, name: str = "weight",
                    scales_from: "CompressedLayer | None" = None) -> CompressedLayer:
    """Prune (optionally) and quantize one weight ``[out, in]``.

    Parameters
    ----------
    w : np.ndarray
        float32 weight, rows = output channels, columns = reduction axis.
    fmt : str
        One of :data:`WEIGHT_FORMATS`.
    sparsity : str
        ``"dense"`` or ``"N:M"``.
    name : str
        Layer name for error messages.
    scales_from : CompressedLayer, optional
        Reuse this layer's per-row scales and OVP normal type instead of searching them (same
        format and shape; quantization-aware fine-tuning holds scales between refreshes).
        ``compress_weight(w, f, s, scales_from=compress_weight(w, f, s))`` equals
        ``compress_weight(w, f, s)`` exactly.

    Raises
    ------
    FormatError
        Unknown format or pattern, NaN / inf, or ``scales_from`` of another format or row count.
    """
    if fmt not in WEIGHT_FORMATS:
        raise FormatError(f"unknown weight format {fmt!r}; expected one of {', '.join(WEIGHT_FORMATS)}")
    wf = intq.check_finite(w, name)
    pattern = nm.parse_nm(sparsity)
    if pattern is None:
        deq, nbytes, outliers, normal, scale = _quantize_rows(wf, fmt, name, scales_from)
        return CompressedLayer(deq.astype(np.float32), nbytes, wf.size, outliers, normal, scale)
    n, m = pattern
    c = nm.compress(wf, n, m, axis=1)
    deq, nbytes, outliers, normal, scale = _quantize_rows(np.ascontiguousarray(c.values, dtype=np.float32), fmt, name,
                                                          scales_from)
    index_bytes = wf.shape[0] * (-(-c.values.shape[1] * c.index_bits // 8))
    dense = nm.decompress(replace(c, values=deq.astype(np.float32)))
    return CompressedLayer(dense.astype(np.float32), nbytes + index_bytes, wf.size, outliers, normal, scale)


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActQuant:
    """Per-tensor activation quantizers, one per linear layer; call it as the model hook."""

    fmt: str
    scales: dict[str, float]
    ovp_formats: dict[str, str] = field(default_factory=dict)

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        s = np.float32(self.scales[name])
        if self.fmt in ("int8", "int4"):
            return intq.fake_quant_int(x.astype(np.float32), s, FORMATS[self.fmt].bits).astype(np.float32)
        return ovp.fake_quant(x.astype(np.float32), s, self.ovp_formats[name]).astype(np.float32)


@dataclass(frozen=True)
class DynamicActQuant:
    """Dynamic per-token / per-group int activation fake-quantizer; call it as the model hook.

    Every call quantizes its input ``x[..., K]`` (viewed as ``[T, K]``, ``T`` = all leading axes)
    with :func:`~sparsa.formats.actscale.quantize_activations_dynamic` - exactly the
    fixed-point scales the accelerator multiplies by (one shared exponent per call) - and returns
    ``codes * s_hat`` as float32.  No calibration.
    """

    fmt: str
    spec: actscale.ActScaleSpec

    def __post_init__(self) -> None:
        if self.fmt not in ("int8", "int4") or not self.spec.dynamic:
            raise FormatError(f"dynamic activation scales need int8/int4 and granularity token/group, "
                              f"not {self.fmt!r} / {self.spec.granularity!r}")

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        x2 = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
        q = actscale.quantize_activations_dynamic(x2, self.spec, FORMATS[self.fmt].bits, name=name)
        return fake_quant_dynamic(q).reshape(x.shape).astype(np.float32)


def fake_quant_dynamic(act: actscale.ScaledActivations) -> np.ndarray:
    """float64 ``codes * s_hat`` of dynamically scaled activations (``[T, K]``)."""
    s = act.scale
    k = act.codes.shape[1]
    if act.spec.granularity == "group":
        assert act.spec.group is not None
        s = np.repeat(s, act.spec.group, axis=1)[:, :k]
    return act.codes.astype(np.float64) * s
