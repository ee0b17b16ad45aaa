"""``sparsa verilog``: export the accelerator as Verilog with a port and resource summary."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from sparsa.commands._common import add_config_argument, load
from sparsa.output import check_output_dir, check_output_file, write_file
from sparsa.datapath import matrix_datapath
from sparsa.errors import ConfigError
from sparsa.yamlio import short_repr

NAME = "verilog"
HELP = "generate Verilog for an accelerator config, with a port / resource summary (and optional lint)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("-o", "--output", type=Path, default=Path("build"), help="output directory (default: build)")
    parser.add_argument("--name", help="top module name (default: derived from the config name)")
    parser.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall (documented waivers)")
    parser.add_argument("--json", type=Path, help="write ports and resources as JSON")


def run(args: argparse.Namespace) -> int:
    from sparsa.hdl.export import generate_verilog
    from sparsa.hdl.verilator import lint_verilog

    if args.name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", args.name):
        raise ConfigError(f"--name must be a Verilog identifier (a letter or _, then letters, digits or _; "
                          f"at most 64 characters), not {short_repr(args.name)}")
    cfg = load(args)
    check_output_dir(args.output, "-o", whole=False)
    if args.json:
        check_output_file(args.json, "--json")
    cfg.require_supported()
    art = generate_verilog(cfg, args.output, name=args.name)
    res = art.resources
    print(f"wrote {art.path} (top module {art.name}, {art.path.stat().st_size / 1024:.0f} KiB)")
    shape = matrix_datapath(cfg).describe(cfg)
    print(f"  {shape}, {cfg.types.weight} x {cfg.types.activation} -> "
          f"int{cfg.accumulator_bits}, sparse MUX 1-of-{cfg.group_size}, accumulator depth "
          f"{cfg.buffers.accumulator_depth}")
    print("ports:")
    for p in art.ports:
        print(f"  {p.direction:<6} {p.width:>5}  {p.name}")
    print("resources (architectural counts):")
    print(f"  multipliers   {res.multipliers} x ({res.multiplier_widths[0]} x {res.multiplier_widths[1]} bit)")
    print(f"  adders        {res.adders}")
    print(f"  sparse MUXes  {res.muxes} x {res.mux_inputs}-input")
    print(f"  register bits {res.register_bits}  ({', '.join(f'{k} {v}' for k, v in res.register_breakdown.items())})")
    print(f"  accumulator   {res.accumulator_shape[0]} x {res.accumulator_shape[1]} bit = "
          f"{res.accumulator_memory_bits} bit RAM")
    sfu_path = None
    if cfg.sfu is not None:
        from sparsa.hdl.export import write_verilog
        from sparsa.hdl.sfu.sfu import Sfu

        sfu_path = write_verilog(Sfu.from_config(cfg.sfu), "sfu", args.output)
        print(f"wrote {sfu_path} (module sfu: {cfg.sfu.lanes} lanes, {cfg.sfu.vmem_words} VMEM words; its own top "
              f"until the SFU is attached to the datapath, ports in docs/sfu.md)")
    if args.lint:
        lint_verilog(art.path, top=art.name)
        if sfu_path is not None:
            lint_verilog(sfu_path, top="sfu")
        print("lint: verilator --lint-only -Wall clean (waivers in docs/hdl.md)")
    if args.json:
        write_file(args.json, json.dumps({"module": art.name, "path": str(art.path),
                                         "ports": [vars(p) if hasattr(p, "__dict__") else p._asdict()
                                                   for p in art.ports],
                                         "resources": res.as_dict(),
                                         **({"sfu": {"module": "sfu", "path": str(sfu_path),
                                                     **cfg.sfu.model_dump()}} if sfu_path else {})},
                                        indent=2, default=str) + "\n", "--json")
    return 0
