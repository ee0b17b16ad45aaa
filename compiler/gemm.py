"""Compile an N:M-sparse integer GEMM ``Y = A @ W`` into a :class:`~sparsa.compiler.program.Program`.

Passes: check and (optionally) prune the weights to the layer's N:M pattern, compress
them on the hardware's group size, check the accumulator can hold the reduction, tile
(:func:`sparsa.compiler.tiling.plan_tiling`), lay out the weight image and emit the
instruction stream.
"""

from __future__ import annotations

import numpy as np

from sparsa.compiler.program import ComputeStep, DrainStep, GemmShape, Program
from sparsa.compiler.tiling import plan_tiling
from sparsa.config import AcceleratorConfig, NMPattern
from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.isa import Instruction, Opcode
from sparsa.models.formats import nm
from sparsa.models.reference import check_int_range

__all__ = ["compile_gemm"]


def compile_gemm(
    config: AcceleratorConfig,
    weights: np.ndarray,
    m_rows: int,
    pattern: "NMPattern | str | None" = None,
    *,
    prune: bool = True,
    allow_overflow: bool = False,
) -> Program:
    """Compile ``Y[m_rows, n] = A[m_rows, k] @ W[k, n]`` for ``config``.

    Parameters
    ----------
    config : AcceleratorConfig
        Target hardware.
    weights : np.ndarray
        Integer weights ``W[k, n]`` (reduction axis first), representable in the weight type.
    m_rows : int
        Rows of the activation matrix (1 for a GEMV).
    pattern : NMPattern or str, optional
        The layer's sparsity (``"2:4"``, ``"dense"``); default ``config.sparsity.default``.
    prune : bool
        Magnitude-prune ``weights`` to ``pattern`` (documented tie-break in
        :mod:`sparsa.models.formats.nm`).  With ``False`` the weights must already satisfy it.
    allow_overflow : bool
        Compile even when the worst-case sum can overflow the accumulator (it then wraps,
        two's complement).  By default that is refused.

    Returns
    -------
    Program
    """
    config.require_supported()
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ShapeError(f"weights must be a 2-D matrix W[k, n], not shape {w.shape}")
    if 0 in w.shape:
        raise ShapeError(f"weights shape {w.shape} has a zero dimension")
    k, n = w.shape
    w = check_int_range(w, config.weight_bits, "weights")
    req = NMPattern.parse(pattern, dense_m=config.group_size) if pattern is not None \
        else config.sparsity.default_pattern
    tiling = plan_tiling(config, m_rows, k, n, req)
    hw = tiling.hw_pattern

    if prune:
        w = nm.prune(w, req.n, req.m, axis=0)
    elif not nm.is_nm_sparse(w, req.n, req.m, axis=0):
        raise FormatError(f"weights are not {req}-sparse along k (pass prune=True to prune them)")
    comp = nm.compress(w, hw.n, hw.m, axis=0)

    if not allow_overflow and tiling.slots > config.max_reduction_slots():
        need = (tiling.slots * (1 << (config.weight_bits + config.activation_bits - 2))).bit_length() + 1
        raise ConfigError(
            f"types.accumulator_bits={config.accumulator_bits} cannot hold {tiling.slots} "
            f"{config.types.weight} x {config.types.activation} products (k={k} at {req}); needs {need} bits")

    r, c = config.rows, config.cols
    kt_n, nt_n = tiling.ktiles, tiling.ntiles
    vals = np.zeros((kt_n * r, nt_n * c), dtype=np.int64)
    idxs = np.zeros((kt_n * r, nt_n * c), dtype=np.uint8)
    vals[: tiling.slots, :n] = comp.values
    idxs[: tiling.slots, :n] = comp.indices
    tile_values = vals.reshape(kt_n, r, nt_n, c).transpose(0, 2, 1, 3).copy()
    tile_indices = idxs.reshape(kt_n, r, nt_n, c).transpose(0, 2, 1, 3).copy()
    slot = np.arange(kt_n * r)
    groups = np.where(slot < tiling.slots, slot // hw.n, -1).reshape(kt_n, r)

    instructions: list[Instruction] = []
    loads: list[tuple[int, int]] = []
    computes: list[ComputeStep] = []
    drains: list[DrainStep] = []
    for item in tiling.schedule():
        if item[0] == "load":
            loads.append((item[1], item[2]))
            instructions.append(Instruction(Opcode.LOAD_W))
        elif item[0] == "compute":
            _, m0, rows, kt, nt, acc = item
            computes.append(ComputeStep(m0, rows, kt, nt, acc))
            instructions.append(Instruction(Opcode.COMPUTE, rows, acc))
        else:
            _, m0, rows, nt = item
            drains.append(DrainStep(m0, rows, nt))
            instructions.append(Instruction(Opcode.DRAIN, rows))
    instructions.append(Instruction(Opcode.HALT))

    return Program(
        config=config, shape=GemmShape(m_rows, k, n), pattern=req, hw_pattern=hw,
        instructions=tuple(instructions), tile_values=tile_values, tile_indices=tile_indices,
        row_groups=groups, load_order=tuple(loads), computes=tuple(computes), drains=tuple(drains),
        weights=w, meta={"tiling": tiling},
    )
