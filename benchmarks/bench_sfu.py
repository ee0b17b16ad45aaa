"""The SFU's cycles per element for each operation, and its area from Yosys.

Usage::

    python benchmarks/bench_sfu.py                     # cycle table (the timing contract), lanes 8
    python benchmarks/bench_sfu.py --lanes 4 --quick   # CI smoke run
    python benchmarks/bench_sfu.py --synth             # + Yosys area of Sfu(lanes, depth) on ECP5-85F and xcu280
    python benchmarks/bench_sfu.py --synth --depth 4096 --array configs/systolic-8x8-2of4.yaml   # beside an array

The cycles come from :func:`sparsa.sfu.schedule.command_cycles`, which the RTL is tested to
equal (tests/hdl/sfu/test_sfu.py); the shapes are SmolLM2-135M's (hidden 576, head dimension 64,
9 query heads) in decode (one token, context 256) and prefill (128 tokens).  Prints Markdown.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sparsa.sfu.command import SfuCommand, SfuOp
from sparsa.sfu.schedule import command_cycles
from sparsa.sfu.timing import LANE_LATENCY, SCALAR_CYCLES

HIDDEN, HEAD_DIM, HEADS, CONTEXT, PREFILL = 576, 64, 9, 256, 128


def workload(lanes: int, tokens: int, context: int) -> list[tuple[str, SfuCommand]]:
    """One block's SFU commands of each kind for ``tokens`` tokens attending to ``context`` keys."""
    b = lambda n: -(-n // lanes)  # noqa: E731 - words per row
    return [
        ("requantize (q proj.)", SfuCommand(SfuOp.REQUANT, tokens, HIDDEN, dst=0, a=0, b=1, b_step=0, shift=10)),
        ("residual add", SfuCommand(SfuOp.ADD, tokens, HIDDEN, dst=0, a=0, b=1, b_step=b(HIDDEN))),
        ("SwiGLU product", SfuCommand(SfuOp.MUL, tokens, HIDDEN, dst=0, a=0, b=1, b_step=b(HIDDEN))),
        ("SiLU", SfuCommand(SfuOp.SILU, tokens, HIDDEN, dst=0, a=0)),
        ("GELU", SfuCommand(SfuOp.GELU, tokens, HIDDEN, dst=0, a=0)),
        ("RoPE (one head)", SfuCommand(SfuOp.ROPE, tokens, HEAD_DIM, dst=0, a=0, b=1, b_step=b(HEAD_DIM))),
        ("softmax (one head)", SfuCommand(SfuOp.SOFTMAX, tokens, context, dst=0, a=0, causal=True,
                                          offset=context - tokens)),
        ("RMSNorm", SfuCommand(SfuOp.RMSNORM, tokens, HIDDEN, dst=0, a=0, b=1, eps_code=1)),
        ("LayerNorm", SfuCommand(SfuOp.LAYERNORM, tokens, HIDDEN, dst=0, a=0, b=1, eps_code=1)),
        ("quantize per token", SfuCommand(SfuOp.QUANTIZE, tokens, HIDDEN, dst=0, a=0, unit=HIDDEN, scale_dst=1)),
        ("quantize per group of 64", SfuCommand(SfuOp.QUANTIZE, tokens, HIDDEN, dst=0, a=0, unit=64, scale_dst=1)),
    ]


def cycle_table(lanes: int, phases: list[tuple[str, int, int]]) -> str:
    """Markdown: cycles and cycles per element of each command, per phase."""
    head = "| operation | " + " | ".join(f"{p} cycles | {p} cycles/element" for p, _, _ in phases) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(phases)]
    for i, (label, _) in enumerate(workload(lanes, 1, 1)):
        cells = []
        for _, tokens, context in phases:
            cmd = workload(lanes, tokens, context)[i][1]
            cyc = command_cycles(cmd, lanes, LANE_LATENCY, SCALAR_CYCLES)
            cells += [f"{cyc:,}", f"{cyc / (cmd.rows * cmd.n):.3f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def synth_table(lanes: int, depth: int, array: "str | None" = None) -> str:
    """Markdown: Yosys resources of ``Sfu(lanes, depth)`` on ECP5-85F and xcu280 and, with
    ``array`` (a config path), the matrix datapath's beside it (what ``sparsa synth`` reports
    for that config with an ``sfu:`` section)."""
    from sparsa.config import load_config
    from sparsa.fpga.synth import synthesize
    from sparsa.hdl.export import generate_verilog, write_verilog
    from sparsa.hdl.sfu.sfu import Sfu

    rows = ["| target | unit | LUT | FF | DSP | BRAM | Yosys s |", "|---|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        units = [("SFU", write_verilog(Sfu(lanes, depth), "sfu", tmp), "sfu")]
        if array is not None:
            cfg = load_config(array)
            art = generate_verilog(cfg, tmp)
            units.insert(0, (f"{cfg.name} matrix datapath", art.path, art.name))
        for target in ("ecp5-85f", "xcu280"):
            for label, src, top in units:
                t0 = time.perf_counter()
                rep = synthesize([src], top, target, Path(tmp) / target / top)
                rows.append(f"| {target} | {label} | {rep.lut:,.0f} | {rep.ff:,.0f} | {rep.dsp:,.0f} | "
                            f"{rep.bram:g} | {time.perf_counter() - t0:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=8, help="SFU lanes (default 8)")
    ap.add_argument("--depth", type=int, default=1024, help="VMEM words for --synth (default 1024)")
    ap.add_argument("--quick", action="store_true", help="smoke run: decode only")
    ap.add_argument("--synth", action="store_true", help="also synthesize the SFU with Yosys (minutes)")
    ap.add_argument("--array", metavar="CONFIG", help="with --synth: also synthesize this config's matrix datapath")
    args = ap.parse_args(argv)
    if args.lanes < 2 or args.lanes & (args.lanes - 1):
        print(f"error: --lanes must be a power of two >= 2, not {args.lanes}", file=sys.stderr)
        return 2
    phases = [("decode", 1, CONTEXT)] if args.quick else [("decode", 1, CONTEXT), ("prefill", PREFILL, PREFILL)]
    print(f"SFU with {args.lanes} lanes, LANE_LATENCY {LANE_LATENCY}; SmolLM2-135M shapes\n")
    print(cycle_table(args.lanes, phases))
    if args.synth:
        print()
        print(synth_table(args.lanes, args.depth, args.array))
    return 0


if __name__ == "__main__":
    sys.exit(main())
