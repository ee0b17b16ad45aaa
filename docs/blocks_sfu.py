"""Generated blocks of docs/sfu.md: the SFU's cycles per operation (the timing contract the RTL
is tested to equal)."""

from __future__ import annotations

from generate import benchmark_module, block


@block("sfu-cycles")
def sfu_cycles() -> str:
    """Cycles and cycles per element of each SFU command on SmolLM2 shapes, 8 lanes."""
    b = benchmark_module("bench_sfu")
    phases = [("decode", 1, b.CONTEXT), ("prefill", b.PREFILL, b.PREFILL)]
    return (f"8 lanes; decode = one token at context {b.CONTEXT}, prefill = {b.PREFILL} tokens; rows of "
            f"{b.HIDDEN} (hidden), {b.HEAD_DIM} (RoPE, one head) or the context (softmax, one head); "
            "`python benchmarks/bench_sfu.py`.\n\n" + b.cycle_table(8, phases))
