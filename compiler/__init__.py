"""Compiler: tile, schedule and emit programs for the sparse accelerator."""

from sparsa.compiler.datapath import compile_gemm
from sparsa.compiler.gemm import compile_compressed_gemm
from sparsa.compiler.program import ComputeStep, DrainStep, GemmShape, Program
from sparsa.compiler.tiling import Tiling, plan_tiling

__all__ = ["compile_gemm", "compile_compressed_gemm", "Program", "GemmShape", "ComputeStep", "DrainStep", "Tiling", "plan_tiling"]
