"""Compile an N:M-sparse integer GEMM ``Y = A @ W`` into a :class:`~sparsa.compiler.program.Program`.

Passes: check and (optionally) prune the weights to the layer's N:M pattern, compress
them on the hardware's group size, check the accumulator can hold the reduction, tile
(:func:`sparsa.compiler.tiling.plan_tiling`), lay out the weight image and emit the
instruction stream.

OVP-4 weights (``types.weight: ovp4``): the weights are integer values in int4 units
(``-96..96``).  After pruning and compressing, consecutive compressed slots ``(2i, 2i+1)`` of
a column form an OVP pair (an odd slot count is padded with one zero slot); with
``prune=True`` each pair is also rounded to the nearest OVP-4 pair (an outlier's partner
becomes its victim, 0), with ``prune=False`` every pair must already be representable.  The
pairs are encoded into the pair bytes the weight stream carries (``Program.weight_codes``).
:func:`compile_compressed_gemm` starts from already compressed weights (the quantizer uses it).

Activation scales (``act_scale.granularity`` token / group, docs/actscale-hardware.md): the
scale mantissas are run-time inputs, so the program's inputs become ``{"A": codes[m, k],
"S": mantissa[m, G]}`` and ``Y`` the scaled integer sums ``sum_g S[t, g] * (A_g[t] . W_g[n])``;
the compiler emits a LOAD_S before the first COMPUTE of every (row chunk, scale group) and the
overflow check bounds the scaled sum (largest mantissa ``2**mantissa_bits - 1``).
"""

from __future__ import annotations

import numpy as np

from sparsa.compiler.program import ComputeStep, DrainStep, GemmShape, Program, ScaleStep
from sparsa.compiler.tiling import plan_tiling
from sparsa.config import AcceleratorConfig
from sparsa.errors import ConfigError, FormatError, ShapeError
from sparsa.isa import Instruction, Opcode
from sparsa.formats import nm
from sparsa.formats.nm import NMPattern
from sparsa.compiler.weights import (check_reduction_fits, check_weight_values, prune_to_pattern, requested_pattern,
                                     weight_matrix)
from sparsa.models.reference import encode_ovp4_exact

__all__ = ["compile_systolic_gemm", "compile_compressed_gemm"]


def compile_systolic_gemm(
    config: AcceleratorConfig,
    weights: np.ndarray,
    m_rows: int,
    pattern: "NMPattern | str | None" = None,
    *,
    prune: bool = True,
    allow_overflow: bool = False,
    segments: "int | None" = None,
    packing: "str | None" = None,
) -> Program:
    """Compile ``Y[m_rows, n] = A[m_rows, k] @ W[k, n]`` for a systolic ``config``.

    :func:`sparsa.compiler.compile_gemm` dispatches here for ``datapath.kind: systolic``.

    Parameters
    ----------
    config : AcceleratorConfig
        Target hardware.
    weights : np.ndarray
        Integer weights ``W[k, n]`` (reduction axis first), representable in the weight type
        (OVP-4: integer values in int4 units, ``-96..96``; see the module docstring).
    m_rows : int
        Rows of the activation matrix (1 for a GEMV).
    pattern : NMPattern or str, optional
        The layer's sparsity (``"2:4"``, ``"dense"``); default ``config.sparsity.default``.
    prune : bool
        Magnitude-prune ``weights`` to ``pattern`` (documented tie-break in
        :mod:`sparsa.formats.nm`).  With ``False`` the weights must already satisfy it.
        With OVP-4 weights it also rounds every compressed pair to OVP-4 (``False``: the pairs
        must already be representable).
    allow_overflow : bool
        Compile even when the worst-case sum can overflow the accumulator (it then wraps,
        two's complement).  By default that is refused.
    segments : int, optional
        DSP chain only: the segments each chain is cut into (default: the compiler's choice, see
        :func:`~sparsa.compiler.chain.compile_chain_gemm`); refused for the systolic array.
    packing : str, optional
        DSP chain only (its packing mode); refused for the systolic array.

    Returns
    -------
    Program
    """
    for name, value in (("segments", segments), ("packing", packing)):
        if value is not None:
            raise ConfigError(f"{name}={value!r} applies to the DSP chain (datapath.kind: dsp_chain) only, "
                              f"not to {config.datapath.kind!r}")
    config.require_supported()
    w = weight_matrix(config, weights)
    k, n = w.shape
    req = requested_pattern(config, pattern)
    tiling = plan_tiling(config, m_rows, k, n, req)
    hw = tiling.hw_pattern
    w = prune_to_pattern(w, req, prune)
    comp = nm.compress(w, hw.n, hw.m, axis=0)
    _check_overflow(config, tiling, req, allow_overflow)
    if config.weight_is_ovp:
        comp = _fit_ovp4_pairs(comp, round_pairs=prune, hint=" (pass prune=True to round the pairs)")
        w = nm.decompress(comp).astype(np.int64)
    return _assemble(config, tiling, req, comp, w)


def compile_compressed_gemm(
    config: AcceleratorConfig,
    compressed: nm.NMCompressed,
    m_rows: int,
    pattern: "NMPattern | str | None" = None,
    *,
    allow_overflow: bool = False,
) -> Program:
    """Compile ``Y = A @ W`` from weights already N:M-compressed on the hardware's group size.

    Parameters
    ----------
    config : AcceleratorConfig
        Target hardware.
    compressed : sparsa.formats.nm.NMCompressed
        ``compress(W[k, n], n_hw, m_hw, axis=0)`` with integer values: the kept slots in the
        order they are loaded (for OVP-4 weights, slots ``(2i, 2i+1)`` of a column are a pair and
        must be exactly representable).  ``(n_hw, m_hw)`` must be the layer pattern mapped on
        the sparse MUX (:meth:`AcceleratorConfig.hardware_pattern`).
    m_rows : int
        Rows of the activation matrix.
    pattern : NMPattern or str, optional
        The layer's sparsity (reported in the program; default ``config.sparsity.default``).
    allow_overflow : bool
        As for :func:`compile_gemm`.

    Returns
    -------
    Program
    """
    config.require_supported()
    if not isinstance(compressed, nm.NMCompressed):
        raise TypeError(f"compressed must be an nm.NMCompressed, not {type(compressed).__name__}")
    if compressed.axis != 0 or compressed.values.ndim != 2:
        raise ShapeError(f"compressed weights must be W[k, n] compressed along axis 0, not axis {compressed.axis} "
                         f"of shape {compressed.values.shape}")
    k, n = compressed.length, compressed.values.shape[1]
    req = requested_pattern(config, pattern)
    tiling = plan_tiling(config, m_rows, k, n, req)
    hw = tiling.hw_pattern
    if (compressed.n, compressed.m) != (hw.n, hw.m):
        raise FormatError(f"weights are compressed as {compressed.n}:{compressed.m} but sparsity {req} runs as "
                          f"{hw} on this sparse MUX; compress with nm.compress(W, {hw.n}, {hw.m}, axis=0)")
    values = check_weight_values(config, compressed.values)
    comp = nm.NMCompressed(values=values, indices=np.asarray(compressed.indices, dtype=np.uint8), n=hw.n, m=hw.m,
                           axis=0, length=k)
    _check_overflow(config, tiling, req, allow_overflow)
    if config.weight_is_ovp:
        comp = _fit_ovp4_pairs(comp, round_pairs=False)
    return _assemble(config, tiling, req, comp, nm.decompress(comp).astype(np.int64))


def _check_overflow(config: AcceleratorConfig, tiling, req: NMPattern, allow_overflow: bool) -> None:
    if not allow_overflow:
        check_reduction_fits(config, tiling.slots, tiling.k, req, scale_groups=tiling.scale_groups)


def _fit_ovp4_pairs(comp: nm.NMCompressed, *, round_pairs: bool, hint: str = "") -> nm.NMCompressed:
    """Round (or check) the compressed slots of every column to OVP-4 pairs ``(2i, 2i+1)``."""
    from sparsa.formats import ovp

    vals = np.asarray(comp.values, dtype=np.int64)
    slots, n = vals.shape
    padded = np.zeros((slots + slots % 2, n), dtype=np.int64)   # odd slot count: one zero slot
    padded[:slots] = vals
    fitted = ovp.quantize_values(padded.T.astype(np.float32), 1.0, ovp.OVP4_INT4, name="weights").T
    fitted = fitted.astype(np.int64)[:slots]
    if not round_pairs:
        bad = fitted != vals
        if bad.any():
            s, j = (int(i) for i in np.argwhere(bad)[0])
            idx = comp.indices
            k_of = lambda slot: (slot // comp.n) * comp.m + int(idx[slot, j]) if slot < slots else None  # noqa: E731
            partner = s ^ 1
            pv = int(vals[partner, j]) if partner < slots else 0
            raise FormatError(
                f"weights value {int(vals[s, j])} at (k={k_of(s)}, n={j}) is not OVP-4 representable with its pair "
                f"partner {pv} (k={k_of(partner)}): a pair holds two values in -7..7, or one outlier and a 0"
                f"{hint}")
    return nm.NMCompressed(values=fitted, indices=comp.indices, n=comp.n, m=comp.m, axis=0, length=comp.length)


def _assemble(config: AcceleratorConfig, tiling, req: NMPattern, comp: nm.NMCompressed, w: np.ndarray) -> Program:
    """Lay out the weight image and emit the instruction stream for compressed weights."""
    k, n = tiling.k, tiling.n
    hw = tiling.hw_pattern
    r, c = config.rows, config.cols
    kt_n, nt_n = tiling.ktiles, tiling.ntiles
    vals = np.zeros((kt_n * r, nt_n * c), dtype=np.int64)
    idxs = np.zeros((kt_n * r, nt_n * c), dtype=np.uint8)
    vals[: tiling.slots, :n] = comp.values
    idxs[: tiling.slots, :n] = comp.indices
    tile_values = vals.reshape(kt_n, r, nt_n, c).transpose(0, 2, 1, 3).copy()
    tile_indices = idxs.reshape(kt_n, r, nt_n, c).transpose(0, 2, 1, 3).copy()
    weight_codes = None
    if config.weight_is_ovp:
        # Pair bytes per column: slots (2i, 2i+1) -> low / high nibble; rows is even, so a pair
        # never crosses a k-tile and byte b of a tile feeds PE rows 2b and 2b + 1.
        codes = encode_ovp4_exact(vals.T, "weights")                     # (nt*c, kt*r/2)
        weight_codes = codes.reshape(nt_n, c, kt_n, r // 2).transpose(2, 0, 3, 1).copy()
    slot = np.arange(kt_n * r)
    groups = np.where(slot < tiling.slots, slot // hw.n, -1).reshape(kt_n, r)

    instructions: list[Instruction] = []
    loads: list[tuple[int, int]] = []
    computes: list[ComputeStep] = []
    drains: list[DrainStep] = []
    scale_loads: list[ScaleStep] = []
    for item in tiling.schedule():
        if item[0] == "load":
            loads.append((item[1], item[2]))
            instructions.append(Instruction(Opcode.LOAD_W))
        elif item[0] == "scale":
            _, m0, rows, group = item
            scale_loads.append(ScaleStep(m0, rows, group))
            instructions.append(Instruction(Opcode.LOAD_S, rows))
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
        config=config, shape=GemmShape(tiling.m, k, n), pattern=req, hw_pattern=hw,
        instructions=tuple(instructions), tile_values=tile_values, tile_indices=tile_indices,
        row_groups=groups, load_order=tuple(loads), computes=tuple(computes), drains=tuple(drains),
        weights=w, meta={"tiling": tiling}, weight_codes=weight_codes, scale_loads=tuple(scale_loads),
        ktile_scale_group=tiling.ktile_scale_group, scale_groups=tiling.scale_groups,
    )
