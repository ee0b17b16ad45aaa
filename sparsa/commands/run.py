"""``sparsa run``: compile a GEMM, run it on a backend and check it against the NumPy reference.

With ``--program DIR`` instead of ``--gemm``: run a program directory written by ``sparsa compile
-o DIR`` as it is (no recompilation), checked against the config, and compare its output beats
with the directory's ``expected.hex`` (:mod:`sparsa.sim.program_dir`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sparsa.commands._common import (add_config_argument, add_packing_argument, check_operand_shapes, check_seed,
                                     gemm_tensors, load, load_matrix, parse_gemm, random_operands, reference_outputs)
from sparsa.compiler import compile_gemm
from sparsa.errors import ShapeError
from sparsa.output import check_output_file, write_file
from sparsa.sim.backends.base import BACKENDS, get_backend
from sparsa.datapath import matrix_datapath
from sparsa.sim.cycle import program_cycles

NAME = "run"
HELP = "run a GEMM on a backend, check it bit-exactly against NumPy, report cycles and utilization"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--gemm", metavar="MxKxN", help="GEMM shape (A is MxK, W is KxN); or --program")
    parser.add_argument("--program", type=Path, metavar="DIR",
                        help="run the program directory of 'sparsa compile -o DIR' instead of compiling a GEMM "
                             "(backends: isa, cycle, amaranth); checks its outputs against its expected.hex")
    parser.add_argument("--sparsity", default=None, help="N:M of the weights, e.g. 2:4 or dense (default: config's)")
    parser.add_argument("--backend", default="cycle", choices=list(BACKENDS), help="where to run (default: cycle)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random operands")
    parser.add_argument("--weights", type=Path, help=".npy int weights W[K, N] instead of random ones")
    parser.add_argument("--acts", type=Path, help=".npy int activations A[M, K] instead of random ones")
    parser.add_argument("--scales", type=Path, help=".npy scale mantissas S[M, groups] for per-token / per-group "
                                                     "act_scale configs (default: random)")
    add_packing_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    if (args.gemm is None) == (args.program is None):
        raise ShapeError("give exactly one of --gemm MxKxN (compile a GEMM) and --program DIR (run a compiled "
                         f"program directory), not {'both' if args.gemm else 'neither'}")
    if args.program is not None:
        return _run_program_dir(args, cfg)
    m, k, n = parse_gemm(args.gemm)
    check_seed(args.seed)
    if args.json:
        check_output_file(args.json, "--json")
    a, w = random_operands(cfg, m, k, n, args.seed)
    if args.weights:
        w = load_matrix(args.weights, "weights")
    if args.acts:
        a = load_matrix(args.acts, "activations")
    check_operand_shapes(a, w, (m, k, n), acts_given=bool(args.acts), weights_given=bool(args.weights))
    program = compile_gemm(cfg, w, m, args.sparsity, packing=args.packing)
    tensors = gemm_tensors(program, a, args.seed, args.scales, acts_given=bool(args.acts))
    a = tensors["A"]
    backend = get_backend(args.backend, cfg)

    expected = reference_outputs(program, tensors)
    t0 = time.perf_counter()
    result = backend.run(program, tensors)
    wall = time.perf_counter() - t0
    y = result.outputs["Y"]
    mismatches = int(np.count_nonzero(y != expected))

    model_cycles = program_cycles(program)
    dense = compile_gemm(cfg, program.weights, m, "dense", prune=False) if not program.hw_pattern.dense else program
    dense_cycles = program_cycles(dense)
    cycles = result.cycles if result.cycles is not None else model_cycles
    peak = cfg.peak_macs_per_cycle   # MAC lanes (x2 on a packed DSP chain)
    report = {
        "config": cfg.name, "backend": backend.name, "gemm": f"{m}x{k}x{n}",
        "sparsity": str(program.pattern), "hardware_sparsity": str(program.hw_pattern),
        "bit_exact": mismatches == 0, "mismatches": mismatches,
        "cycles": result.cycles, "cycle_model_cycles": model_cycles,
        "cycles_match": None if result.cycles is None else result.cycles == model_cycles,
        "mac_utilization": program.useful_macs / (peak * cycles),
        "dense_equivalent_macs_per_cycle": m * k * n / cycles,
        "dense_cycles": dense_cycles, "speedup_vs_dense": dense_cycles / model_cycles,
        "time_us_at_clock": cycles / cfg.clock_mhz, "wall_s": wall,
        "instructions": program.opcode_counts(),
    }
    report.update(program.report_fields())
    if getattr(program, "scaled", False):
        report["act_scale"] = {"granularity": cfg.act_scale.granularity, "groups": program.scale_groups,
                               "load_s": program.opcode_counts().get("LOAD_S", 0)}
    _print(report)
    if args.json:
        write_file(args.json, json.dumps(report, indent=2) + "\n", "--json")
    if mismatches:
        bad = tuple(int(i) for i in np.argwhere(y != expected)[0])
        print(f"error: {mismatches} of {y.size} outputs differ from the NumPy reference; first at {bad}: "
              f"got {int(y[bad])}, expected {int(expected[bad])}")
        return 1
    if result.cycles is not None and result.cycles != model_cycles:
        print(f"error: {backend.name} took {result.cycles} cycles, the cycle model says {model_cycles}")
        return 1
    return 0


#: Options that choose or make the operands of a compiled GEMM: a program directory has its own.
_GEMM_ONLY = ("sparsity", "weights", "acts", "scales")


def _run_program_dir(args: argparse.Namespace, cfg) -> int:
    """``--program DIR``: load and check the directory, run it on ``--backend``, report; 1 on a mismatch."""
    from sparsa.sim.program_dir import DIR_BACKENDS, load_program_dir, run_program_dir

    given = [f"--{name}" for name in _GEMM_ONLY if getattr(args, name) is not None]
    if given or args.seed != 0:
        given += ["--seed"] if args.seed != 0 else []
        raise ShapeError(f"--program DIR runs the directory's own operands; {', '.join(given)} "
                         f"only apply with --gemm")
    if args.backend not in DIR_BACKENDS:
        raise ShapeError(f"--backend {args.backend!r} cannot run a program directory; use one of "
                         f"{', '.join(DIR_BACKENDS)}")
    if args.json:
        check_output_file(args.json, "--json")
    image = load_program_dir(cfg, args.program)
    t0 = time.perf_counter()
    result = run_program_dir(cfg, image, args.backend)
    wall = time.perf_counter() - t0
    nominal = matrix_datapath(cfg).program_cycles(cfg, image.instructions)
    report = {
        "config": cfg.name, "backend": args.backend, "program": str(args.program),
        "gemm": "x".join(str(image.meta["gemm"][d]) for d in "mkn") if isinstance(image.meta.get("gemm"), dict)
        else None,
        "bit_exact": result.bit_exact, "mismatched_beats": result.mismatches,
        "output_beats": len(result.outputs), "expected_beats": len(image.expected),
        "cycles": result.cycles, "cycle_model_cycles": nominal,
        "cycles_match": None if result.cycles is None else result.cycles == nominal,
        "instructions": dict(image.meta["instructions"]), "wall_s": wall,
    }
    width = 20
    for key in ("config", "backend", "program", "gemm"):
        print(f"{key:<{width}}  {report[key]}")
    print(f"{'result':<{width}}  " + ("bit-exact vs expected.hex" if result.bit_exact else
                                      f"MISMATCH ({result.mismatches} of {len(image.expected)} beats)"))
    print(f"{'cycles':<{width}}  {result.cycles}" + ("" if result.cycles is None else
                                                      " (= cycle model)" if report["cycles_match"] else
                                                      f" (cycle model: {nominal})"))
    print(f"{'cycle model cycles':<{width}}  {nominal}")
    if args.json:
        write_file(args.json, json.dumps(report, indent=2) + "\n", "--json")
    if not result.bit_exact:
        i = result.first_mismatch
        got = f"{result.outputs[i]:x}" if i < len(result.outputs) else "no beat"
        want = f"{image.expected[i]:x}" if i < len(image.expected) else "no beat"
        print(f"error: {result.mismatches} of {len(image.expected)} output beats differ from "
              f"{args.program / 'expected.hex'}; first at line {i + 1}: got {got}, expected {want}")
        return 1
    if result.cycles is not None and result.cycles != nominal:
        print(f"error: {args.backend} took {result.cycles} cycles, the cycle model says {nominal}")
        return 1
    return 0


def _print(r: dict) -> None:
    rows = [
        ("config", r["config"]), ("backend", r["backend"]), ("GEMM (MxKxN)", r["gemm"]),
        ("sparsity", f"{r['sparsity']} (runs as {r['hardware_sparsity']})"),
        ("result", "bit-exact vs NumPy reference" if r["bit_exact"] else f"MISMATCH ({r['mismatches']} values)"),
        ("cycles", f"{r['cycles']}" + ("" if r["cycles"] is None else
                                       (" (= cycle model)" if r["cycles_match"] else
                                        f" (cycle model: {r['cycle_model_cycles']})"))),
        ("cycle model cycles", r["cycle_model_cycles"]),
        ("MAC utilization", f"{100 * r['mac_utilization']:.1f} %"),
        ("dense-equiv. MAC/cycle", f"{r['dense_equivalent_macs_per_cycle']:.2f}"),
        ("dense cycles", r["dense_cycles"]),
        ("speedup vs dense", f"{r['speedup_vs_dense']:.3f}x"),
        ("time at clock", f"{r['time_us_at_clock']:.2f} us"),
        ("wall time", f"{r['wall_s']:.3f} s"),
    ]
    if "chain_segments" in r:
        rows.insert(4, ("chain segments", f"{r['chain_segments']} per chain (chosen by the compiler)"))
    if "chain_packing" in r:
        rows.insert(4, ("chain packing", f"{r['chain_packing']} (docs/chain.md#packing-for-gemv-chainpacking-both)"))
    if "act_scale" in r:
        a = r["act_scale"]
        rows.insert(4, ("activation scales", f"per {a['granularity']}: {a['groups']} scale group(s) per row, "
                                             f"{a['load_s']} LOAD_S"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
