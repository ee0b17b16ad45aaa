"""Compile the three GEMMs of a sparse training step for the accelerator, in int8.

For one layer with input ``X[B, k]``, dense weight ``W[k, n]`` and output gradient ``dY[B, n]``
(a convolution passes its im2col matrix as ``X``, ``B = batch * Ho * Wo``)::

    forward        Y  = X  @ W_f       A = X_q [B, k],    weight W_f = W_q * mask_f [k, n]   N:M along k
    input gradient dX = dY @ W_b^T     A = dY_q [B, n],   weight W_b^T [n, k]                N:M along n
    weight grad.   dW = X^T @ dY       A = X_q^T [k, B],  weight dY_q [B, n]                 dense

``W_b^T`` is compiled as a weight of its own: :func:`~sparsa.compiler.compile_gemm` compresses
it along *its* reduction axis (W's output axis) with its own indices - the BDWP backward mask,
not a transposed view of the forward one.  SR-STE has one mask, so its ``W_f^T`` is not N:M
along ``n`` and its input-gradient GEMM runs dense; the dense method runs all three dense.

A convolution (``conv=`` its :class:`~sparsa.models.workloads.graph.ConvGeometry`) may instead
run its input gradient as a convolution of ``dY`` (:mod:`sparsa.compiler.conv_grad`)::

    input gradient dX = P(dY) @ R(W_b)  A = P(dY_q) [B*H*W, kh*kw*Cout], weight R(W_b) [kh*kw*Cout, Cin]

whose reduction is ``kh * kw`` times longer (fewer idle PE rows) and whose result is the image
gradient itself; ``input_grad="auto"`` (default) compiles both forms and keeps the one with fewer
cycles (:func:`~sparsa.compiler.conv_grad.pick_input_grad_form`).

Number format (``docs/training.md``)
    Symmetric int8 with one scale per tensor: ``q = clip(rint(x / s), -127, 127)`` (round half
    to even, -128 unused), ``s = max|x| / 127`` (``scale="float"``) or the next power of two
    above it (``scale="pow2"``, the default: dequantisation is a shift).  An all-zero tensor
    gets ``s = 1``.  The accelerator computes the integer GEMM exactly (int32 accumulator);
    the result is dequantised after it with ``s_a * s_w``.  The weight's scale is computed on
    the dense ``W`` so ``W_f`` and ``W_b`` share it; masks are applied to the integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sparsa.compiler.conv_grad import (INPUT_GRAD_FORMS, conv_grad_patches, input_grad_forms, pick_input_grad_form,
                                       rotate_conv_weight)
from sparsa.compiler.datapath import compile_gemm
from sparsa.compiler.program import Program
from sparsa.models.reference import gemm_reference
from sparsa.models.workloads.graph import ConvGeometry

from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.errors import ConfigError, FormatError, ShapeError

__all__ = [
    "GEMM_NAMES",
    "QTensor",
    "TrainingGemm",
    "TrainingStep",
    "compile_training_step",
    "layer_conv_geometry",
    "layer_step_operands",
    "quantize_symmetric",
]

#: The three GEMMs of a training step, in execution order.
GEMM_NAMES: tuple[str, ...] = ("forward", "input_grad", "weight_grad")


@dataclass(frozen=True)
class QTensor:
    """A symmetric per-tensor quantized tensor: ``values * scale`` approximates the float tensor."""

    values: np.ndarray
    scale: float
    bits: int

    def dequantize(self) -> np.ndarray:
        """``values * scale`` as float64."""
        return self.values.astype(np.float64) * self.scale


def quantize_symmetric(x: np.ndarray, bits: int = 8, scale: str = "pow2") -> QTensor:
    """Quantize ``x`` to signed ``bits``-bit integers with one scale (see the module docstring).

    Raises
    ------
    FormatError
        ``x`` holds NaN/inf.
    ConfigError
        Unknown ``scale`` mode or bad ``bits``.
    """
    if scale not in ("pow2", "float"):
        raise ConfigError(f"scale must be 'pow2' or 'float', not {scale!r}")
    if type(bits) is not int or not 2 <= bits <= 16:
        raise ConfigError(f"bits must be an integer in 2..16, not {bits!r}")
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise FormatError("cannot quantize a tensor holding NaN or inf")
    qmax = (1 << (bits - 1)) - 1
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        s = 1.0
    elif scale == "float":
        s = peak / qmax
    else:
        s = 2.0 ** math.ceil(math.log2(peak / qmax))
    q = np.clip(np.rint(x / s), -qmax, qmax).astype(np.int64)
    return QTensor(q, s, bits)


@dataclass(frozen=True)
class TrainingGemm:
    """One compiled GEMM of a training step.

    Attributes
    ----------
    name : str
        ``forward``, ``input_grad`` or ``weight_grad``.
    formula : str
        What it computes, e.g. ``"dX = dY @ W_b^T"``.
    program : Program
        Compiled for the accelerator (``program.weights`` is the int weight operand).
    a : np.ndarray
        Integer activations ``A[m, k]`` streamed through the array.
    scale : float
        Dequantisation factor of the integer result.
    expected : np.ndarray
        The integer result the training reference defines (its masks, wrapped to the
        accumulator width), computed without the compiler.
    form : str
        ``gemm``, or ``conv`` for an input gradient run as a convolution of ``dY``
        (:mod:`sparsa.compiler.conv_grad`; its result is the image gradient ``[B*H*W, Cin]``).
    """

    name: str
    formula: str
    program: Program = field(repr=False)
    a: np.ndarray = field(repr=False)
    scale: float
    expected: np.ndarray = field(repr=False)
    form: str = "gemm"

    @property
    def pattern(self) -> str:
        """The requested sparsity of the weight operand (``2:8``, ``dense``...)."""
        return "dense" if self.program.pattern.dense else str(self.program.pattern)

    def run(self, backend: Any):
        """Run on a :class:`~sparsa.sim.Backend`; returns its :class:`~sparsa.sim.Result`."""
        return backend.run(self.program, {"A": self.a})

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        """Float result of an integer output."""
        return np.asarray(y, dtype=np.float64) * self.scale


@dataclass(frozen=True)
class TrainingStep:
    """The three compiled GEMMs of one layer's training step, with the quantized operands and masks."""

    method: str
    pattern: str
    x: QTensor = field(repr=False)
    w: QTensor = field(repr=False)
    dy: QTensor = field(repr=False)
    mask_f: np.ndarray | None = field(repr=False)
    mask_b: np.ndarray | None = field(repr=False)
    gemms: tuple[TrainingGemm, ...]
    conv: ConvGeometry | None = None

    def __getitem__(self, name: str) -> TrainingGemm:
        for g in self.gemms:
            if g.name == name:
                return g
        raise KeyError(f"no GEMM {name!r}; have {', '.join(GEMM_NAMES)}")

    def float_reference(self, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> dict[str, np.ndarray]:
        """The same three GEMMs in float64 on the unquantized operands (the input gradient in its form)."""
        wf = w if self.mask_f is None else w * self.mask_f
        wb = w if self.mask_b is None else w * self.mask_b
        if self["input_grad"].form == "conv":
            dx = conv_grad_patches(dy, self.conv) @ rotate_conv_weight(wb, self.conv)
        else:
            dx = dy @ wb.T
        return {"forward": x @ wf, "input_grad": dx, "weight_grad": x.T @ dy}


def _check_mask(mask: np.ndarray | None, w_shape: tuple[int, int], n: int, m: int, axis: int, what: str) -> None:
    if mask is None:
        return
    mask = np.asarray(mask)
    if mask.shape != w_shape or mask.dtype != bool:
        raise ShapeError(f"{what} must be a bool array of the weight's shape {w_shape}, not {mask.dtype} {mask.shape}")
    from sparsa.formats import nm

    if not nm.is_nm_sparse(mask, n, m, axis=axis):
        axis_name = "k (axis 0)" if axis == 0 else "n (axis 1)"
        raise FormatError(f"{what} keeps more than {n} of {m} along {axis_name}")


def compile_training_step(
    config: AcceleratorConfig,
    x: np.ndarray,
    w: np.ndarray,
    dy: np.ndarray,
    *,
    method: str = "bdwp",
    pattern: str = "2:8",
    mask_f: np.ndarray | None = None,
    mask_b: np.ndarray | None = None,
    scale: str = "pow2",
    ragged: str = "pad",
    name: str = "layer",
    conv: ConvGeometry | None = None,
    input_grad: str = "auto",
) -> TrainingStep:
    """Quantize a layer's ``X``, ``W``, ``dY`` to the accelerator's types and compile its three GEMMs.

    Parameters
    ----------
    config : AcceleratorConfig
        Target; its ``group_size`` must be a multiple of the pattern's M.
    x, w, dy : np.ndarray
        Float ``X[B, k]``, dense ``W[k, n]``, ``dY[B, n]``.
    method : {"bdwp", "srste", "dense"}
        Which GEMMs are sparse (module docstring).
    pattern : str
        N:M of the sparse GEMMs.
    mask_f, mask_b : np.ndarray of bool, optional
        The training reference's masks (forward along k, backward along n on ``W``); default:
        generated from ``|W|`` as the reference does.
    scale : {"pow2", "float"}
        Per-tensor scale mode.
    ragged : {"pad", "refuse"}
        A sparse axis not divisible by M: the compiler pads it (default), or refuse.
    name : str
        Layer name for messages.
    conv : ConvGeometry, optional
        The convolution whose im2col GEMM ``x``, ``w``, ``dy`` are (one group; rows of ``x`` and
        ``dy`` in ``(b, y, x)`` order): allows the ``conv`` form of the input gradient.
    input_grad : {"auto", "gemm", "conv"}
        Form of the input-gradient GEMM (module docstring): ``auto`` keeps the one with fewer
        cycles; ``conv`` needs ``conv`` and, when sparse, ``Cout`` a multiple of the hardware's M.

    Raises
    ------
    ShapeError
        Operand shapes do not chain (or are not ``conv``'s), or a ragged axis with ``ragged="refuse"``.
    ConfigError
        An unknown ``input_grad``, or ``conv`` asked for where that form is not possible.
    UnsupportedError
        The pattern cannot run on ``config``'s sparse MUX.
    """
    from sparsa.models.training.sparsity import parse_spec

    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    if w.ndim != 2 or x.ndim != 2 or dy.ndim != 2:
        raise ShapeError(f"layer {name!r}: X, W, dY must be 2-D, got {x.shape}, {w.shape}, {dy.shape}")
    k, n = w.shape
    if x.shape[1] != k or dy.shape[1] != n or x.shape[0] != dy.shape[0]:
        raise ShapeError(f"layer {name!r}: X {x.shape}, W {w.shape}, dY {dy.shape} do not chain "
                         "(need X[B, k], W[k, n], dY[B, n])")
    spec = parse_spec(method, pattern, ragged=ragged)
    spec.check_axis(name, "input size k (forward N:M axis)", k)
    if spec.method == "bdwp":
        spec.check_axis(name, "output size n (the N:M axis of W^T in the input-gradient GEMM)", n)
    gen_f, gen_b = spec.masks(w)
    mask_f = gen_f if mask_f is None else np.asarray(mask_f)
    mask_b = gen_b if mask_b is None else np.asarray(mask_b)
    if spec.sparse:
        _check_mask(mask_f, (k, n), spec.n, spec.m, 0, "mask_f")
        if spec.method == "bdwp":
            _check_mask(mask_b, (k, n), spec.n, spec.m, 1, "mask_b")
    else:
        mask_f = mask_b = None

    bits_w, bits_a = config.weight_bits, config.activation_bits
    xq = quantize_symmetric(x, bits_a, scale)
    dyq = quantize_symmetric(dy, bits_a, scale)
    wq = quantize_symmetric(w, bits_w, scale)
    dyq_as_weight = quantize_symmetric(dy, bits_w, scale)   # the stationary operand of dW
    w_f = wq.values if mask_f is None else np.where(mask_f, wq.values, 0)
    w_b = wq.values if mask_b is None else np.where(mask_b, wq.values, 0)
    acc = config.accumulator_bits
    fwd_pattern = spec.pattern
    bwd_pattern = spec.pattern if spec.method == "bdwp" else "dense"

    def gemm(gname, formula, weight, a, pat, s, form="gemm"):
        program = compile_gemm(config, weight, a.shape[0], pat, prune=False)
        return TrainingGemm(gname, formula, program, a, s, gemm_reference(a, weight, acc), form)

    def input_gradient(form):
        if form == "conv":
            return gemm("input_grad", "dX = P(dY) @ R(W_b)", rotate_conv_weight(w_b, conv),
                        conv_grad_patches(dyq.values, conv), bwd_pattern, dyq.scale * wq.scale, "conv")
        return gemm("input_grad", "dX = dY @ W_b^T", np.ascontiguousarray(w_b.T), dyq.values, bwd_pattern,
                    dyq.scale * wq.scale)

    forms = _input_grad_forms(config, x.shape[0], k, n, conv, bwd_pattern, input_grad, name)
    candidates = {}
    for form in forms:
        try:
            candidates[form] = input_gradient(form)
        except ConfigError:
            if input_grad != "auto" or form == "gemm":
                raise
            # auto: the conv form's longer reduction may not fit the accumulator; gemm remains
    cycles = {form: matrix_datapath(config).program_cycles(config, g.program.instructions)
              for form, g in candidates.items()}
    gemms = (
        gemm("forward", "Y = X @ W_f", w_f, xq.values, fwd_pattern, xq.scale * wq.scale),
        candidates[pick_input_grad_form(cycles)],
        gemm("weight_grad", "dW = X^T @ dY", dyq_as_weight.values, np.ascontiguousarray(xq.values.T), "dense",
             xq.scale * dyq_as_weight.scale),
    )
    return TrainingStep(spec.method, spec.pattern, xq, wq, dyq, mask_f, mask_b, gemms, conv)


def _input_grad_forms(config: AcceleratorConfig, m: int, k: int, n: int, conv: ConvGeometry | None,
                      pattern: str, choice: str, name: str) -> tuple[str, ...]:
    """The input-gradient forms ``compile_training_step`` compiles for ``input_grad=choice``."""
    if choice not in ("auto", *INPUT_GRAD_FORMS):
        raise ConfigError(f"input_grad must be one of auto, {', '.join(INPUT_GRAD_FORMS)}, not {choice!r}")
    hw = config.hardware_pattern(pattern)
    group_m = 1 if hw.dense else hw.m
    possible = input_grad_forms(m, k, n, conv, group_m)
    if choice == "auto":
        return tuple(possible)
    if choice not in possible:
        why = ("no conv geometry was given (conv=)" if conv is None else
               f"its output channels {n} are not a multiple of the hardware group M = {group_m}")
        raise ConfigError(f"layer {name!r}: input_grad='conv' is not possible: {why}")
    return (choice,)


def layer_conv_geometry(model: Any, layer_name: str) -> ConvGeometry | None:
    """The :class:`ConvGeometry` of a reference network's ``Conv2d`` layer (``None`` for a ``Linear``),
    to pass as ``compile_training_step(..., conv=)`` with :func:`layer_step_operands`' operands."""
    from sparsa.models.training.layers import Conv2d

    layer = next((lay for lay in model.layers if lay.name == layer_name), None)
    if not isinstance(layer, Conv2d):
        return None
    h, w, _ = layer.in_shape
    return ConvGeometry(in_channels=layer.cin, out_channels=layer.cout, in_height=h, in_width=w,
                        kernel=(layer.kernel,) * 2, stride=(layer.stride,) * 2, padding=(layer.padding,) * 2)


def layer_step_operands(model: Any, layer_name: str, xb: np.ndarray, yb: np.ndarray):
    """Run one reference training step's forward and backward on a batch and capture a layer's operands.

    Parameters
    ----------
    model : sparsa.models.training.Sequential
        The reference network (its current masks are used).
    layer_name : str
        A :class:`~sparsa.models.training.Linear` or ``Conv2d`` layer.
    xb, yb : np.ndarray
        A batch and its labels.

    Returns
    -------
    tuple
        ``(X, W, dY, mask_f, mask_b)`` with ``X`` the layer's GEMM input (the im2col matrix for a
        conv), ``W`` its dense weight and ``dY`` the gradient at its GEMM output, all 2-D.
    """
    from sparsa.models.training.layers import Conv2d, WeightLayer, im2col, softmax_cross_entropy

    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ConfigError(f"model {model.name!r} has no layer {layer_name!r}; layers: {', '.join(names)}")
    idx = names.index(layer_name)
    layer = model.layers[idx]
    if not isinstance(layer, WeightLayer):
        raise ConfigError(f"layer {layer_name!r} is a {type(layer).__name__}, not a Linear or Conv2d")
    h = xb
    for lay in model.layers[:idx]:
        h = lay.forward(h)
    if isinstance(layer, Conv2d):
        cols = im2col(h, layer.kernel, layer.stride, layer.padding)
        x2d = cols.reshape(-1, layer.k)
    else:
        x2d = h
    out = layer.forward(h)
    for lay in model.layers[idx + 1:]:
        out = lay.forward(out)
    _, d = softmax_cross_entropy(out, yb)
    for lay in reversed(model.layers[idx + 1:]):
        d = lay.backward(d)
    layer._x2d = None
    return (np.array(x2d), layer.w.copy(), d.reshape(-1, layer.n).copy(),
            None if layer.mask_f is None else layer.mask_f.copy(),
            None if layer.mask_b is None else layer.mask_b.copy())
