"""Generated blocks of docs/sfu.md: the SFU's cycles per operation (the timing contract the RTL
is tested to equal)."""

from __future__ import annotations

import functools
import importlib.util

from generate import ROOT, block


@functools.cache
def _bench_sfu():
    """``benchmarks/bench_sfu.py`` as a module."""
    spec = importlib.util.spec_from_file_location("sparsa_bench_sfu", ROOT / "benchmarks" / "bench_sfu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@block("sfu-cycles")
def sfu_cycles() -> str:
    """Cycles and cycles per element of each SFU command on SmolLM2 shapes, 8 lanes."""
    b = _bench_sfu()
    phases = [("decode", 1, b.CONTEXT), ("prefill", b.PREFILL, b.PREFILL)]
    return (f"8 lanes; decode = one token at context {b.CONTEXT}, prefill = {b.PREFILL} tokens; rows of "
            f"{b.HIDDEN} (hidden), {b.HEAD_DIM} (RoPE, one head) or the context (softmax, one head); "
            "`python benchmarks/bench_sfu.py`.\n\n" + b.cycle_table(8, phases))
