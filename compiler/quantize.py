"""Quantize float linear layers for the accelerator and run them: float in, float out.

Passes for one layer ``y = x @ W.T + b`` (``W[out, in]`` float, reduction axis ``in``):

1. **check** - finite weights / calibration / inputs (``FormatError`` naming tensor and index),
   shapes, formats (the config's ``types.weight`` / ``types.activation``);
2. **prune** - magnitude N:M along ``in`` (:func:`sparsa.formats.nm.prune`), then
   compress on the sparse MUX's group size (the order the slots are loaded in);
3. **quantize weights** - per output row, on the kept values only, scale by MSE search:
   OVP-4 (int4 normals): :func:`sparsa.formats.ovp.search_scale` + ``encode``, pairs =
   consecutive kept slots ``(2i, 2i+1)``, an odd slot count padded with one zero slot;
   int4 / int8: :func:`sparsa.formats.intq.search_int_scale` + ``quantize_int``;
4. **calibrate activations** - one scale per tensor from calibration inputs (same searches
   with ``granularity="tensor"``; OVP pairs along ``in``, an odd ``in`` padded with one zero
   column - the accelerator pads k with zeros anyway); skipped when the config's
   ``act_scale.granularity`` is ``token`` or ``group`` (dynamic scales, below);
5. **compile** - :func:`sparsa.compiler.gemm.compile_compressed_gemm` (codes + indices in the
   weight image, docs/formats/ovp.md section 7).

At run time the inputs are quantized with the calibrated scale, the integer GEMM runs on any
backend, and ``y = Y_int * act_scale * weight_scale[out] + bias``.  With dynamic activation
scales (``act_scale.granularity`` ``token`` / ``group``, int8 / int4 activations only; see
:mod:`sparsa.formats.actscale` and docs/formats/actscale.md) the host quantizes every
input with :func:`~sparsa.formats.actscale.quantize_activations_dynamic`, the backend gets
``{"A": codes[rows, in], "S": mantissa[rows, G]}`` and returns the scaled integer sums
``Y[t, o] = sum_g S[t, g] * (A_g[t] . W_g[o])``, and
``y = Y * 2**-exponent * weight_scale[out] + bias``
(:func:`~sparsa.formats.actscale.dequantize_output`).  All-zero weight rows are
valid (scale 1.0, output = bias).  ``quantize_model`` maps every linear layer of a
:mod:`sparsa.models.real` model through the same path and reports the bytes of each layer.

>>> layer = quantize_linear(cfg, W, calibration_x, bias=b, pattern="2:4")    # doctest: +SKIP
>>> y, y_int, result = run_quantized_linear(cfg, layer, x, get_backend("cycle", cfg))          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from sparsa.compiler.gemm import compile_compressed_gemm
from sparsa.compiler.program import Program
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa import formats
from sparsa.formats import intq, nm, ovp
from sparsa.formats.nm import NMPattern
from sparsa.formats.actscale import (ActScaleSpec, ScaledActivations, dequantize_output,
                                            quantize_activations_dynamic)

__all__ = [
    "FORMATS",
    "QuantizedLinear",
    "QuantizedOutput",
    "QuantizedModel",
    "quantize_linear",
    "quantize_activations",
    "quantize_activations_scaled",
    "run_quantized_linear",
    "quantize_model",
]

#: Formats the quantizer produces for the accelerator, with their bits per value (from
#: :data:`sparsa.formats.FORMATS`).
FORMATS: dict[str, int] = {name: formats.FORMATS[name].bits for name in ("int8", "int4", "ovp4")}


def _check_format(fmt: str, what: str) -> str:
    if fmt not in FORMATS:
        raise FormatError(f"unknown {what} format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def _pad_even(x: np.ndarray) -> np.ndarray:
    """Append one zero column when the last axis is odd (OVP pairs)."""
    if x.shape[-1] % 2 == 0:
        return x
    return np.concatenate([x, np.zeros(x.shape[:-1] + (1,), dtype=x.dtype)], axis=-1)


@dataclass(frozen=True, eq=False)
class QuantizedLinear:
    """A linear layer quantized and N:M-compressed for one accelerator.

    Attributes
    ----------
    name : str
        Layer name (error messages, reports).
    config : AcceleratorConfig
        The accelerator it was quantized for.
    pattern : NMPattern
        The layer's sparsity.
    compressed : nm.NMCompressed
        Integer weights ``W_int[in, out]`` compressed along ``in`` on the hardware group size
        (values in int4 units for OVP-4, int codes otherwise).
    weight_scale : np.ndarray
        float32 ``(out,)``: ``W[o, :] ~= W_int[:, o] * weight_scale[o]``.
    act_scale : float
        Per-tensor (static) activation scale; NaN with dynamic activation scales.
    bias : np.ndarray or None
        float32 ``(out,)``.
    outliers : int
        Weights stored as OVP outliers (0 for int formats).
    act_spec : ActScaleSpec
        Activation-scale granularity (``config.act_scale.spec``); per tensor by default.
    """

    name: str
    config: AcceleratorConfig
    pattern: NMPattern
    compressed: nm.NMCompressed
    weight_scale: np.ndarray
    act_scale: float
    bias: "np.ndarray | None" = None
    outliers: int = 0
    act_spec: ActScaleSpec = ActScaleSpec()
    _programs: dict = field(default_factory=dict, repr=False)

    @property
    def in_features(self) -> int:
        """Reduction length ``in``."""
        return self.compressed.length

    @property
    def out_features(self) -> int:
        """Output channels ``out``."""
        return self.compressed.values.shape[1]

    @property
    def weight_format(self) -> str:
        """The weight format (``config.types.weight``)."""
        return self.config.types.weight

    @property
    def act_format(self) -> str:
        """The activation format (``config.types.activation``)."""
        return self.config.types.activation

    @property
    def act_label(self) -> str:
        """Activation format and scale granularity: ``int8`` (per tensor), ``int8/token``, ``int8/g32``."""
        spec = self.act_spec
        if not spec.dynamic:
            return self.act_format
        return f"{self.act_format}/" + ("token" if spec.granularity == "token" else f"g{spec.group}")

    def act_scale_bytes(self, m_rows: int) -> int:
        """Bytes of activation scale mantissas streamed for ``m_rows`` input rows (0 per tensor).

        ``m_rows * G * ceil(mantissa_bits / 8)`` with ``G`` = 1 per token and ``ceil(in / group)``
        per group (the shared exponent stays on the host).
        """
        if not self.act_spec.dynamic:
            return 0
        return int(m_rows) * self.act_spec.groups(self.in_features) * -(-self.act_spec.mantissa_bits // 8)

    def program(self, m_rows: int) -> Program:
        """The compiled program for ``m_rows`` input rows (tokens); cached per ``m_rows``."""
        if m_rows not in self._programs:
            self._programs[m_rows] = compile_compressed_gemm(self.config, self.compressed, m_rows, self.pattern)
        return self._programs[m_rows]

    def integer_weights(self) -> np.ndarray:
        """Dense integer weights ``W_int[in, out]`` (zeros where pruned)."""
        return nm.decompress(self.compressed).astype(np.int64)

    def dequantized_weight(self) -> np.ndarray:
        """float32 ``W_hat[out, in]`` the accelerator computes with."""
        return (self.integer_weights().T * self.weight_scale[:, None]).astype(np.float32)

    def storage_bytes(self) -> dict[str, int]:
        """Bytes of the stored layer (docs/formats/ovp.md section 7.4) and of its weight stream.

        ``values`` (per row: ``ceil(slots / 2)`` OVP-4 bytes, ``ceil(slots / 2)`` int4 bytes or
        ``slots`` int8 bytes), ``indices`` (per row ``ceil(slots * log2(group_size) / 8)``, the
        indices the accelerator streams), ``scales`` (fp32 per row + the static activation scale;
        dynamic activation scales are run-time inputs, :meth:`act_scale_bytes`),
        ``tag`` (1 byte, OVP normal type), ``total``, ``fp32`` (the dense float weights) and
        ``stream`` (bytes of the weight stream of one pass over the weights, tile padding
        included).
        """
        slots, out = self.compressed.values.shape
        bits = FORMATS[self.weight_format]
        values = out * -(-slots * bits // 8)
        indices = out * -(-slots * self.config.index_bits // 8)
        scales = 4 * out + (0 if self.act_spec.dynamic else 4)
        tag = 1 if self.weight_format == "ovp4" else 0
        prog = self.program(1)
        stream = prog.num_weight_beats * self.config.weight_beat_bits // 8
        return {"values": values, "indices": indices, "scales": scales, "tag": tag,
                "total": values + indices + scales + tag, "fp32": 4 * out * self.in_features, "stream": stream}


class QuantizedOutput(NamedTuple):
    """What :func:`run_quantized_linear` returns."""

    #: float32 output ``[..., out]``: ``Y_int * act_scale * weight_scale + bias`` (dynamic scales:
    #: ``Y_int * 2**-exponent * weight_scale + bias``).
    y: np.ndarray
    #: the exact integer GEMM result ``[..., out]`` (int64) the backend produced (dynamic scales:
    #: the mantissa-scaled sums).
    y_int: np.ndarray
    #: the backend's :class:`~sparsa.sim.backends.base.Result` (cycles, stats).
    result: Any


def quantize_linear(
    config: AcceleratorConfig,
    weight: np.ndarray,
    calibration: "np.ndarray | None",
    *,
    bias: "np.ndarray | None" = None,
    pattern: "NMPattern | str | None" = None,
    weight_format: "str | None" = None,
    act_format: "str | None" = None,
    name: str = "linear",
) -> QuantizedLinear:
    """Quantize ``y = x @ weight.T + bias`` for ``config``.

    Parameters
    ----------
    config : AcceleratorConfig
        Target accelerator; its ``types.weight`` / ``types.activation`` are the formats.
    weight : np.ndarray
        float ``[out, in]``.
    calibration : np.ndarray or None
        float calibration inputs ``[..., in]`` (per-tensor activation scale).  With dynamic
        activation scales (``config.act_scale.granularity`` token / group) nothing is
        calibrated: None is accepted, and given inputs are only checked.
    bias : np.ndarray, optional
        float ``[out]``.
    pattern : NMPattern or str, optional
        Sparsity (default ``config.sparsity.default``); pruning is along ``in``.
    weight_format, act_format : str, optional
        Must name the config's formats when given (a check for callers that carry format names).
    name : str
        Layer name for messages.

    Raises
    ------
    FormatError
        NaN/inf in a tensor (naming it and the index), an unknown format name.
    ShapeError
        Shapes that do not fit together.
    ConfigError, UnsupportedError
        A format the config does not run, an accumulator too narrow for ``in``.
    """
    config.require_supported()
    wfmt, afmt = config.types.weight, config.types.activation
    for given, actual, what in ((weight_format, wfmt, "weight"), (act_format, afmt, "activation")):
        if given is not None and _check_format(given, what) != actual:
            raise ConfigError(f"{name}: {what} format {given!r} does not match the accelerator's "
                              f"types.{'weight' if what == 'weight' else 'activation'}={actual!r}")
    _check_format(wfmt, "weight")
    _check_format(afmt, "activation")
    spec = config.act_scale.spec
    if spec.dynamic and afmt not in ("int8", "int4"):
        raise ConfigError(f"{name}: act_scale.granularity={spec.granularity!r} needs int8 or int4 activations, "
                          f"not types.activation={afmt!r} (OVP activations have per-tensor scales)")
    w = intq.check_finite(weight, f"{name} weight")
    if w.ndim != 2 or 0 in w.shape:
        raise ShapeError(f"{name}: weight must be a non-empty 2-D [out, in] matrix, not shape {w.shape}")
    out_f, in_f = w.shape
    x = None
    if calibration is None:
        if not spec.dynamic:
            raise ShapeError(f"{name}: calibration inputs are required for per-tensor activation scales")
    else:
        x = intq.check_finite(calibration, f"{name} calibration")
        if x.ndim < 1 or x.shape[-1] != in_f or x.size == 0:
            raise ShapeError(f"{name}: calibration inputs must be [..., {in_f}], not shape {x.shape}")
    b = None
    if bias is not None:
        b = intq.check_finite(bias, f"{name} bias")
        if b.shape != (out_f,):
            raise ShapeError(f"{name}: bias must have shape ({out_f},), not {b.shape}")
    req = NMPattern.parse(pattern, dense_m=config.group_size) if pattern is not None \
        else config.sparsity.default_pattern
    hw = config.hardware_pattern(req)

    # prune along `in`, compress on the MUX's group size: values [out, slots] in load order
    comp = nm.compress(nm.prune(w, req.n, req.m, axis=1), hw.n, hw.m, axis=1)
    vals = np.ascontiguousarray(comp.values, dtype=np.float32)
    slots = vals.shape[1]
    outliers = 0
    if wfmt == "ovp4":
        padded = _pad_even(vals)                                  # odd slot count: one zero slot
        scale, _ = ovp.search_scale(padded, ovp.OVP4_INT4, "row", name=f"{name} weight")
        codes = ovp.encode(padded, scale, ovp.OVP4_INT4, name=f"{name} weight")
        ints = ovp.decode(codes, ovp.OVP4_INT4)[:, :slots]
        outliers = int(np.count_nonzero((codes & 0xF) == 8) + np.count_nonzero((codes >> 4) == 8))
    else:
        bits = FORMATS[wfmt]
        scale = intq.search_int_scale(vals, bits, "row")
        ints = intq.quantize_int(vals, scale, bits, name=f"{name} weight")
    w_scale = np.asarray(scale, dtype=np.float32).reshape(out_f)

    if spec.dynamic:
        a_scale = float("nan")                                   # per input, at run time
    elif afmt == "ovp4":
        assert x is not None
        a_scale, _ = ovp.search_scale(_pad_even(x.reshape(-1, in_f)), ovp.OVP4_INT4, "tensor",
                                      name=f"{name} calibration")
    else:
        assert x is not None
        a_scale = intq.search_int_scale(x.reshape(-1, in_f), FORMATS[afmt], "tensor")
    compressed = nm.NMCompressed(values=ints.T.astype(np.int64), indices=comp.indices.T.copy(), n=hw.n, m=hw.m,
                                 axis=0, length=in_f)
    layer = QuantizedLinear(name=name, config=config, pattern=req, compressed=compressed, weight_scale=w_scale,
                            act_scale=float(a_scale), bias=b, outliers=outliers, act_spec=spec)
    layer.program(1)   # compile once now: an accumulator too narrow for `in` fails here
    return layer


def _input_rows(layer: QuantizedLinear, x: np.ndarray) -> np.ndarray:
    """Checked float32 inputs ``[rows, in]``."""
    xf = intq.check_finite(x, f"{layer.name} input")
    if xf.ndim < 1 or xf.shape[-1] != layer.in_features:
        raise ShapeError(f"{layer.name}: inputs must be [..., {layer.in_features}], not shape {xf.shape}")
    return xf.reshape(-1, layer.in_features)


def quantize_activations(layer: QuantizedLinear, x: np.ndarray) -> np.ndarray:
    """Integer activations ``A[rows, in]`` (int64) of float inputs ``x[..., in]`` for ``layer``.

    Per-tensor scales only; a layer with dynamic scales needs :func:`quantize_activations_scaled`.
    """
    if layer.act_spec.dynamic:
        raise ConfigError(f"{layer.name} has dynamic {layer.act_spec.granularity} activation scales: its codes "
                          f"come with scale mantissas, use quantize_activations_scaled")
    x2 = _input_rows(layer, x)
    if layer.act_format == "ovp4":
        q = ovp.quantize_values(_pad_even(x2), layer.act_scale, ovp.OVP4_INT4, name=f"{layer.name} input")
        return q[:, : layer.in_features].astype(np.int64)
    return intq.quantize_int(x2, layer.act_scale, FORMATS[layer.act_format], name=f"{layer.name} input").astype(np.int64)


def quantize_activations_scaled(layer: QuantizedLinear, x: np.ndarray) -> ScaledActivations:
    """Codes ``[rows, in]`` and scale mantissas ``[rows, G]`` of float inputs ``x[..., in]`` for a
    ``layer`` with dynamic (per-token / per-group) activation scales."""
    if not layer.act_spec.dynamic:
        raise ConfigError(f"{layer.name} has a static per-tensor activation scale; use quantize_activations")
    return quantize_activations_dynamic(_input_rows(layer, x), layer.act_spec, FORMATS[layer.act_format],
                                        name=f"{layer.name} input")


def run_quantized_linear(
    config: AcceleratorConfig, layer: QuantizedLinear, x_float: np.ndarray, backend: Any,
) -> QuantizedOutput:
    """Run ``layer`` on float inputs ``x_float[..., in]`` on ``backend``.

    Parameters
    ----------
    config : AcceleratorConfig
        Must be the config the layer was quantized for.
    layer : QuantizedLinear
        From :func:`quantize_linear`.
    x_float : np.ndarray
        float inputs ``[..., in]``.
    backend : Backend
        An object with ``run(program, tensors)`` returning an object with ``outputs["Y"]``,
        e.g. ``sparsa.sim.get_backend("cycle", config)`` (the compiler does not import the
        simulators: the caller picks the rung).  ``tensors`` is ``{"A": codes}`` with per-tensor
        scales and ``{"A": codes, "S": mantissa}`` (int64 ``[rows, G]``) with dynamic scales.

    Returns
    -------
    QuantizedOutput
        ``(y, y_int, result)``.
    """
    if config != layer.config:
        raise ConfigError(f"{layer.name} was quantized for config {layer.config.name!r}, not {config.name!r}")
    if not callable(getattr(backend, "run", None)):
        raise ConfigError(f"backend must be a Backend object with run(program, tensors) (sparsa.sim.get_backend("
                          f"name, config)), not {backend!r}")
    be = backend
    if layer.act_spec.dynamic:
        act = quantize_activations_scaled(layer, x_float)
        result = be.run(layer.program(act.codes.shape[0]), {"A": act.codes, "S": act.mantissa})
        y_int = np.asarray(result.outputs["Y"], dtype=np.int64)
        y = dequantize_output(y_int, act, layer.weight_scale)
    else:
        a = quantize_activations(layer, x_float)
        result = be.run(layer.program(a.shape[0]), {"A": a})
        y_int = np.asarray(result.outputs["Y"], dtype=np.int64)
        y = y_int.astype(np.float64) * layer.act_scale * layer.weight_scale.astype(np.float64)[None, :]
    if layer.bias is not None:
        y = y + layer.bias[None, :]
    lead = np.shape(x_float)[:-1]
    return QuantizedOutput(y.astype(np.float32).reshape(lead + (layer.out_features,)),
                           y_int.reshape(lead + (layer.out_features,)), result)


# ------------------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class QuantizedModel:
    """Every selected linear layer of a model, quantized for one accelerator."""

    config: AcceleratorConfig
    layers: dict[str, QuantizedLinear]

    def run(self, name: str, x: np.ndarray, backend: Any) -> QuantizedOutput:
        """:func:`run_quantized_linear` on layer ``name`` (``backend``: a Backend object)."""
        if name not in self.layers:
            raise ShapeError(f"no quantized layer {name!r}; have {', '.join(self.layers)}")
        return run_quantized_linear(self.config, self.layers[name], x, backend)

    def report(self) -> list[dict[str, Any]]:
        """One row per layer: shape, formats, sparsity, bytes (:meth:`QuantizedLinear.storage_bytes`)."""
        rows = []
        for name, layer in self.layers.items():
            row = {"layer": name, "out": layer.out_features, "in": layer.in_features,
                   "weights": layer.weight_format, "acts": layer.act_label, "sparsity": str(layer.pattern),
                   "outliers": layer.outliers, **layer.storage_bytes()}
            row["bytes_per_weight"] = row["total"] / (layer.out_features * layer.in_features)
            rows.append(row)
        return rows


class _Recorder:
    def __init__(self, names: set[str], max_rows: int) -> None:
        self.names, self.max_rows = names, max_rows
        self.rows: dict[str, list[np.ndarray]] = {}

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        if name in self.names:
            have = sum(len(r) for r in self.rows.get(name, []))
            if have < self.max_rows:
                flat = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])[: self.max_rows - have]
                self.rows.setdefault(name, []).append(flat.copy())
        return x


def quantize_model(
    config: AcceleratorConfig,
    model: Any,
    calibration: "Mapping[str, np.ndarray] | Callable[[Callable], Any] | None",
    *,
    layers: "Iterable[str] | None" = None,
    pattern: "NMPattern | str | Mapping[str, str] | None" = None,
    max_rows: int = 512,
) -> QuantizedModel:
    """Quantize every (or the selected) linear layer of a :mod:`sparsa.models.real` model.

    Parameters
    ----------
    config : AcceleratorConfig
        Target accelerator.
    model : object
        Has ``linear_names`` and ``linear`` (``name -> weight`` or ``name -> (weight, bias)``),
        as :class:`~sparsa.models.real.minilm.MiniLM` and the SmolLM2 model do.
    calibration : mapping, callable or None
        ``name -> inputs [..., in]``, or ``run(hook)`` that runs the model on calibration data
        with ``hook(name, x) -> x`` on every linear input (e.g.
        ``lambda hook: model.embed(sentences, hook=hook)``).  None (or missing layers) only with
        dynamic activation scales, which need no calibration.
    layers : iterable of str, optional
        Layer names (default: all, in execution order).
    pattern : str, NMPattern or mapping, optional
        Sparsity for all layers, or per layer name.
    max_rows : int
        Calibration rows kept per layer.
    """
    names = list(model.linear_names if layers is None else layers)
    known = set(model.linear_names)
    for n in names:
        if n not in known:
            raise ShapeError(f"model has no linear layer {n!r}")
    dynamic = config.act_scale.spec.dynamic
    if calibration is None or (dynamic and callable(calibration) and not isinstance(calibration, Mapping)):
        inputs = {}                                   # dynamic scales: nothing to calibrate
    elif callable(calibration) and not isinstance(calibration, Mapping):
        rec = _Recorder(set(names), max_rows)
        calibration(rec)
        inputs = {n: np.concatenate(v) for n, v in rec.rows.items()}
    else:
        inputs = dict(calibration)
    out = {}
    for n in names:
        if n not in inputs and not dynamic:
            raise ShapeError(f"no calibration inputs for layer {n!r}")
        entry = model.linear[n]
        w, b = (entry if isinstance(entry, tuple) else (entry, None))
        pat = pattern.get(n) if isinstance(pattern, Mapping) else pattern
        out[n] = quantize_linear(config, w, inputs.get(n), bias=b, pattern=pat, name=n)
    return QuantizedModel(config, out)
