"""N:M masks for sparse training: BDWP, SR-STE and the dense baseline.

Weights are stored GEMM-style, ``W[k, n]`` with the reduction (input) axis first, as
:func:`sparsa.compiler.compile_gemm` takes them.  A training step of a layer runs three
GEMMs::

    forward        Y  = X  @ W_f          W_f = W * mask_f, N:M along k  (axis 0)
    input gradient dX = dY @ W_b^T        W_b = W * mask_b, N:M along n  (axis 1):
                                          W_b^T[n, k] is N:M along its own reduction axis
    weight grad.   dW = X^T @ dY          dense

Methods (``docs/training.md``):

``bdwp``
    Bidirectional weight pruning (SAT, TCAD'23): ``mask_f`` as above for the forward GEMM,
    an independent ``mask_b`` on ``W^T`` for the input-gradient GEMM, dense weight gradient
    applied to the dense weights (straight-through).
``srste``
    SR-STE (Zhou et al., ICLR'21): one mask along the input dimension, used in both the
    forward and the input-gradient GEMM (so the latter is *not* N:M along its reduction
    axis), and the weight gradient ``g + lambda * (1 - mask) * W`` with ``lambda = 2e-4``.
``dense``
    No masks.

Dense weights are always kept; masks are regenerated from their magnitudes every
``mask_interval`` optimizer steps (1 = every step).

Ragged axes
    A sparse axis whose length is not a multiple of ``M`` is **padded** by default, exactly
    like :mod:`sparsa.formats.nm` and the compiler do: the last group is short and
    keeps ``min(N, length)`` of its real elements.  ``ragged="refuse"`` raises
    :class:`~sparsa.errors.ShapeError` naming the layer, axis and size instead.

Tie-break: among equal magnitudes the lower index wins.  :func:`nm_mask` is the format's one
keep-mask (:func:`sparsa.formats.nm.keep_mask`) on ``|W|``, the mask :func:`sparsa.formats.nm.prune`
applies, so ``W * nm_mask(W, n, m, axis)`` equals ``nm.prune(W, n, m, axis)`` by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.formats.nm import check_nm, keep_mask, parse_nm

__all__ = ["METHODS", "SparseSpec", "nm_mask", "parse_spec"]

#: Training methods, in the order tables list them.
METHODS: tuple[str, ...] = ("dense", "bdwp", "srste")

#: SR-STE's default sparse-refined regularisation weight.
SRSTE_LAMBDA = 2e-4


def nm_mask(w: np.ndarray, n: int, m: int, axis: int = 0) -> np.ndarray:
    """Boolean mask keeping the ``n`` largest magnitudes in every group of ``m`` along ``axis``.

    ``keep_mask(|w|, n, m, axis)`` (:func:`sparsa.formats.nm.keep_mask`, the one N:M mask).

    Parameters
    ----------
    w : np.ndarray
        A 2-D (or higher) float or int tensor.
    n, m : int
        Keep ``n`` of every ``m`` consecutive elements along ``axis``.
    axis : int
        Axis the groups run along; a length that is not a multiple of ``m`` ends in a short
        group (padding, never kept ahead of a real element).

    Returns
    -------
    np.ndarray of bool
        Same shape as ``w``; exactly ``min(n, group length)`` True per group.
    """
    return keep_mask(np.abs(np.asarray(w)), n, m, axis)


@dataclass(frozen=True)
class SparseSpec:
    """How a network is trained sparse.

    Attributes
    ----------
    method : {"dense", "bdwp", "srste"}
        Training method.
    n, m : int
        The N:M pattern (``n == m`` for dense).
    mask_interval : int
        Optimizer steps between mask regenerations (1 = every step).
    ragged : {"pad", "refuse"}
        What to do with a sparse axis whose length is not a multiple of ``m``.
    srste_lambda : float
        SR-STE's regularisation weight.
    dense_layers : tuple of str
        Weight layers trained dense whatever the method (e.g. the first conv and the classifier,
        as N:M training papers usually keep them); see :meth:`for_layer`.
    """

    method: str = "dense"
    n: int = 1
    m: int = 1
    mask_interval: int = 1
    ragged: str = "pad"
    srste_lambda: float = SRSTE_LAMBDA
    dense_layers: tuple[str, ...] = ()

    def for_layer(self, name: str) -> SparseSpec:
        """The spec of weight layer ``name``: dense if it is listed in ``dense_layers``, else ``self``."""
        if self.sparse and name in self.dense_layers:
            return SparseSpec("dense", 1, 1, self.mask_interval, self.ragged, self.srste_lambda)
        return self

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"training method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.ragged not in ("pad", "refuse"):
            raise ConfigError(f"ragged must be 'pad' or 'refuse', not {self.ragged!r}")
        if type(self.mask_interval) is not int or self.mask_interval < 1:
            raise ConfigError(f"mask_interval must be a positive integer, not {self.mask_interval!r}")
        if self.method != "dense":
            check_nm(self.n, self.m)
        elif not 1 <= self.n <= self.m:
            raise FormatError(f"N:M needs 1 <= N <= M, got {self.n}:{self.m}")
        if self.method != "dense" and self.n == self.m:
            raise ConfigError(f"method {self.method!r} needs a sparse N:M pattern, not {self.n}:{self.m}")
        if not (self.srste_lambda >= 0 and np.isfinite(self.srste_lambda)):
            raise ConfigError(f"srste_lambda must be a finite number >= 0, not {self.srste_lambda!r}")

    @property
    def sparse(self) -> bool:
        """True for bdwp and srste."""
        return self.method != "dense"

    @property
    def pattern(self) -> str:
        """``"N:M"`` or ``"dense"``."""
        return f"{self.n}:{self.m}" if self.sparse else "dense"

    def check_axis(self, layer: str, axis_name: str, length: int) -> None:
        """Refuse a ragged sparse axis when ``ragged == "refuse"`` (no-op otherwise)."""
        if self.sparse and self.ragged == "refuse" and length % self.m:
            raise ShapeError(
                f"layer {layer!r}: {axis_name} = {length} is not a multiple of M = {self.m} "
                f"for {self.pattern} {self.method}; resize the layer or use ragged='pad' "
                f"(the last group is short and keeps min(N, its length))")

    def masks(self, w: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(mask_f, mask_b)`` for a weight ``W[k, n]`` (None where the GEMM is dense).

        ``mask_b`` is the mask of the input-gradient GEMM's weight ``W^T`` expressed on ``W``:
        for BDWP it runs along ``n`` (axis 1), for SR-STE it is ``mask_f`` itself.
        """
        if not self.sparse:
            return None, None
        fwd = nm_mask(w, self.n, self.m, axis=0)
        if self.method == "bdwp":
            return fwd, nm_mask(w, self.n, self.m, axis=1)
        return fwd, fwd


def parse_spec(method: str, sparsity: str, *, mask_interval: int = 1, ragged: str = "pad",
               srste_lambda: float = SRSTE_LAMBDA, dense_layers: tuple[str, ...] = ()) -> SparseSpec:
    """Build a :class:`SparseSpec` from CLI text (``"bdwp"``, ``"2:8"``).

    ``method="dense"`` ignores ``sparsity``.
    """
    if method == "dense":
        return SparseSpec("dense", 1, 1, mask_interval, ragged, srste_lambda)
    parsed = parse_nm(sparsity)
    if parsed is None:
        raise ConfigError(f"method {method!r} needs an N:M sparsity such as 2:8, not {sparsity!r}")
    return SparseSpec(method, parsed[0], parsed[1], mask_interval, ragged, srste_lambda, tuple(dense_layers))
