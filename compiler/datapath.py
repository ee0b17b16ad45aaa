"""The compiler floor of the matrix-datapath interface (see :mod:`sparsa.datapath`).

Each matrix datapath provides a GEMM compiler with one signature; :func:`compile_gemm` finds it
by ``datapath.kind``.  The programs it returns share one protocol (``instruction_words``,
``weight_beats``, ``activation_beats``, ``check_inputs``, ``check_scales``, ``collect_outputs``,
``write_images``, ``report_fields``), so nothing above the compiler needs to know which
datapath compiled them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from sparsa.compiler.chain import compile_chain_gemm
from sparsa.compiler.gemm import compile_systolic_gemm
from sparsa.config import AcceleratorConfig
from sparsa.formats.nm import NMPattern
from sparsa.datapath import matrix_datapath
from sparsa.isa import Instruction

__all__ = ["GEMM_COMPILERS", "compile_gemm", "gemm_instruction_counts"]

#: The GEMM compiler of every matrix datapath, by ``datapath.kind``.
GEMM_COMPILERS: dict[str, Callable[..., object]] = {
    "systolic": compile_systolic_gemm,
    "dsp_chain": compile_chain_gemm,
}


def compile_gemm(
    config: AcceleratorConfig,
    weights: np.ndarray,
    m_rows: int,
    pattern: "NMPattern | str | None" = None,
    *,
    prune: bool = True,
    allow_overflow: bool = False,
    segments: "int | None" = None,
    packing: "str | None" = None,
):
    """Compile ``Y[m_rows, n] = A[m_rows, k] @ W[k, n]`` for ``config``'s datapath.

    Parameters
    ----------
    config : AcceleratorConfig
        Target hardware; ``datapath.kind`` picks the compiler
        (:func:`~sparsa.compiler.gemm.compile_systolic_gemm`,
        :func:`~sparsa.compiler.chain.compile_chain_gemm`).
    weights : np.ndarray
        Integer weights ``W[k, n]`` (reduction axis first), representable in the weight type.
    m_rows : int
        Rows of the activation matrix (1 for a GEMV).
    pattern : NMPattern or str, optional
        The layer's sparsity (``"2:4"``, ``"dense"``); default ``config.sparsity.default``.
    prune : bool
        Magnitude-prune ``weights`` to ``pattern`` (``False``: they must already satisfy it).
    allow_overflow : bool
        Compile even when the worst-case sum can overflow the accumulator.
    segments : int, optional
        DSP chain only: the segments each chain is cut into; refused by the systolic array.
    packing : str, optional
        DSP chain only: ``"none"``, ``"tokens"`` or ``"outputs"`` (default: the compiler's
        choice among ``datapath.chain.packing``'s modes); refused by the systolic array.

    Returns
    -------
    Program or ChainProgram
    """
    compiler = GEMM_COMPILERS[matrix_datapath(config).kind]
    return compiler(config, weights, m_rows, pattern, prune=prune, allow_overflow=allow_overflow, segments=segments,
                    packing=packing)


def gemm_instruction_counts(config: AcceleratorConfig, m_rows: int, k: int, n: int,
                            pattern: "NMPattern | str | None" = None) -> "Counter[Instruction]":
    """The instructions :func:`compile_gemm` emits for this shape, with multiplicities (HALT included),
    from the datapath's tiling alone: no weights, no tile loop (the estimator's path)."""
    from sparsa.compiler.chain import plan_chain_tiling
    from sparsa.compiler.tiling import plan_tiling

    plan = {"systolic": plan_tiling, "dsp_chain": plan_chain_tiling}[matrix_datapath(config).kind]
    return plan(config, m_rows, k, n, pattern).instruction_counts()
