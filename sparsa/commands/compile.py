"""``sparsa compile``: compile a GEMM into an instruction stream and memory images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sparsa.commands._common import (add_config_argument, add_packing_argument, check_operand_shapes, check_seed,
                                     gemm_tensors, load, load_matrix, parse_gemm, random_operands, reference_outputs)
from sparsa.compiler import compile_gemm
from sparsa.output import OutputError, check_output_dir

NAME = "compile"
HELP = "compile an N:M-sparse GEMM: instruction stream, weight/activation images, expected output"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--gemm", required=True, metavar="MxKxN", help="GEMM shape (A is MxK, W is KxN)")
    parser.add_argument("--sparsity", default=None, help="N:M of the weights (default: the config's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random operands")
    parser.add_argument("--weights", type=Path, help=".npy int weights W[K, N] instead of random ones")
    parser.add_argument("--acts", type=Path, help=".npy int activations A[M, K] instead of random ones")
    parser.add_argument("--scales", type=Path, help=".npy scale mantissas S[M, groups] for per-token / per-group "
                                                     "act_scale configs (default: random)")
    add_packing_argument(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, help="output directory")


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    m, k, n = parse_gemm(args.gemm)
    check_seed(args.seed)
    check_output_dir(args.output, "-o")
    a, w = random_operands(cfg, m, k, n, args.seed)
    if args.weights:
        w = load_matrix(args.weights, "weights")
    if args.acts:
        a = load_matrix(args.acts, "activations")
    check_operand_shapes(a, w, (m, k, n), acts_given=bool(args.acts), weights_given=bool(args.weights))
    program = compile_gemm(cfg, w, m, args.sparsity, packing=args.packing)
    tensors = gemm_tensors(program, a, args.seed, args.scales, acts_given=bool(args.acts))
    a = tensors["A"]
    expected = reference_outputs(program, tensors)
    try:
        files = program.write_images(a, expected, args.output, scales=tensors.get("S"))
    except OutputError as exc:  # the datapath's writer does not know the option's name
        raise OutputError(f"-o {exc}") from None
    tiles = program.tile_grid
    print(f"compiled {program.shape} at {program.pattern} (hardware {program.hw_pattern}) for {cfg.name}: "
          f"{len(program.instructions)} instructions, {tiles} tiles")
    for f in files:
        print(f"  wrote {f}")
    return 0
