"""Checks and passes on a GEMM's weight matrix that every datapath's compiler shares.

:func:`sparsa.compiler.gemm.compile_gemm` (systolic array) and
:func:`sparsa.compiler.chain.compile_chain_gemm` (DSP chain) take the same arguments and refuse
the same bad input with the same messages; the steps they share live here: the matrix check
(2-D, no zero dimension, values representable in the weight type), the requested pattern, the
N:M prune (or check) along k, and the accumulator-overflow bound of the reduction.
"""

from __future__ import annotations

import numpy as np

from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.formats import nm
from sparsa.formats.nm import NMPattern
from sparsa.models.reference import check_int_range, check_ovp4_range

__all__ = ["weight_matrix", "check_weight_values", "requested_pattern", "prune_to_pattern", "check_reduction_fits"]


def weight_matrix(config: AcceleratorConfig, weights: np.ndarray) -> np.ndarray:
    """``weights`` as an int64 ``W[k, n]`` checked against ``config``'s weight type.

    Raises
    ------
    ShapeError
        Not 2-D, or a zero dimension (the message quotes the shape).
    FormatError
        A value the weight type cannot hold (int range, or OVP-4's ``-96..96`` in int4 units).
    """
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ShapeError(f"weights must be a 2-D matrix W[k, n], not shape {w.shape}")
    if 0 in w.shape:
        raise ShapeError(f"weights shape {w.shape} has a zero dimension")
    return check_weight_values(config, w)


def check_weight_values(config: AcceleratorConfig, values: np.ndarray) -> np.ndarray:
    """``values`` as int64, each representable in ``config``'s weight type (raises FormatError)."""
    if config.weight_is_ovp:
        return check_ovp4_range(values, "weights")
    return check_int_range(values, config.weight_bits, "weights")


def requested_pattern(config: AcceleratorConfig, pattern: "NMPattern | str | None") -> NMPattern:
    """The layer's N:M pattern: ``pattern`` parsed (``"dense"`` on the hardware group), or the config's default."""
    if pattern is None:
        return config.sparsity.default_pattern
    return NMPattern.parse(pattern, dense_m=config.group_size)


def prune_to_pattern(w: np.ndarray, req: NMPattern, prune: bool) -> np.ndarray:
    """Magnitude-prune ``w`` to ``req`` along k (``prune=True``), or check it already is.

    Raises
    ------
    FormatError
        ``prune=False`` and ``w`` is not ``req``-sparse along k.
    """
    if prune:
        return nm.prune(w, req.n, req.m, axis=0)
    if not nm.is_nm_sparse(w, req.n, req.m, axis=0):
        raise FormatError(f"weights are not {req}-sparse along k (pass prune=True to prune them)")
    return w


def check_reduction_fits(config: AcceleratorConfig, slots: int, k: int, req: NMPattern, *,
                         scale_groups: int = 0) -> None:
    """Refuse a reduction of ``slots`` products whose worst-case sum overflows the accumulator.

    With activation scales (``scale_groups > 0``) the sum is ``sum_g m[t, g] * partial_g`` with
    every partial bounded by ``slots`` x the worst product: at most that times the largest
    mantissa ``2**mantissa_bits - 1``, whatever the number of groups.

    Raises
    ------
    ConfigError
        The accumulator is too narrow (the message gives the bits it needs).
    """
    what = f"{slots} {config.types.weight} x {config.types.activation} products"
    if scale_groups:
        mb = config.act_scale.mantissa_bits
        worst = slots * config.worst_product() * ((1 << mb) - 1)
        if worst > (1 << (config.accumulator_bits - 1)) - 1:
            raise ConfigError(
                f"types.accumulator_bits={config.accumulator_bits} cannot hold {what} scaled by {mb}-bit mantissas "
                f"(k={k} at {req}, {scale_groups} scale group(s)); needs {worst.bit_length() + 1} bits")
        return
    if slots > config.max_reduction_slots():
        need = (slots * config.worst_product()).bit_length() + 1
        raise ConfigError(f"types.accumulator_bits={config.accumulator_bits} cannot hold {what} "
                          f"(k={k} at {req}); needs {need} bits")
