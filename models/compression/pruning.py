"""Calibrated one-shot pruning (magnitude, Wanda, SparseGPT) jointly with weight quantization.

Size: three pruning methods (magnitude, Wanda, SparseGPT with joint GPTQ-style quantization),
their calibration statistics and the two drivers (layer, model); the maths is documented to
paper level in the docstrings, which is half of the lines. A trim (the pattern parser and mask
move to sparsa.formats.nm) is under way; the drivers could be split from the methods after it.

All NumPy, deterministic (no random sampling; ``seed`` only orders nothing but is recorded so
callers that subsample calibration data can pass theirs through), layer by layer with bounded
memory.  Weights are ``W[out, in]``; the reduction axis is ``in`` (axis 1).

Methods
-------
``magnitude``
    Keep the largest ``|W|`` (N:M: per group of ``M`` consecutive inputs of a row; ties to the
    lower index, exactly :func:`sparsa.formats.nm.prune`; unstructured: per row).
``wanda``
    Score ``|W_ij| * ||x_j||_2`` (Sun et al. 2023), compared within each N:M group along ``in``
    (unstructured: within each output row).  Needs only the per-input-channel activation norms.
``sparsegpt``
    Frantar & Alistarh 2023.  ``H = 2/n * X^T X + damp * mean(diag H) * I`` from the calibration
    inputs ``X[n, in]``; its inverse's upper Cholesky factor ``U`` drives a left-to-right sweep in
    column blocks (``blocksize``): at the first column of every ``M``-group the mask keeps the
    ``N`` columns with the largest OBS score ``w^2 / U_jj^2`` (unstructured: per block, the
    lowest scores over the whole block are pruned), each column is pruned, **quantized** on the
    target grid (GPTQ-style, per-row scales chosen up front) and its error
    ``(w - q) / U_jj`` is fed forward to the columns not yet processed.  A Hessian whose Cholesky
    fails gets its dampening raised x10 (up to :data:`MAX_DAMP`; the value used is reported).

Joint quantization
------------------
``weight_format`` ``fp32`` (no quantization), ``int8`` / ``int4`` (symmetric narrow range per
output row, :mod:`sparsa.formats.intq`), ``ovp4`` / ``ovp8`` (OliVe pairs,
:mod:`sparsa.formats.ovp`).  OVP pairs are formed on the *compressed slots* of each row
(the kept values, in increasing index order, on the hardware group size when a config is given),
as in :mod:`sparsa.compiler.quantize`.  For SparseGPT each column is quantized element-wise on
the OVP value set (normal U outlier grid) during the sweep; the final slots are then OVP-encoded
with the same scales, which applies the pair (victim) rule, and the returned weight is exactly
``decode(codes) * scale`` (the rare victimised elements are counted in ``victims_changed``).
Magnitude and Wanda prune first and then quantize the kept slots with the usual MSE scale
search (same as :func:`sparsa.models.compression.schemes.compress_weight`).

Sequential calibration
----------------------
:func:`prune_model` runs all calibration samples through the model *concurrently* (one thread
per sample) and stops every thread at the input of each linear layer; once all samples arrived,
that layer is pruned from their inputs and its compressed weight is installed before the
threads continue.  Layer ``L+1`` is thus calibrated on the outputs of the already pruned and
quantized layers ``<= L``, in a single forward pass, without keeping more than one layer's
inputs.  Memory: one thread per sample, and OpenBLAS gives every thread that calls it its own
work buffers (tens of MB), so pass a few large samples (batches) rather than many small ones.  The entry point for later fine-tuning is :class:`PrunedLayer` (mask, scales, grid) and
:attr:`PruneResult.layers`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sparsa.errors import FormatError, ShapeError, UnsupportedError
from sparsa.formats import FORMATS, QUANTIZED, intq, nm, ovp

__all__ = [
    "METHODS",
    "WEIGHT_FORMATS",
    "DEFAULT_DAMP",
    "MAX_DAMP",
    "Sparsity",
    "parse_sparsity",
    "HessianAccumulator",
    "PrunedLayer",
    "PruneResult",
    "magnitude_mask",
    "wanda_mask",
    "min_calibration_tokens",
    "prune_layer",
    "prune_model",
    "reconstruction_error",
    "check_hardware",
]

METHODS: tuple[str, ...] = ("magnitude", "wanda", "sparsegpt")
#: fp32 (no quantization) and every quantized format of :data:`sparsa.formats.FORMATS`.
WEIGHT_FORMATS: tuple[str, ...] = ("fp32",) + QUANTIZED
#: Default SparseGPT dampening: 1 % of the mean Hessian diagonal.
DEFAULT_DAMP = 0.01
#: Largest dampening the automatic retry goes to (fraction of the mean diagonal).
MAX_DAMP = 10.0


# --------------------------------------------------------------------------------------------
# sparsity patterns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sparsity:
    """``N:M`` (keep ``n`` of every ``m`` along ``in``; the numbers pass :func:`sparsa.formats.nm.check_nm`)
    or unstructured (prune ``fraction``)."""

    n: int = 0
    m: int = 0
    fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.structured:
            nm.check_nm(self.n, self.m)

    @property
    def structured(self) -> bool:
        """True for an N:M pattern."""
        return self.m > 0

    @property
    def label(self) -> str:
        """``"2:4"`` or ``"0.5"``."""
        return f"{self.n}:{self.m}" if self.structured else f"{self.fraction:g}"

    @property
    def density(self) -> float:
        """Fraction of weights kept."""
        return self.n / self.m if self.structured else 1.0 - self.fraction


def parse_sparsity(spec: "Sparsity | nm.NMPattern | str | float") -> Sparsity:
    """An N:M pattern (``"N:M"`` text, parsed by :func:`sparsa.formats.nm.parse_nm`, or an
    :class:`~sparsa.formats.nm.NMPattern`) or a pruned fraction in ``[0, 1)`` (``"0.5"`` or ``0.5``)."""
    if isinstance(spec, Sparsity):
        return spec
    if isinstance(spec, nm.NMPattern):
        return Sparsity(n=spec.n, m=spec.m)
    if isinstance(spec, str):
        if ":" in spec:
            n_, m_ = nm.parse_nm(spec)  # "N:M" text never parses as dense (None)
            return Sparsity(n=n_, m=m_)
        try:
            spec_f = float(spec)
        except ValueError:
            raise FormatError(f"sparsity must be 'N:M' or a pruned fraction in [0, 1), not {spec!r}") from None
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec_f = float(spec)
    else:
        raise FormatError(f"sparsity must be 'N:M' or a pruned fraction in [0, 1), not {spec!r}")
    if not 0.0 <= spec_f < 1.0:
        raise FormatError(f"unstructured sparsity must be a pruned fraction in [0, 1), not {spec!r}")
    return Sparsity(fraction=spec_f)


def check_hardware(config: Any, sparsity: "Sparsity | str") -> Any:
    """The config's hardware pattern for ``sparsity`` (UnsupportedError before any work).

    Unstructured sparsity is refused: the sparse MUX runs N:M only.
    """
    sp = parse_sparsity(sparsity)
    if not sp.structured:
        raise UnsupportedError(
            f"sparsity {sp.label!r} is unstructured; accelerator {config.name!r} runs N:M patterns only "
            f"(M dividing sparsity.group_size={config.group_size})")
    return config.hardware_pattern(sp.label)


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def _row_keep(score: np.ndarray, fraction: float) -> np.ndarray:
    """Keep mask: prune exactly ``round(fraction * in)`` lowest scores per row (ties -> lower index kept)."""
    rows, k = score.shape
    drop = int(round(fraction * k))
    keep = np.zeros(score.shape, dtype=bool)
    order = np.argsort(-score, axis=1, kind="stable")[:, : k - drop]
    np.put_along_axis(keep, order, True, axis=1)
    return keep


def _keep_from_score(score: np.ndarray, sp: Sparsity) -> np.ndarray:
    return nm.keep_mask(score, sp.n, sp.m, axis=1) if sp.structured else _row_keep(score, sp.fraction)


def magnitude_mask(w: np.ndarray, sparsity: "Sparsity | str | float") -> np.ndarray:
    """Keep mask of magnitude pruning (N:M: ``nm.keep_mask(|w|, n, m, axis=1)``, the mask of ``nm.prune``)."""
    return _keep_from_score(np.abs(np.asarray(w, dtype=np.float64)), parse_sparsity(sparsity))


def wanda_mask(w: np.ndarray, act_norm: np.ndarray, sparsity: "Sparsity | str | float") -> np.ndarray:
    """Keep mask of Wanda: score ``|W_ij| * ||x_j||_2``, compared within each N:M group (or row)."""
    wf = np.asarray(w, dtype=np.float64)
    a = np.asarray(act_norm, dtype=np.float64).reshape(-1)
    if a.shape != (wf.shape[1],):
        raise ShapeError(f"wanda: activation norms must have shape ({wf.shape[1]},), not {a.shape}")
    return _keep_from_score(np.abs(wf) * a[None, :], parse_sparsity(sparsity))


# --------------------------------------------------------------------------------------------
# calibration statistics
# --------------------------------------------------------------------------------------------


class HessianAccumulator:
    """Running ``X^T X`` (float64 sum of float32 products) and token count of one layer's inputs.

    ``hessian()`` is SparseGPT's ``H = 2/n * X^T X``; ``act_norm()`` Wanda's ``||x_j||_2``.  With
    ``full=False`` only the squared column norms are kept (Wanda needs nothing else).  ``add(x,
    target=x_dense)`` also accumulates the cross term ``X_dense^T X`` used to aim the pruned layer
    at the *dense* model's output (see :func:`prune_layer`'s ``target``).
    """

    def __init__(self, in_features: int, *, full: bool = True, name: str = "layer") -> None:
        if not isinstance(in_features, (int, np.integer)) or in_features < 1:
            raise ShapeError(f"{name}: in_features must be a positive int, not {in_features!r}")
        self.in_features = int(in_features)
        self.name = name
        self.full = full
        self.xtx = np.zeros((self.in_features, self.in_features) if full else (self.in_features,), dtype=np.float64)
        self.cross: "np.ndarray | None" = None
        self.sum_x = np.zeros(self.in_features, dtype=np.float64)
        self.sum_target: "np.ndarray | None" = None
        self.count = 0

    def _rows(self, x: np.ndarray, what: str) -> np.ndarray:
        xf = intq.check_finite(x, f"{self.name} {what}")
        if xf.ndim < 1 or xf.shape[-1] != self.in_features:
            raise ShapeError(f"{self.name}: {what} must be [..., {self.in_features}], not shape {xf.shape}")
        return np.ascontiguousarray(xf.reshape(-1, self.in_features), dtype=np.float32)

    def add(self, x: np.ndarray, target: "np.ndarray | None" = None) -> None:
        """Accumulate inputs ``x[..., in]`` (finite); ``target`` = the dense model's inputs, same shape."""
        x2 = self._rows(x, "calibration input")
        if self.full:
            self.xtx += x2.T @ x2
        else:
            self.xtx += np.einsum("ij,ij->j", x2, x2, dtype=np.float64)
        self.sum_x += x2.sum(axis=0, dtype=np.float64)
        if target is not None:
            t2 = self._rows(target, "dense-model calibration input")
            if t2.shape != x2.shape:
                raise ShapeError(f"{self.name}: dense inputs {t2.shape} and pruned inputs {x2.shape} differ")
            if self.full:
                self.cross = (t2.T @ x2).astype(np.float64) + (0.0 if self.cross is None else self.cross)
            self.sum_target = t2.sum(axis=0, dtype=np.float64) + (0.0 if self.sum_target is None else self.sum_target)
        self.count += x2.shape[0]

    def hessian(self) -> np.ndarray:
        """``2/n * X^T X`` (a fresh array)."""
        if self.count == 0:
            raise ShapeError(f"{self.name}: no calibration inputs were recorded")
        if not self.full:
            raise ShapeError(f"{self.name}: this accumulator keeps column norms only (full=False)")
        return self.xtx * (2.0 / self.count)

    def act_norm(self) -> np.ndarray:
        """``||x_j||_2`` over all recorded tokens, per input channel."""
        return np.sqrt(np.maximum(np.diag(self.xtx) if self.full else self.xtx, 0.0))


def min_calibration_tokens(method: str, in_features: int) -> int:
    """Tokens (rows of ``X``) a method needs: SparseGPT ``in`` (a full-rank Hessian), Wanda 1, magnitude 0."""
    return {"magnitude": 0, "wanda": 1, "sparsegpt": int(in_features)}[_check_method(method)]


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise FormatError(f"unknown pruning method {method!r}; expected one of {', '.join(METHODS)}")
    return method


def _check_format(fmt: str) -> str:
    if fmt not in WEIGHT_FORMATS:
        raise FormatError(f"unknown weight format {fmt!r}; expected one of {', '.join(WEIGHT_FORMATS)}")
    return fmt


def reconstruction_error(w: np.ndarray, w_hat: np.ndarray, x: "np.ndarray | None" = None, *,
                         hessian: "np.ndarray | None" = None) -> float:
    """Relative output error ``||X (W - W_hat)^T||^2 / ||X W^T||^2`` (from ``x`` or ``hessian`` ~ X^T X)."""
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    w64 = np.asarray(w, np.float64)
    if hessian is None:
        if x is None:
            raise ShapeError("reconstruction_error needs calibration inputs x or a hessian")
        x2 = np.asarray(x, np.float64).reshape(-1, w64.shape[1])
        return float(np.sum((x2 @ d.T) ** 2) / max(float(np.sum((x2 @ w64.T) ** 2)), 1e-300))
    h = np.asarray(hessian, np.float64)
    return float(np.sum((d @ h) * d) / max(float(np.sum((w64 @ h) * w64)), 1e-300))


# --------------------------------------------------------------------------------------------
# quantizers
# --------------------------------------------------------------------------------------------


def _slots(w: np.ndarray, keep: np.ndarray, slot: "Sparsity | None") -> "tuple[np.ndarray, nm.NMCompressed | None]":
    """Compressed slots [out, slots] of a pruned weight (dense row for unstructured / no pattern)."""
    pruned = np.where(keep, w, 0.0).astype(np.float32)
    if slot is None or not slot.structured:
        return pruned, None
    c = nm.compress(pruned, slot.n, slot.m, axis=1)  # an N:M-sparse matrix keeps all its nonzeros
    return np.ascontiguousarray(c.values, dtype=np.float32), c


def _unslots(values: np.ndarray, c: "nm.NMCompressed | None") -> np.ndarray:
    return values if c is None else nm.decompress(replace(c, values=values.astype(np.float32)))


def _pad_even(x: np.ndarray) -> np.ndarray:
    return x if x.shape[-1] % 2 == 0 else np.concatenate([x, np.zeros((x.shape[0], 1), x.dtype)], axis=1)


def _count_victims(codes: np.ndarray, fm: ovp.OVPFormat) -> int:
    if fm.bits == 4:
        return int(np.count_nonzero((codes & 0xF) == 8) + np.count_nonzero((codes >> 4) == 8))
    return int(np.count_nonzero(codes == fm.victim_code))


@dataclass(frozen=True)
class _Grid:
    """Per-row quantizer of one layer: format, scales ``[out, 1]`` and OVP type."""

    fmt: str
    scale: "np.ndarray | None" = None
    ovp_format: "ovp.OVPFormat | None" = None

    @staticmethod
    def search(fmt: str, slots: np.ndarray, name: str) -> "_Grid":
        """Scales by MSE search on compressed slots ``[out, slots]`` (as accuracy.compress_weight)."""
        if fmt == "fp32":
            return _Grid(fmt)
        if fmt in ("int8", "int4"):
            return _Grid(fmt, intq.search_int_scale(slots, FORMATS[fmt].bits, "row").astype(np.float32).reshape(-1, 1))
        fm, s = ovp.choose_format(_pad_even(slots), FORMATS[fmt].bits, "row", name=name)
        return _Grid(fmt, np.asarray(s, np.float32).reshape(-1, 1), fm)

    def column(self, col: np.ndarray, name: str) -> np.ndarray:
        """Quantize one weight column ``[out]`` element-wise (float64 in and out)."""
        if self.fmt == "fp32":
            return col
        s = self.scale[:, 0].astype(np.float64)
        if self.ovp_format is None:
            lo, hi = intq.int_range(FORMATS[self.fmt].bits)
            return np.clip(np.rint(col / s), lo, hi) * s
        # partner 0 is never an outlier: each element goes to the nearest point of normal U outlier
        pair = np.stack([col, np.zeros_like(col)], axis=1).astype(np.float32)
        v = ovp.quantize_values(pair, self.scale, self.ovp_format, name=name)[:, 0]
        return v.astype(np.float64) * s

    def encode(self, slots: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(dequantized slots, hardware codes, storage bytes of the values + scales + tag, outliers)."""
        rows, cols = slots.shape
        if self.fmt == "fp32":
            return slots.astype(np.float32), slots.astype(np.float32), 4 * slots.size, 0
        if self.ovp_format is None:
            bits = FORMATS[self.fmt].bits
            codes = intq.quantize_int(slots, self.scale, bits, name=name)
            return intq.dequantize_int(codes, self.scale), codes, rows * (-(-cols * bits // 8) + 4), 0
        padded = _pad_even(slots)
        codes = ovp.encode(padded, self.scale, self.ovp_format, name=name)
        deq = ovp.dequantize(codes, self.scale, self.ovp_format)[:, :cols]
        nbytes = int(codes.nbytes + 4 * self.scale.size + 1)
        return deq.astype(np.float32), codes, nbytes, _count_victims(codes, self.ovp_format)


# --------------------------------------------------------------------------------------------
# one layer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PrunedLayer:
    """A pruned (and quantized) linear layer: what the hardware runs, plus diagnostics.

    Attributes
    ----------
    name, method, weight_format : str
    sparsity : Sparsity
    weight : np.ndarray
        float32 ``[out, in]``: exactly the decode of ``codes`` times ``scale`` (zeros where pruned).
    mask : np.ndarray
        bool ``[out, in]`` keep mask (``weight`` is zero outside it; a kept weight may round to 0).
    scale : np.ndarray or None
        float32 ``[out, 1]`` per-row scales (None for fp32).
    codes : np.ndarray
        Hardware codes of the compressed slots (int codes, packed OVP bytes, or the fp32 slots).
    indices : np.ndarray or None
        uint8 ``[out, slots]`` position of every slot inside its group (None when unstructured).
    slot_pattern : Sparsity or None
        The pattern the slots are stored on (the hardware's; None when unstructured).
    ovp_format : str
        OVP normal type (``""`` otherwise).
    nbytes : int
        Values + scales + tag + N:M indices, each row padded to whole bytes.
    outliers : int
        OVP pairs holding an outlier.
    damp : float or None
        SparseGPT dampening used (fraction of the mean Hessian diagonal).
    damp_raised : bool
        True when the requested dampening failed Cholesky and was raised.
    victims_changed : int
        SparseGPT + OVP: elements whose sweep value the final pair rule changed (victims).
    rel_error : float or None
        ``||X (W - W_hat)^T||^2 / ||X W^T||^2`` on the calibration inputs.
    bias_shift : np.ndarray or None
        float32 ``[out]``: ``W mean(x_goal) - W_hat mean(x)`` over the calibration tokens; adding
        it to the bias removes the mean output error (bias correction).
    tokens : int
        Calibration tokens used.
    seconds : float
    """

    name: str
    method: str
    sparsity: Sparsity
    weight_format: str
    weight: np.ndarray
    mask: np.ndarray
    scale: "np.ndarray | None"
    codes: np.ndarray
    indices: "np.ndarray | None" = None
    slot_pattern: "Sparsity | None" = None
    ovp_format: str = ""
    nbytes: int = 0
    outliers: int = 0
    damp: "float | None" = None
    damp_raised: bool = False
    victims_changed: int = 0
    rel_error: "float | None" = None
    bias_shift: "np.ndarray | None" = None
    tokens: int = 0
    seconds: float = 0.0


def _inverse_cholesky(h: np.ndarray, damp: float, auto_damp: bool, name: str) -> tuple[np.ndarray, float, bool]:
    """Upper Cholesky factor of ``(H + damp * mean(diag H) * I)^-1``, raising ``damp`` x10 on failure."""
    mean_diag = float(np.mean(np.diag(h)))
    tried = []
    d = damp
    while True:
        hd = h.copy()
        hd[np.diag_indices_from(hd)] += d * mean_diag
        ok = True
        try:
            low = np.linalg.cholesky(hd)
            piv = np.diag(low) ** 2
            ok = bool(np.all(np.isfinite(low)) and piv.min() > 1e-12 * mean_diag)
            if ok:
                inv_low = np.linalg.inv(low)               # H^-1 = L^-T L^-1
                hinv = inv_low.T @ inv_low
                u = np.linalg.cholesky(hinv).T              # upper factor of H^-1
                ok = bool(np.all(np.isfinite(u)))
        except np.linalg.LinAlgError:
            ok = False
        if ok:
            return u, d, d != damp
        tried.append(d)
        if not auto_damp or d >= MAX_DAMP:
            raise FormatError(
                f"{name}: the Hessian is singular (Cholesky failed) with dampening "
                f"{', '.join(f'{t:g}' for t in tried)} x mean diag {mean_diag:.6g}; "
                + ("enable automatic dampening or pass a larger damp (e.g. 0.01)" if not auto_damp
                   else f"the calibration inputs are degenerate even at damp {MAX_DAMP:g}"))
        d = max(d * 10.0, 1e-4) if d > 0 else 1e-4


def _sparsegpt(w: np.ndarray, h: np.ndarray, sp: Sparsity, grid: _Grid, *, blocksize: int, damp: float,
               auto_damp: bool, name: str) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """SparseGPT sweep; returns (quantized weight float64, keep mask, damp used, raised)."""
    W = w.astype(np.float64).copy()
    rows, cols = W.shape
    h = h.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    W[:, dead] = 0.0
    u, d_used, raised = _inverse_cholesky(h, damp, auto_damp, name)
    keep = np.zeros(W.shape, dtype=bool)
    Q = np.zeros_like(W)
    m = sp.m if sp.structured else 0
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        U1 = u[i1:i2, i1:i2]
        diag1 = np.diag(U1)
        if not sp.structured:
            score = W1**2 / diag1[None, :] ** 2
            drop = int(round(sp.fraction * score.size))
            k1 = np.ones(score.size, dtype=bool)
            k1[np.argsort(score.ravel(), kind="stable")[:drop]] = False
            keep[:, i1:i2] = k1.reshape(score.shape)
        for i in range(count):
            j = i1 + i
            if m and j % m == 0:  # blocks are multiples of m: a group never straddles two blocks
                hi = min(i + m, count)
                score = W1[:, i:hi] ** 2 / diag1[None, i:hi] ** 2
                keep[:, j : i1 + hi] = nm.keep_mask(score, sp.n, m, axis=1)
            col = W1[:, i]
            q = np.where(keep[:, j], col, 0.0)
            q = grid.column(q, name)
            Q1[:, i] = q
            err = (col - q) / diag1[i]
            W1[:, i:] -= np.outer(err, U1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ u[i1:i2, i2:]
    return W, keep, d_used, raised


def _check_layer_inputs(w: np.ndarray, name: str) -> np.ndarray:
    wf = intq.check_finite(w, f"{name} weight")
    if wf.ndim != 2 or 0 in wf.shape:
        raise ShapeError(f"{name}: weight must be a non-empty 2-D [out, in] matrix, not shape {wf.shape}")
    return wf


def prune_layer(
    w: np.ndarray,
    method: str,
    sparsity: "Sparsity | str | float",
    *,
    weight_format: str = "fp32",
    stats: "HessianAccumulator | None" = None,
    blocksize: int = 128,
    damp: float = DEFAULT_DAMP,
    auto_damp: bool = True,
    slot_pattern: "Sparsity | str | None" = None,
    target: str = "pruned",
    name: str = "layer",
) -> PrunedLayer:
    """Prune and quantize one weight ``[out, in]``.

    Parameters
    ----------
    w : np.ndarray
        float weight, rows = output channels.
    method : str
        ``magnitude``, ``wanda`` or ``sparsegpt``.
    sparsity : Sparsity, str or float
        ``"N:M"`` or an unstructured pruned fraction.
    weight_format : str
        ``fp32``, ``int8``, ``int4``, ``ovp4`` or ``ovp8``.
    stats : HessianAccumulator, optional
        Calibration inputs of this layer (required by wanda and sparsegpt).
    blocksize : int
        SparseGPT column block.
    damp : float
        SparseGPT dampening as a fraction of the mean Hessian diagonal.
    auto_damp : bool
        Raise ``damp`` x10 when Cholesky fails (else a FormatError).
    slot_pattern : Sparsity or str, optional
        The pattern the weights are stored on (the hardware's, e.g. 1:2 runs as 2:4); default
        ``sparsity``.  OVP pairs form on these slots.
    target : str
        ``"pruned"`` (SparseGPT: minimise ``||(W - W_hat) X||``, X = inputs from the already pruned
        model) or ``"dense"`` (minimise ``||W X_dense - W_hat X||``: SparseGPT runs on the
        least-squares correction ``W C (X^T X + damp)^-1``, ``C = X_dense^T X``; needs ``stats``
        built with ``target=``).  Only SparseGPT uses it.
    name : str
        Layer name for messages.

    Raises
    ------
    FormatError
        Unknown method / format / pattern, NaN or inf, a singular Hessian without auto dampening.
    ShapeError
        Bad shapes, or too few calibration tokens (the message says how many are needed).
    """
    t0 = time.perf_counter()
    _check_method(method)
    _check_format(weight_format)
    sp = parse_sparsity(sparsity)
    wf = _check_layer_inputs(w, name)
    slot = parse_sparsity(slot_pattern) if slot_pattern is not None else sp
    if not isinstance(blocksize, int) or isinstance(blocksize, bool) or blocksize < 1:
        raise FormatError(f"blocksize must be a positive int, not {blocksize!r}")
    if not isinstance(damp, (int, float)) or isinstance(damp, bool) or not 0 <= damp <= MAX_DAMP:
        raise FormatError(f"damp must be a number in [0, {MAX_DAMP:g}] (fraction of the mean Hessian diagonal), not {damp!r}")
    if target not in ("pruned", "dense"):
        raise FormatError(f"target must be 'pruned' or 'dense', not {target!r}")
    need = min_calibration_tokens(method, wf.shape[1])
    if need:
        if stats is None:
            raise ShapeError(f"{name}: {method} needs calibration inputs (at least {need} tokens)")
        if stats.in_features != wf.shape[1]:
            raise ShapeError(f"{name}: calibration has {stats.in_features} input channels, weight has {wf.shape[1]}")
        if stats.count < need:
            raise ShapeError(
                f"{name}: calibration has {stats.count} tokens, but {method} needs at least {need} "
                f"(one per input channel, for a full-rank {wf.shape[1]}x{wf.shape[1]} Hessian); "
                f"add calibration samples")
    d_used, raised, victims_changed = None, False, 0
    if method == "sparsegpt":
        h = stats.hessian()
        w_goal = wf
        if target == "dense":
            if stats.cross is None:
                raise ShapeError(f"{name}: target='dense' needs the dense model's inputs (HessianAccumulator.add(x, target=...))")
            reg = stats.xtx.copy()
            reg[np.diag_indices_from(reg)] += max(float(damp), 1e-4) * float(np.mean(np.diag(reg))) + 1e-30
            w_goal = np.linalg.solve(reg, (wf.astype(np.float64) @ stats.cross).T).T
        proxy_keep = wanda_mask(w_goal, stats.act_norm(), sp)
        grid = _Grid.search(weight_format, _slots(w_goal, proxy_keep, slot)[0], name)
        bs = blocksize if not sp.structured or blocksize % sp.m == 0 else blocksize - blocksize % sp.m or sp.m
        wq, keep, d_used, raised = _sparsegpt(w_goal, h, sp, grid, blocksize=bs, damp=float(damp),
                                              auto_damp=auto_damp, name=name)
        slots, comp = _slots(wq.astype(np.float32), keep, slot)
        deq, codes, nbytes, outliers = grid.encode(slots, name)
        final = _unslots(deq, comp).astype(np.float32)
        victims_changed = int(np.count_nonzero(final != wq.astype(np.float32)))
    else:
        keep = magnitude_mask(wf, sp) if method == "magnitude" else wanda_mask(wf, stats.act_norm(), sp)
        slots, comp = _slots(wf, keep, slot)
        grid = _Grid.search(weight_format, slots, name)
        deq, codes, nbytes, outliers = grid.encode(slots, name)
        final = _unslots(deq, comp).astype(np.float32)
    if slot.structured:
        nbytes += wf.shape[0] * (-(-(-(-wf.shape[1] // slot.m) * slot.n) * max(0, int(slot.m - 1).bit_length()) // 8))
    final = np.where(keep, final, np.float32(0))  # a dead column zeroed in the sweep stays pruned
    rel = bias_shift = None
    if stats is not None and stats.count:
        if stats.full:
            rel = reconstruction_error(wf, final, hessian=stats.xtx)
        mean_in = stats.sum_x / stats.count
        mean_goal = mean_in if stats.sum_target is None else stats.sum_target / stats.count
        bias_shift = (wf.astype(np.float64) @ mean_goal - final.astype(np.float64) @ mean_in).astype(np.float32)
    return PrunedLayer(name=name, method=method, sparsity=sp, weight_format=weight_format, weight=final, mask=keep,
                       scale=grid.scale, codes=codes, indices=None if comp is None else comp.indices,
                       slot_pattern=slot if comp is not None else None, ovp_format=grid.ovp_format.name if grid.ovp_format else "",
                       nbytes=int(nbytes), outliers=outliers, damp=d_used, damp_raised=raised,
                       victims_changed=victims_changed, rel_error=rel, bias_shift=bias_shift,
                       tokens=stats.count if stats else 0,
                       seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# a whole model, sequentially
# --------------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    """Pruned layers of a model and a summary.

    ``weights()`` maps names to the float32 weights the hardware runs (for ``model.with_weights``);
    ``layers`` keeps masks, scales and codes (the hook for sparse fine-tuning); ``biases`` the
    corrected biases when bias correction ran.
    """

    method: str
    sparsity: Sparsity
    weight_format: str
    layers: dict[str, PrunedLayer] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    tokens: int = 0
    damp_raised: list[str] = field(default_factory=list)
    biases: dict[str, np.ndarray] = field(default_factory=dict)

    def weights(self) -> dict[str, np.ndarray]:
        """``name -> weight [out, in]`` float32."""
        return {n: layer.weight for n, layer in self.layers.items()}

    def summary(self) -> dict[str, float]:
        """bytes/weight, mean relative reconstruction error, outlier pairs %, damp range."""
        nbytes = sum(layer.nbytes for layer in self.layers.values())
        n = sum(layer.weight.size for layer in self.layers.values())
        rel = [layer.rel_error for layer in self.layers.values() if layer.rel_error is not None]
        damps = [layer.damp for layer in self.layers.values() if layer.damp is not None]
        outl = sum(layer.outliers for layer in self.layers.values())
        return {
            "bytes_per_weight": nbytes / max(n, 1),
            "recon_rel_err": float(np.mean(rel)) if rel else float("nan"),
            "outlier_pairs_pct": 100.0 * outl / max(n // 2, 1) if self.weight_format.startswith("ovp") else 0.0,
            "flint4_layers": float(sum(layer.ovp_format == "ovp4-flint4" for layer in self.layers.values())),
            "damp_max": max(damps) if damps else 0.0,
            "damp_raised_layers": float(len(self.damp_raised)),
            "victims_changed": float(sum(layer.victims_changed for layer in self.layers.values())),
            "prune_seconds": self.seconds,
            "prune_cpu_seconds": self.cpu_seconds,
            "calib_tokens": float(self.tokens),
        }


class _Stop(Exception):
    """Raised inside calibration threads once the last layer is pruned (skips the rest of the model)."""


class _Sequential:
    """Barrier-synchronised calibration threads; the barrier action prunes the current layer."""

    def __init__(self, n: int, names: Sequence[str], prune: Callable[[str, list[np.ndarray]], None]) -> None:
        self.n = n
        self.todo = list(names)
        self.wanted = set(names)
        self.prune = prune
        self.inputs: list[Any] = [None] * n
        self.current: list[Any] = [None] * n
        self.error: "BaseException | None" = None
        self.barrier = threading.Barrier(n, action=self._action)

    def _action(self) -> None:
        try:
            name = self.current[0]
            if any(c != name for c in self.current) or not self.todo or name != self.todo[0]:
                raise ShapeError(f"calibration samples reached different layers: {sorted(set(map(str, self.current)))}")
            self.prune(name, list(self.inputs))
            self.todo.pop(0)
        except BaseException as exc:  # re-raised in the calling thread
            self.error = exc
            raise

    def hook(self, i: int) -> Callable[[str, np.ndarray], np.ndarray]:
        def h(name: str, x: np.ndarray) -> np.ndarray:
            if name not in self.wanted:
                return x
            self.inputs[i], self.current[i] = x, name
            self.barrier.wait()
            self.inputs[i] = None
            if not self.todo:
                raise _Stop
            return x
        return h

    def run(self, run_one: Callable[[int, Callable[[str, np.ndarray], np.ndarray]], None]) -> None:
        def target(i: int) -> None:
            try:
                run_one(i, self.hook(i))
            except (_Stop, threading.BrokenBarrierError):
                pass
            except BaseException as exc:
                if self.error is None:
                    self.error = exc
                self.barrier.abort()
            else:
                if self.todo and self.error is None:  # finished without reaching every layer
                    self.error = ShapeError(f"calibration never reached layers {self.todo[:3]}...")
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.error is not None:
            raise self.error
        if self.todo:
            raise ShapeError(f"calibration never reached layers {self.todo[:3]}")


def _set_linear(model: Any, name: str, w: np.ndarray, bias: "np.ndarray | None" = None) -> None:
    entry = model.linear[name]
    if isinstance(entry, tuple):
        model.linear[name] = (w, entry[1] if bias is None else bias)
    else:
        model.linear[name] = w


def prune_model(
    model: Any,
    method: str,
    sparsity: "Sparsity | str | float",
    *,
    weight_format: str = "fp32",
    samples: "Sequence[Any] | None" = None,
    run_one: "Callable[[Any, Any, Callable[[str, np.ndarray], np.ndarray]], None] | None" = None,
    layers: "Iterable[str] | None" = None,
    config: Any = None,
    blocksize: int = 128,
    damp: float = DEFAULT_DAMP,
    auto_damp: bool = True,
    target: str = "pruned",
    bias_correction: bool = False,
    progress: "Callable[[str], None] | None" = None,
) -> PruneResult:
    """Prune every (or the selected) linear layer of a :mod:`sparsa.models.real` model, sequentially.

    Parameters
    ----------
    model : MiniLM or SmolLM2
        Has ``linear_names``, ``linear`` and ``with_weights``; it is not modified.
    method, sparsity, weight_format, blocksize, damp, auto_damp, target
        See :func:`prune_layer`.  ``target="dense"`` also runs the unpruned model on every sample
        (twice the forward work) to get the dense inputs of every layer.
    samples : sequence
        Calibration samples (not needed for magnitude).
    run_one : callable
        ``run_one(model, sample, hook)`` runs ``model`` on one sample with ``hook(name, x) -> x``
        on every linear input.
    layers : iterable of str, optional
        Layers to prune (default all), in execution order.
    config : AcceleratorConfig, optional
        When given, the pattern must run on it (checked before any work) and OVP pairs form on
        its hardware slots.
    bias_correction : bool
        Add :attr:`PrunedLayer.bias_shift` to the bias of layers that have one (MiniLM).
    progress : callable, optional
        Called with one line per pruned layer.

    Returns
    -------
    PruneResult
    """
    t0, c0 = time.perf_counter(), time.process_time()
    _check_method(method)
    _check_format(weight_format)
    sp = parse_sparsity(sparsity)
    if target not in ("pruned", "dense"):
        raise FormatError(f"target must be 'pruned' or 'dense', not {target!r}")
    slot = None
    if config is not None:
        hw = check_hardware(config, sp)
        slot = Sparsity(n=hw.n, m=hw.m)
    names = list(model.linear_names if layers is None else layers)
    known = set(model.linear_names)
    for n_ in names:
        if n_ not in known:
            raise ShapeError(f"model has no linear layer {n_!r}")
    order = [n_ for n_ in model.linear_names if n_ in set(names)]
    weights = model.linear_weights()
    result = PruneResult(method, sp, weight_format)
    kw = dict(weight_format=weight_format, blocksize=blocksize, damp=damp, auto_damp=auto_damp,
              slot_pattern=slot, target=target if method == "sparsegpt" else "pruned")

    def record(layer: PrunedLayer) -> None:
        result.layers[layer.name] = layer
        if layer.damp_raised:
            result.damp_raised.append(f"{layer.name}: damp {damp:g} -> {layer.damp:g}")
        if progress:
            err = "" if layer.rel_error is None else f" rel err {layer.rel_error:.4f}"
            dmp = "" if layer.damp is None else f" damp {layer.damp:g}"
            progress(f"{layer.name} {method} {sp.label} {weight_format}:{err}{dmp} {layer.seconds:.2f} s")

    if method == "magnitude":
        for n_ in order:
            record(prune_layer(weights[n_], method, sp, name=n_, **kw))
        result.seconds, result.cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        return result
    if samples is None or run_one is None or len(samples) == 0:
        raise ShapeError(f"{method} needs calibration samples and a run_one function")
    need = max(min_calibration_tokens(method, weights[n_].shape[1]) for n_ in order)
    dense_target = target == "dense" or bias_correction
    work = model.with_weights({})  # a copy that owns its `linear` dict: pruned weights go there
    n = len(samples)
    cache: dict[str, Any] = {"xs": None, "stats": None}

    def prune_one(name: str, xs: list[np.ndarray]) -> None:
        w = weights[name]
        if cache["xs"] is not None and all(a is b for a, b in zip(xs, cache["xs"])):
            stats = cache["stats"]  # q/k/v (and gate/up) share their input: one Hessian
        else:
            stats = HessianAccumulator(w.shape[1], full=method == "sparsegpt", name=name)
            for i in range(n):
                stats.add(xs[i], xs[n + i] if dense_target else None)
            if stats.count < need:
                raise ShapeError(
                    f"calibration has {stats.count} tokens, but {method} needs at least {need} "
                    f"(one per input channel of the widest layer, for a full-rank Hessian); add calibration samples")
        cache["xs"], cache["stats"] = xs, stats
        layer = prune_layer(w, method, sp, stats=stats, name=name, **kw)
        bias = None
        entry = work.linear[name]
        if bias_correction and isinstance(entry, tuple) and entry[1] is not None and layer.bias_shift is not None:
            bias = (np.asarray(model.linear[name][1], np.float32) + layer.bias_shift).astype(np.float32)
            result.biases[name] = bias
        _set_linear(work, name, layer.weight, bias)
        result.tokens = stats.count
        record(layer)

    seq = _Sequential(2 * n if dense_target else n, order, prune_one)
    seq.run(lambda i, hook: run_one(work, samples[i], hook) if i < n else run_one(model, samples[i - n], hook))
    result.seconds, result.cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    return result
