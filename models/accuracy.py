"""Accuracy and memory of compression schemes on real models (MiniLM, SmolLM2).

A *scheme* is (weight format, activation format, sparsity):

* weights: ``fp32``; ``int8`` / ``int4`` symmetric per output channel (narrow range, MSE clipping
  search); ``ovp4`` / ``ovp8`` OliVe outlier-victim pairs with per-row MSE scales (OVP-4 picks
  int4 or flint4 normals per tensor).
* activations (the input of every quantized linear layer): ``none`` (weight-only), ``int8`` /
  ``int4`` per tensor, ``ovp4`` / ``ovp8`` per tensor; scales calibrated by MSE on data that is
  disjoint from the evaluation data, on the model whose weights are already compressed.
  Dynamic scales (no calibration; :mod:`sparsa.models.formats.actscale`): ``int8/token`` /
  ``int4/token`` (one scale per token) and ``int8/gN`` / ``int4/gN`` (one scale per token and
  group of ``N`` consecutive input elements, e.g. ``int8/g128``), computed from each input with
  the accelerator's exact fixed-point scales (``mantissa * 2**-exponent``, 16-bit mantissas
  by default, one shared exponent per tensor, mantissas rounded up so nothing clips); the
  fake-quantized input is ``codes * s_hat`` (:func:`parse_acts`).
* sparsity: ``dense`` or ``N:M`` (magnitude pruning of groups of M consecutive weights along the
  input axis with :func:`sparsa.models.formats.nm.compress`); quantization then runs on the
  compressed values of each row (N:M order: group by group, kept values in increasing index
  order), which is also how OVP pairs are formed in memory.

Calibrated pruning (``Scheme.prune`` = ``magnitude`` / ``wanda`` / ``sparsegpt``, see
:mod:`sparsa.compiler.pruning`): the sparse weights come from one-shot pruning calibrated on
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
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sparsa.errors import FormatError, ShapeError

from .formats import actscale, intq, nm, ovp

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
    "calibrate_acts",
    "act_quantizer",
    "grid",
    "PruneOptions",
    "MINILM_FINETUNE",
    "SMOLLM2_FINETUNE",
    "evaluate_minilm",
    "evaluate_smollm2",
    "minilm_calibration",
    "smollm2_calibration",
]

WEIGHT_FORMATS: tuple[str, ...] = ("fp32", "int8", "int4", "ovp4", "ovp8")
ACT_FORMATS: tuple[str, ...] = ("none", "int8", "int4", "ovp4", "ovp8")
_BITS = {"fp32": 32, "int8": 8, "int4": 4, "ovp4": 4, "ovp8": 8}
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


def parse_sparsity(spec: str) -> tuple[int, int] | None:
    """``"dense"`` -> None, ``"N:M"`` -> (N, M) with 1 <= N <= M (FormatError otherwise)."""
    if spec == "dense":
        return None
    m = re.fullmatch(r"(\d+):(\d+)", spec) if isinstance(spec, str) else None
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise FormatError(f"sparsity must be 'dense' or 'N:M' with 1 <= N <= M, not {spec!r}")
    return int(m.group(1)), int(m.group(2))


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
            parse_sparsity(self.sparsity)
            return
        from sparsa.compiler import pruning

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
    """Calibration settings of calibrated pruning (see :mod:`sparsa.compiler.pruning`).

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
        ``"pruned"`` or ``"dense"`` (see :func:`sparsa.compiler.pruning.prune_layer`).
    finetune_steps : int
        After pruning, this many steps of masked distillation against the dense model
        (:func:`sparsa.compiler.finetune.finetune_minilm`: hidden states;
        :func:`~sparsa.compiler.finetune.finetune_smollm2`: ``finetune_loss``), in float from the
        method's fp32 pruned weights; int8 / OVP-4 rows quantize the fine-tuned weights (same
        masks), or, with ``finetune_qat``, are fine-tuned each on their own format.  0 = no
        fine-tuning.
    finetune_qat : bool
        Quantization-aware fine-tuning: every quantized weight format is fine-tuned separately
        with its quantizer in the forward pass (straight-through estimator; ``weight_format=`` of
        :func:`~sparsa.compiler.finetune.finetune_minilm`), from the same fp32 pruned weights and
        masks; the fp32 row is the float fine-tuning.  Rows say ``+qatSTEPS`` instead of ``+ftSTEPS``.
    finetune_scale_every : int
        QAT: steps between per-row scale searches (0 = frozen after step 1, the default
        :data:`sparsa.compiler.finetune.QAT_SCALE_EVERY`).
    finetune_final_scales : str
        QAT: the final masters are quantized on the scales of the last search (``"held"``) or
        with a fresh search (``"search"``).
    finetune_lr, finetune_batch : float or None, int or None
        Peak learning rate (Adam, cosine decay) and sentences (MiniLM) / sequences (SmolLM2) per
        step; None = the model's default (MiniLM 3e-4 and 16, SmolLM2 :data:`SMOLLM2_FINETUNE`).
    finetune_seq : int
        SmolLM2: tokens per training sequence (the 256-token training chunks cut into pieces).
    finetune_loss : str
        SmolLM2: ``kl``, ``hidden`` or ``kl+hidden`` (see :mod:`sparsa.compiler.finetune`).
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
    finetune_scale_every: int = 0  # sparsa.compiler.finetune.QAT_SCALE_EVERY (not imported: no compiler import here)
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
        bits = _BITS[fmt]
        s = intq.search_int_scale(values, bits, "row") if scales_from is None else scales_from.scale
        deq = intq.dequantize_int(intq.quantize_int(values, s, bits, name=name), s)
        return deq, rows * (-(-cols * bits // 8) + 4), 0, "", s
    padded = values if cols % 2 == 0 else np.concatenate([values, np.zeros((rows, 1), np.float32)], axis=1)
    if scales_from is None:
        t = ovp.quantize_weight(padded, _BITS[fmt], name=name)
    else:
        fm = ovp.get_format(scales_from.normal)
        if fm.bits != _BITS[fmt]:
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
    pattern = parse_sparsity(sparsity)
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
            return intq.fake_quant_int(x.astype(np.float32), s, _BITS[self.fmt]).astype(np.float32)
        return ovp.fake_quant(x.astype(np.float32), s, self.ovp_formats[name]).astype(np.float32)


@dataclass(frozen=True)
class DynamicActQuant:
    """Dynamic per-token / per-group int activation fake-quantizer; call it as the model hook.

    Every call quantizes its input ``x[..., K]`` (viewed as ``[T, K]``, ``T`` = all leading axes)
    with :func:`~sparsa.models.formats.actscale.quantize_activations_dynamic` - exactly the
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
        q = actscale.quantize_activations_dynamic(x2, self.spec, _BITS[self.fmt], name=name)
        return fake_quant_dynamic(q).reshape(x.shape).astype(np.float32)


def fake_quant_dynamic(act: actscale.ScaledActivations) -> np.ndarray:
    """float64 ``codes * s_hat`` of dynamically scaled activations (``[T, K]``)."""
    s = act.scale
    k = act.codes.shape[1]
    if act.spec.granularity == "group":
        assert act.spec.group is not None
        s = np.repeat(s, act.spec.group, axis=1)[:, :k]
    return act.codes.astype(np.float64) * s


class _Recorder:
    """Hook collecting up to ``max_rows`` input rows per linear layer."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows: dict[str, list[np.ndarray]] = {}
        self.count: dict[str, int] = {}

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        have = self.count.get(name, 0)
        if have < self.max_rows:
            flat = x.reshape(-1, x.shape[-1])[: self.max_rows - have]
            self.rows.setdefault(name, []).append(np.array(flat, dtype=np.float32))
            self.count[name] = have + flat.shape[0]
        return x


def calibrate_acts(
    run: Callable[[Callable[[str, np.ndarray], np.ndarray]], None], fmt: str, *, max_rows: int = 2048
) -> ActQuant:
    """Calibrate per-tensor activation scales.

    Parameters
    ----------
    run : callable
        ``run(hook)`` runs the model on calibration data with ``hook`` on every linear input.
    fmt : str
        Activation format (not ``"none"``).
    max_rows : int
        Calibration rows (tokens) kept per layer.
    """
    if fmt not in ACT_FORMATS or fmt == "none":
        raise FormatError(f"cannot calibrate activation format {fmt!r}; expected one of {', '.join(ACT_FORMATS[1:])}")
    rec = _Recorder(max_rows)
    run(rec)
    scales, formats = {}, {}
    for name, parts in rec.rows.items():
        x = np.concatenate(parts)
        if fmt in ("int8", "int4"):
            scales[name] = float(intq.search_int_scale(x, _BITS[fmt], "tensor"))
        else:
            f, s = ovp.calibrate_activation(x, _BITS[fmt], name=name)
            scales[name], formats[name] = s, f.name
    return ActQuant(fmt, scales, formats)


def act_quantizer(
    run: Callable[[Callable[[str, np.ndarray], np.ndarray]], None], acts: str, *, mantissa_bits: int = 16
) -> "ActQuant | DynamicActQuant | None":
    """The activation hook of one activation name (:func:`parse_acts`).

    ``none`` -> None; a per-tensor name -> :func:`calibrate_acts` on ``run``; a dynamic name ->
    :class:`DynamicActQuant` (``run`` is not called).
    """
    fmt, spec = parse_acts(acts, mantissa_bits)
    if fmt == "none":
        return None
    if spec.dynamic:
        return DynamicActQuant(fmt, spec)
    return calibrate_acts(run, fmt)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class _WeightCache:
    """The most recent compressed weight set, keyed by (format, sparsity, prune method).

    Only one set is kept (schemes come grouped by weights), which bounds memory on SmolLM2.
    ``pruner(fmt, sparsity, method)`` builds calibrated-pruning sets.
    """

    weights: dict[str, np.ndarray]
    pruner: "Callable[[str, str, str], tuple[dict[str, np.ndarray], dict[str, float]]] | None" = None
    done: dict[tuple[str, str, object], tuple[dict[str, np.ndarray], dict[str, float]]] = field(default_factory=dict)

    def get(self, fmt: str, sparsity: str, prune: "str | None" = None) -> tuple[dict[str, np.ndarray], dict[str, float], float]:
        """(weights, info, seconds spent compressing now: 0.0 when cached)."""
        key = (fmt, sparsity, prune if sparsity != "dense" else None)
        if key in self.done:
            return (*self.done[key], 0.0)
        self.done.clear()
        t0 = time.perf_counter()
        if key[2] is not None:
            if self.pruner is None:
                raise FormatError("calibrated pruning needs a model-specific calibration runner")
            out, info = self.pruner(fmt, sparsity, key[2])
            self.done[key] = (out, info)
            return out, info, time.perf_counter() - t0
        out, info = _quantize_set(self.weights, fmt, sparsity)
        self.done[key] = (out, info)
        return out, info, time.perf_counter() - t0


def _quantize_set(weights: dict[str, np.ndarray], fmt: str, sparsity: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Magnitude-prune (N:M along the reduction axis) and quantize every weight; (weights, info)."""
    layers = {name: compress_weight(w, fmt, sparsity, name=name) for name, w in weights.items()}
    return {name: layer.weight for name, layer in layers.items()}, _set_info(layers, weights, fmt)


def _set_info(layers: "dict[str, CompressedLayer]", originals: dict[str, np.ndarray], fmt: str) -> dict[str, float]:
    """Storage and error summary of compressed ``layers`` (``weight_rel_mse`` against ``originals``)."""
    nbytes, n, outl, flint, pairs, rel = 0, 0, 0, 0, 0, []
    for name, layer in layers.items():
        nbytes += layer.nbytes
        n += layer.n_weights
        outl += layer.outliers
        flint += layer.normal == "ovp4-flint4"
        pairs += layer.n_weights // 2
        w64 = originals[name].astype(np.float64)
        rel.append(float(np.sum((layer.weight - w64) ** 2) / max(float(np.sum(w64**2)), 1e-30)))
    return {
        "bytes_per_weight": nbytes / n,
        "weight_rel_mse": float(np.mean(rel)),
        "outlier_pairs_pct": 100.0 * outl / pairs if fmt.startswith("ovp") else 0.0,
        "flint4_layers": float(flint),
    }


def _pruner(model: object, samples: Sequence[object], run_one: Callable, opts: "PruneOptions",
            progress: "Callable[[str], None] | None") -> Callable[[str, str, str], tuple[dict[str, np.ndarray], dict[str, float]]]:
    """A ``pruner(fmt, sparsity, method)`` for :class:`_WeightCache` on one model."""
    from sparsa.compiler import pruning

    original = model.linear_weights()  # type: ignore[attr-defined]

    def prune(fmt: str, sparsity: str, method: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        res = pruning.prune_model(model, method, sparsity, weight_format=fmt, samples=samples, run_one=run_one,
                                  config=opts.config, blocksize=opts.blocksize, damp=opts.damp, target=opts.target)
        summ = res.summary()
        rel = []
        for name, layer in res.layers.items():
            w64 = original[name].astype(np.float64)
            rel.append(float(np.sum((layer.weight - w64) ** 2) / max(float(np.sum(w64**2)), 1e-30)))
        info = {
            "bytes_per_weight": summ["bytes_per_weight"],
            "weight_rel_mse": float(np.mean(rel)),
            "outlier_pairs_pct": summ["outlier_pairs_pct"],
            "flint4_layers": summ["flint4_layers"],
            "recon_rel_err": summ["recon_rel_err"],
            "damp_max": summ["damp_max"] if method == "sparsegpt" else float("nan"),
            "damp_raised_layers": summ["damp_raised_layers"],
            "prune_seconds": summ["prune_seconds"],
            "prune_cpu_seconds": summ["prune_cpu_seconds"],
            "calib_tokens": summ["calib_tokens"],
        }
        if progress:
            progress(f"pruned {method} {sparsity} {fmt}: {summ['prune_seconds']:.1f} s ({summ['prune_cpu_seconds']:.1f} s CPU), "
                     f"{int(summ['calib_tokens'])} "
                     f"calibration tokens, mean layer rel err {summ['recon_rel_err']:.4f}"
                     + (f", damp raised on {len(res.damp_raised)} layers ({res.damp_raised[0]})" if res.damp_raised else ""))
        return res.weights(), info

    return prune


def _finetuned(sc: Scheme, cache: _WeightCache, tuned: dict, steps: int,
               finetune: Callable[[dict[str, np.ndarray], "str | None", str], object],
               progress: "Callable[[str], None] | None", qat: bool = False) -> tuple[object, dict[str, float]]:
    """(model, info) of a pruned scheme with fine-tuning.

    ``finetune(weights, weight_format, sparsity) -> FinetuneResult`` starts from the method's fp32
    pruned weights.  Without ``qat`` it runs once per (sparsity, method) in float and each weight
    format quantizes the fine-tuned weights (the zeros stay, so the N:M structure does too).  With
    ``qat`` every quantized format is fine-tuned on its own quantizer (``weight_format``) and its
    weights are used as returned (already quantized: quantizing them again could move them).
    """
    fmt = sc.weights if qat and sc.weights != "fp32" else None
    key = (sc.sparsity, sc.prune, fmt)
    if key not in tuned:
        if qat:  # one QAT model at a time (SmolLM2: ~1 GB each); the float one serves only the fp32 rows
            for k in [k for k in tuned if k[2] is not None]:
                del tuned[k]
        w_fp, _, _ = cache.get("fp32", sc.sparsity, sc.prune)
        ft = finetune(w_fp, fmt, sc.sparsity)
        tuned[key] = ft
        if progress:
            r: Any = ft
            what = "fine-tuned" if fmt is None else \
                f"QAT {fmt} fine-tuned ({r.scale_searches} scale searches, {r.quant_seconds:.0f} s in the quantizer)"
            progress(f"{sc.sparsity} {sc.prune}: {what} {steps} steps in {r.seconds:.0f} s "
                     f"({r.cpu_seconds:.0f} s CPU), loss {r.losses[0]:.4f} -> {r.losses[-1]:.4f}")
    ft = tuned[key]
    done = {"finetune_steps": steps, "finetune_loss": ft.losses[-1]}  # type: ignore[attr-defined]
    if fmt is not None:
        info = _set_info(ft.layers, ft.master, fmt)  # type: ignore[attr-defined]
        return ft.model, {**info, **done, "finetune_qat": 1.0}  # type: ignore[attr-defined]
    base = ft.model  # type: ignore[attr-defined]
    w, info = _quantize_set(base.linear_weights(), sc.weights, sc.sparsity)
    return base.with_weights(w), {**info, **done}


def _step_progress(progress: "Callable[[str], None] | None", steps: int, every: int = 10,
                   ) -> "Callable[[int, float], None] | None":
    """An ``on_step`` that reports the loss and the time per step every ``every`` steps."""
    if progress is None:
        return None
    last = [time.perf_counter(), time.process_time()]

    def on_step(step: int, loss: float) -> None:
        if step % every and step != steps:
            return
        now = [time.perf_counter(), time.process_time()]
        k = every if step % every == 0 else step % every
        progress(f"fine-tuning step {step}/{steps}: loss {loss:.4f}, {(now[0] - last[0]) / k:.1f} s/step "
                 f"({(now[1] - last[1]) / k:.1f} s CPU)")
        last[:] = now

    return on_step


def _row(scheme: Scheme, info: dict[str, float], metrics: dict[str, float], seconds: float) -> dict[str, object]:
    """One result row; ``seconds`` includes compressing the weights when this scheme did it first."""
    prune = scheme.prune if scheme.pruned else ("magnitude" if scheme.sparsity != "dense" else "-")
    if info.get("finetune_steps"):
        prune = f"{prune}+{'qat' if info.get('finetune_qat') else 'ft'}{int(info['finetune_steps'])}"
    row = {
        "weights": scheme.weights,
        "acts": scheme.acts,
        "sparsity": scheme.sparsity,
        "prune": prune,
        **metrics,
        "bytes_per_weight": round(info["bytes_per_weight"], 4),
        "weight_rel_mse": info["weight_rel_mse"],
        "outlier_pairs_pct": round(info["outlier_pairs_pct"], 3),
        "flint4_layers": int(info["flint4_layers"]),
        "seconds": round(seconds, 2),
    }
    for k in ("finetune_loss", "recon_rel_err", "damp_max", "damp_raised_layers", "prune_seconds", "prune_cpu_seconds", "calib_tokens"):
        if k in info:  # NaN (not measured: magnitude / Wanda keep no Hessian) -> None, valid JSON
            v = float(info[k])
            row[k] = None if v != v else (round(v, 1) if k.endswith("seconds") else round(v, 6))
    return row


def evaluate_minilm(
    schemes: Sequence[Scheme],
    *,
    n_sentences: int | None = None,
    model: object | None = None,
    progress: Callable[[str], None] | None = None,
    prune: "PruneOptions | None" = None,
) -> dict[str, object]:
    """Cosine similarity of compressed vs fp32 MiniLM sentence embeddings.

    Parameters
    ----------
    schemes : sequence of Scheme
        Schemes to evaluate.
    n_sentences : int, optional
        Use the first ``n`` of :data:`~sparsa.models.real.sentences.SENTENCES` (default all 120).
    model : MiniLM, optional
        A loaded model (default: :func:`sparsa.models.real.minilm.load`).
    progress : callable, optional
        Called with one line per finished scheme.
    prune : PruneOptions, optional
        Calibration settings for schemes with ``prune`` (default :class:`PruneOptions()`).

    Returns
    -------
    dict
        ``{"model", "n_sentences", "rows": [...]}``; each row has ``cos_mean``, ``cos_min``,
        ``bytes_per_weight`` and diagnostics.
    """
    from .real import minilm
    from .real.sentences import CALIBRATION, SENTENCES

    sents = list(SENTENCES if n_sentences is None else SENTENCES[: _check_count(n_sentences, len(SENTENCES), "sentences")])
    m = model if model is not None else minilm.load()
    ref = m.embed(sents)
    cache = _WeightCache(m.linear_weights())
    if any(sc.pruned for sc in schemes):
        opts = prune or PruneOptions()
        cache.pruner = _pruner(m, minilm_calibration(opts.calib_samples), _minilm_run_one, opts, progress)
    rows = []
    tuned: dict[tuple[str, object, "str | None"], object] = {}
    steps = prune.finetune_steps if prune is not None else 0
    for sc in schemes:
        t0 = time.perf_counter()
        if sc.pruned and steps:
            from sparsa.compiler.finetune import finetune_minilm

            lr, batch = prune.lr_batch("minilm")
            qm, info = _finetuned(sc, cache, tuned, steps, lambda w, fmt, sp: finetune_minilm(
                m, w, steps=steps, lr=lr, batch_size=batch, on_step=_step_progress(progress, steps), weight_format=fmt,
                sparsity=sp, scale_every=prune.finetune_scale_every, final_scales=prune.finetune_final_scales), progress,
                prune.finetune_qat)
        else:
            w, info, _ = cache.get(sc.weights, sc.sparsity, sc.prune)
            qm = m.with_weights(w)

        def run_calibration(hook: Callable[[str, np.ndarray], np.ndarray], qm: object = qm) -> None:
            for s in CALIBRATION:  # one sentence per pass: no padding rows in the statistics
                qm.embed([s], hook=hook)  # type: ignore[attr-defined]

        hook = act_quantizer(run_calibration, sc.acts, mantissa_bits=sc.act_mantissa_bits)
        cos = np.sum(qm.embed(sents, hook=hook) * ref, axis=-1, dtype=np.float64)
        metrics = {"cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5)}
        row = _row(sc, info, metrics, time.perf_counter() - t0)
        rows.append(row)
        if progress:
            progress(f"{sc.label}: cos mean {row['cos_mean']:.5f} min {row['cos_min']:.5f}")
    return {"model": "all-MiniLM-L6-v2", "n_sentences": len(sents), "rows": rows}


def evaluate_smollm2(
    schemes: Sequence[Scheme],
    *,
    max_chunks: int = 8,
    calib_chunks: int = 2,
    chunk_len: int = 256,
    model: object | None = None,
    progress: Callable[[str], None] | None = None,
    prune: "PruneOptions | None" = None,
) -> dict[str, object]:
    """Perplexity of SmolLM2 under each scheme on held-out Lee-corpus chunks.

    Chunks ``0 .. calib_chunks-1`` calibrate activations; the next ``max_chunks`` are evaluated.
    The fp row ("fp32") is the GGUF's own Q4_1 weights dequantized: re-quantizing them is the
    honest test only at granularities that differ from Q4_1's 32-element min/max blocks (per
    output channel here).

    Returns
    -------
    dict
        ``{"model", "chunk_len", "eval_chunks", "rows": [...]}``; rows carry ``ppl``.
    """
    from .real import corpus, smollm2

    _check_count(max_chunks, 10**6, "max_chunks")
    m = model if model is not None else smollm2.load()
    chunks = corpus.token_chunks(m.tokenize, chunk_len)
    calib = chunks[:calib_chunks]
    evalc = chunks[calib_chunks : calib_chunks + max_chunks]
    if not evalc:
        raise FormatError(f"corpus has only {len(chunks)} chunks of {chunk_len} tokens; nothing left to evaluate")
    cache = _WeightCache(m.linear_weights())
    if any(sc.pruned for sc in schemes):
        opts = prune or PruneOptions()
        n_cal = _check_count(opts.calib_samples if opts.calib_samples is not None else 16, len(chunks), "calib_samples")
        if len(chunks) - n_cal < calib_chunks + len(evalc):
            raise FormatError(f"corpus has {len(chunks)} chunks: {n_cal} pruning-calibration chunks overlap the "
                              f"{calib_chunks + len(evalc)} activation-calibration and evaluation chunks")
        cache.pruner = _pruner(m, smollm2_calibration(chunks[len(chunks) - n_cal:]), _smollm2_run_one, opts, progress)
    rows = []
    tuned: dict[tuple[str, object, "str | None"], object] = {}
    steps = prune.finetune_steps if prune is not None else 0
    for sc in schemes:
        t0 = time.perf_counter()
        if sc.pruned and steps:
            from sparsa.compiler.finetune import finetune_smollm2, smollm2_training_chunks

            lr, batch = prune.lr_batch("smollm2")
            seqs = smollm2_training_chunks(m.tokenize, prune.finetune_seq, first_chunk=calib_chunks + len(evalc),
                                           chunk_len=chunk_len)
            qm, info = _finetuned(sc, cache, tuned, steps, lambda w, fmt, sp: finetune_smollm2(
                m, w, steps=steps, lr=lr, batch_size=batch, seq_len=prune.finetune_seq, loss=prune.finetune_loss,
                sequences=seqs, on_step=_step_progress(progress, steps), weight_format=fmt, sparsity=sp,
                scale_every=prune.finetune_scale_every, final_scales=prune.finetune_final_scales), progress,
                prune.finetune_qat)
        else:
            w, info, _ = cache.get(sc.weights, sc.sparsity, sc.prune)
            qm = m.with_weights(w)

        def run_calibration(hook: Callable[[str, np.ndarray], np.ndarray], qm: object = qm) -> None:
            for c in calib:
                qm.logits(c, hook)  # type: ignore[attr-defined]

        hook = act_quantizer(run_calibration, sc.acts, mantissa_bits=sc.act_mantissa_bits)
        ppl = qm.perplexity(evalc, hook)
        row = _row(sc, info, {"ppl": round(ppl, 3)}, time.perf_counter() - t0)
        rows.append(row)
        if progress:
            progress(f"{sc.label}: ppl {ppl:.3f}")
    return {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF)", "chunk_len": chunk_len, "eval_chunks": len(evalc), "rows": rows}


def _minilm_run_one(model: object, texts: "str | Sequence[str]", hook: Callable[[str, np.ndarray], np.ndarray]) -> None:
    """One calibration batch through MiniLM; ``hook`` sees the real (non-padding) token rows only."""
    batch = [texts] if isinstance(texts, str) else list(texts)
    ids, mask = model.tokenize(batch)  # type: ignore[attr-defined]
    valid = mask.reshape(-1) > 0
    last: dict[str, np.ndarray] = {}

    def rows(name: str, x: np.ndarray) -> np.ndarray:
        if last.get("x") is not x:  # q/k/v share one input array: hand the hook one rows array too
            last["x"], last["rows"] = x, x.reshape(-1, x.shape[-1])[valid]
        hook(name, last["rows"])
        return x

    model.hidden_states(ids, mask, rows)  # type: ignore[attr-defined]


def _smollm2_run_one(model: object, ids: np.ndarray, hook: Callable[[str, np.ndarray], np.ndarray]) -> None:
    model.logits(ids, hook)  # type: ignore[attr-defined]


#: Most calibration threads :func:`smollm2_calibration` makes (one per sample, see
#: :mod:`sparsa.compiler.pruning`): OpenBLAS keeps per-thread buffers and is built for at most
#: 64 threads; 284 one-chunk threads crashed the process (SIGSEGV) on this machine.
MAX_CALIBRATION_THREADS = 32


def smollm2_calibration(chunks: Sequence[np.ndarray], *, max_threads: int = MAX_CALIBRATION_THREADS) -> list[np.ndarray]:
    """Pruning-calibration samples for SmolLM2: one chunk each, or ``[B, T]`` batches of chunks.

    Up to ``max_threads`` chunks, every chunk is its own sample (one calibration thread each);
    beyond that consecutive chunks are stacked into ``ceil(n / max_threads)``-chunk batches, so
    at most ``max_threads`` threads run however much calibration text is given.  A batch is the
    same tokens as its chunks; its layer inputs differ from the chunk-by-chunk ones only by
    float32 summation order (BLAS blocking), ~4e-6 of the logits' range on real chunks.
    """
    if not isinstance(max_threads, int) or isinstance(max_threads, bool) or max_threads < 1:
        raise FormatError(f"max_threads must be a positive int, not {max_threads!r}")
    chunks = [np.asarray(c, dtype=np.int64) for c in chunks]
    if len(chunks) <= max_threads:
        return chunks
    if len({c.shape for c in chunks}) != 1:
        raise ShapeError(f"calibration chunks must have one length to be batched, got {sorted({c.size for c in chunks})}")
    per = -(-len(chunks) // max_threads)
    return [np.stack(chunks[i : i + per]) for i in range(0, len(chunks), per)]


def minilm_calibration(n: "int | None" = None, *, batch: int = 48) -> list[list[str]]:
    """Pruning-calibration batches for MiniLM: the sentences of the last ``n`` Lee articles (default 64).

    MiniLM is evaluated on single sentences, so it is calibrated on single sentences too (whole
    articles as calibration gave a lower cosine: 0.799 vs 0.844 for SparseGPT 2:4).  Sentences
    are split at ``.!?`` followed by a space, those under 3 words dropped, and grouped ``batch``
    per forward pass (padding rows never reach the statistics; one calibration thread per batch,
    and every thread that calls BLAS gets its own OpenBLAS buffers, so few large batches keep
    memory bounded).  64 articles give 558 sentences,
    ~16.5k tokens; SparseGPT needs at least 1536 (the widest layer's input).  Disjoint from the
    evaluation sentences.
    """
    from .real import corpus

    arts = corpus.articles()
    chosen = arts[len(arts) - _check_count(64 if n is None else n, len(arts), "calib_samples"):]
    sents = [t for a in chosen for t in re.split(r"(?<=[.!?])\s+", a) if len(t.split()) >= 3]
    return [sents[i : i + batch] for i in range(0, len(sents), batch)]


def _check_count(n: object, limit: int, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= limit:
        raise FormatError(f"{what} must be an int in 1..{limit}, not {n!r}")
    return n
