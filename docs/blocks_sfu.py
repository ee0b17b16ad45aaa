"""Generated blocks of docs/sfu.md (the SFU's cycles per operation, the timing contract the RTL is tested
to equal; its area) and docs/block.md (the compiled block's cycles)."""

from __future__ import annotations

from generate import ROOT, _stamp, benchmark_module, block


@block("sfu-cycles")
def sfu_cycles() -> str:
    """Cycles and cycles per element of each SFU command on SmolLM2 shapes, 8 lanes."""
    b = benchmark_module("bench_sfu")
    phases = [("decode", 1, b.CONTEXT), ("prefill", b.PREFILL, b.PREFILL)]
    return (f"8 lanes; decode = one token at context {b.CONTEXT}, prefill = {b.PREFILL} tokens; rows of "
            f"{b.HIDDEN} (hidden), {b.HEAD_DIM} (RoPE, one head) or the context (softmax, one head); "
            "`python benchmarks/bench_sfu.py`.\n\n" + b.cycle_table(8, phases))


@block("sfu-area", slow=True)
def sfu_area() -> str:
    """Yosys resources of the default SFU (8 lanes, 4096 VMEM words) beside the 8x8 systolic array."""
    from sparsa.config import SfuConfig

    b = benchmark_module("bench_sfu")
    sfu = SfuConfig()
    return (_stamp("python docs/generate.py --only sfu-area") + f" The default `sfu:` section ({sfu.lanes} "
            f"lanes, {sfu.vmem_words} VMEM words), synthesized on its own, beside the matrix datapath of "
            "`configs/systolic-8x8-2of4.yaml`; `sparsa synth CONFIG --target T --set sfu.lanes=8` prints the same "
            "split. BRAM: DP16KD on ECP5, BRAM36 on xcu280.\n\n"
            + b.synth_table(sfu.lanes, sfu.vmem_words, str(ROOT / "configs" / "systolic-8x8-2of4.yaml")))


def _block_rows(rows, wall: bool) -> str:
    b = benchmark_module("bench_block")
    return b.table([b.run_row(*r) for r in rows], wall)


@block("block-cycles")
def block_cycles() -> str:
    """The compiled tiny blocks on the cycle rung: bit-exactness, cycles by unit, wall time."""
    return ("`python benchmarks/bench_block.py --quick`: each block compiled into one machine program and run "
            "on the cycle rung, against the integer reference (output and KV cache); the benchmark also prints the "
            "wall time of compile + run.\n\n" + _block_rows(benchmark_module("bench_block").TINY_ROWS, False))


@block("block-real", slow=True)
def block_real() -> str:
    """SmolLM2 block 0 decode at context 256 and MiniLM block 0 prefill, real weights, on the U280 preset."""
    return (_stamp("python docs/generate.py --only block-real") + " `python benchmarks/bench_block.py` (the "
            "real-model rows): real weights quantized int4 per output channel (the preset's weight port), K/V codes "
            "within +-119 in two nibble planes, hidden states of the default sentence. Wall time = compile + run on "
            "the cycle rung, model loading excluded.\n\n"
            + _block_rows(benchmark_module("bench_block").REAL_ROWS, True))
