"""RUN_DMA transfer cost of the AXI SoC: SoC cycles per 32-bit word moved, by AXI data width.

Usage::

    python benchmarks/bench_dma.py [--widths 32,64,256,512] [--burst 64] [--quick]

The shell kernel's SoC (``AxiSoc`` with ``DmaConfig(width, burst)``, the small 4x4 config of
the SoC tests: ``systolic-4x4-2of4`` with 64-row accumulators) runs one compiled 12x40x12 GEMM
through a simulated device memory with no stalls, in Amaranth simulation.  DMA_CYCLES counts the
whole sequence (load the three images, run, store the results); the transfer's share is
``DMA_CYCLES - RUN_CYCLES``, divided by the 32-bit words of the images and the results.  Every
run is checked bit-exactly against NumPy, and RUN_CYCLES against ``program_cycles``.  Prints
Markdown; docs/fpga.md's table is this output (``python docs/generate.py --only fpga-dma-cycles``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: The GEMM and the machine of the measurement.
M, K, N, SEED = 12, 40, 12, 4
SMALL = {"buffers.weight_buffer_bytes": 2048, "buffers.activation_buffer_bytes": 4096,
         "buffers.accumulator_depth": 64}


def measure(width: int, burst: int) -> dict[str, int]:
    """One RUN_DMA of the GEMM at AXI data ``width`` (bits) and ``burst`` (beats): the cycles and words."""
    from sparsa.compiler import compile_gemm
    from sparsa.config import load_config
    from sparsa.hdl.soc.params import DmaConfig, SocParams
    from sparsa.hdl.soc.top import AxiSoc
    from sparsa.models.reference import gemm_reference
    from sparsa.sim.backends.soc.amaranth_transport import AxiSimTransport
    from sparsa.sim.backends.soc.devmem import DeviceMemoryImage
    from sparsa.sim.backends.soc.driver import SocDriver
    from sparsa.sim.cycle import program_cycles
    cfg = load_config(ROOT / "configs" / "systolic-4x4-2of4.yaml").with_overrides(SMALL)
    params = SocParams(cfg, instr_depth=64)
    rng = np.random.default_rng(SEED)
    wl, al = 1 << (cfg.weight_bits - 1), 1 << (cfg.activation_bits - 1)
    a, w = rng.integers(-al, al, (M, K)), rng.integers(-wl, wl, (K, N))
    program = compile_gemm(cfg, w, M)
    memory = DeviceMemoryImage(1 << 18)
    with AxiSimTransport(AxiSoc(params, dma=DmaConfig(width, burst)), memory, stall=0.0) as link:
        result = SocDriver(link, params).run(program, {"A": a}, memory=memory)
    if not np.array_equal(result.outputs["Y"], gemm_reference(a, program.weights, cfg.accumulator_bits)):
        raise AssertionError(f"RUN_DMA at {width} bits gave a wrong result")
    if result.cycles != program_cycles(program) or result.stats["run_cycles"] != result.cycles:
        raise AssertionError(f"RUN_DMA at {width} bits: cycles {result.cycles} != program_cycles")
    words = result.stats["image_bytes"] // 4
    return {"width": width, "burst": burst, "bytes": result.stats["image_bytes"], "words": words,
            "dma_cycles": result.stats["dma_cycles"], "run_cycles": result.cycles}


def table(widths: "list[int]", burst: int) -> str:
    """Markdown: one row per data width."""
    rows = ["| AXI data width | bytes moved | DMA_CYCLES | of which RUN_CYCLES | transfer cycles per 32-bit word |",
            "|---:|---:|---:|---:|---:|"]
    for width in widths:
        r = measure(width, burst)
        per_word = (r["dma_cycles"] - r["run_cycles"]) / r["words"]
        rows.append(f"| {width} bits | {r['bytes']:,} | {r['dma_cycles']:,} | {r['run_cycles']:,} | {per_word:.2f} |")
    return "\n".join(rows)


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="32,64,256,512", help="AXI data widths in bits (default 32,64,256,512)")
    ap.add_argument("--burst", type=int, default=64, help="maximum burst length in beats (default 64)")
    ap.add_argument("--quick", action="store_true", help="smoke run (CI): 32 bits only")
    args = ap.parse_args(argv)
    try:
        widths = [32] if args.quick else [int(v) for v in args.widths.split(",")]
    except ValueError:
        print(f"error: --widths must be comma-separated integers, not {args.widths!r}", file=sys.stderr)
        return 2
    print(f"RUN_DMA of a {M}x{K}x{N} GEMM on the 4x4 AXI SoC, bursts of up to {args.burst} beats, no stalls\n")
    print(table(widths, args.burst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
