"""``sparsa train-step``: run the three GEMMs of a real training step of one layer on a backend.

The operands come from the NumPy training reference: a batch of the data set goes forward and
backward through the network (optionally after a few epochs of training), and the chosen layer's
GEMM input ``X``, dense weight ``W`` and output gradient ``dY`` are captured with the masks of
the method.  :func:`~sparsa.compiler.training.compile_training_step` quantizes them to int8 and
compiles forward (``W_f`` N:M along k), input gradient (``W_b^T`` compressed along its own
reduction axis, BDWP; for a conv layer the faster of that and the convolution of ``dY`` with the
rotated kernel, :mod:`sparsa.compiler.conv_grad`) and the dense weight gradient; each runs on the backend and is checked
bit-exactly against the integer reference, with its cycles against the cycle model's and against
the same GEMM compiled dense.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sparsa.commands._common import add_config_argument, load
from sparsa.errors import ConfigError, SparsaError

NAME = "train-step"
HELP = "run the forward / input-gradient / weight-gradient GEMMs of a real training step on a backend, bit-exact"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="reference network (default mlp)")
    parser.add_argument("--layer", default=None,
                        help="weight layer whose step runs (default: the second one, fc2 / conv2)")
    parser.add_argument("--dataset", choices=("fashion-mnist", "digits"), default="fashion-mnist",
                        help="data of the batch (falls back to digits when Fashion-MNIST is absent)")
    parser.add_argument("--method", choices=("dense", "bdwp", "srste"), default="bdwp")
    parser.add_argument("--sparsity", default=None, help="N:M of the sparse GEMMs (default 2:8; not with "
                                                          "--method dense)")
    parser.add_argument("--batch", type=int, default=4, help="samples in the step (default 4)")
    parser.add_argument("--train-epochs", type=int, default=0,
                        help="train the reference this many epochs first, so W and dY are a trained network's")
    parser.add_argument("--backend", default="cycle",
                        help="reference, isa, cycle (default), amaranth or verilator")
    parser.add_argument("--seed", type=int, default=0, help="initialisation / batch seed")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the per-GEMM results as JSON; - for stdout")


def run(args: argparse.Namespace) -> int:
    from sparsa.compiler.datapath import compile_gemm
    from sparsa.compiler.training import compile_training_step, layer_conv_geometry, layer_step_operands
    from sparsa.models.training import TrainConfig, build_model, load_dataset, parse_spec, train
    from sparsa.sim.backends.base import get_backend
    from sparsa.sim.cycle import program_cycles

    for flag, value, low in (("--batch", args.batch, 1), ("--train-epochs", args.train_epochs, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be an integer >= {low}, not {value!r}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, not {args.seed}")
    if args.method == "dense" and args.sparsity not in (None, "dense"):
        raise ConfigError(f"--sparsity {args.sparsity}: only used by the sparse methods (bdwp, srste), "
                          f"not --method dense")
    if args.sparsity is None:
        args.sparsity = "dense" if args.method == "dense" else "2:8"
    from sparsa.sim.backends.base import BACKENDS

    if args.backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, not {args.backend!r}")
    from sparsa.output import check_output_file, write_file

    cfg = load(args)
    cfg.require_supported()
    if args.json is not None and str(args.json) != "-":
        check_output_file(args.json, "--json")
    backend = get_backend(args.backend, cfg)
    spec = parse_spec(args.method, args.sparsity)
    if spec.sparse:
        cfg.hardware_pattern(spec.pattern)          # refuse a pattern the sparse MUX cannot run, before any work
    data = load_dataset(args.dataset)
    out = sys.stderr if args.json is not None and str(args.json) == "-" else sys.stdout
    if data.note:
        print(f"note: {data.note}", file=sys.stderr)
    model = build_model(args.model, data.input_shape, data.classes, spec, seed=args.seed)
    weight_layers = [layer.name for layer in model.weight_layers()]
    layer = args.layer or weight_layers[1]
    if layer not in weight_layers:
        raise ConfigError(f"--layer {layer!r}: model {model.name!r} has weight layers {', '.join(weight_layers)}")
    if args.train_epochs:
        train(model, data, TrainConfig(epochs=args.train_epochs, seed=args.seed))
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(data.y_train), size=min(args.batch, len(data.y_train)), replace=False)
    x, w, dy, mask_f, mask_b = layer_step_operands(model, layer, data.x_train[pick], data.y_train[pick])
    step = compile_training_step(cfg, x, w, dy, method=spec.method, pattern=spec.pattern if spec.sparse else "dense",
                                 mask_f=mask_f, mask_b=mask_b, name=layer, conv=layer_conv_geometry(model, layer))
    ref = step.float_reference(x, w, dy)
    print(f"{model.name} layer {layer}: X {x.shape}, W {w.shape}, dY {dy.shape}; {spec.method} {spec.pattern}; "
          f"int8 per-tensor scales; backend {args.backend} on {args.config.stem}", file=out)
    print(f"{'GEMM':<12}{'formula':<21}{'m x k x n':>16}{'N:M':>7}{'cycles':>10}{'= model':>9}{'dense':>10}"
          f"{'speedup':>9}{'bit-exact':>11}{'rel.err':>9}", file=out)
    rows, ok = [], True
    for g in step.gemms:
        result = g.run(backend)
        exact = bool(np.array_equal(result.outputs["Y"], g.expected))
        model_cycles = program_cycles(g.program)
        dense = program_cycles(compile_gemm(cfg, g.program.weights, g.a.shape[0], "dense", prune=False))
        approx = g.dequantize(result.outputs["Y"])
        err = float(np.abs(approx - ref[g.name]).max() / max(np.abs(ref[g.name]).max(), 1e-30))
        m, k = g.a.shape
        n = g.program.weights.shape[1]
        row = {"gemm": g.name, "formula": g.formula, "form": g.form, "m": m, "k": k, "n": n, "pattern": g.pattern,
               "cycles": result.cycles, "model_cycles": model_cycles, "dense_cycles": dense,
               "speedup": dense / result.cycles if result.cycles else None, "bit_exact": exact,
               "max_rel_error_vs_float": err}
        rows.append(row)
        ok &= exact and (result.cycles is None or result.cycles == model_cycles or args.backend in ("reference", "isa"))
        cyc = "-" if result.cycles is None else f"{result.cycles:,}"
        same = "-" if result.cycles is None or args.backend in ("reference", "isa") else (
            "yes" if result.cycles == model_cycles else "NO")
        speed = "-" if not result.cycles else f"{dense / result.cycles:.2f}x"
        print(f"{g.name:<12}{g.formula:<21}{f'{m}x{k}x{n}':>16}{g.pattern:>7}{cyc:>10}{same:>9}{dense:>10,}"
              f"{speed:>9}{'yes' if exact else 'NO':>11}{err:>9.3%}", file=out)
    if args.json:
        text = json.dumps({"model": model.name, "layer": layer, "method": spec.method, "pattern": spec.pattern,
                           "backend": args.backend, "config": args.config.stem, "gemms": rows}, indent=2) + "\n"
        if str(args.json) == "-":
            sys.stdout.write(text)
        else:
            write_file(args.json, text, "--json")
    if not ok:
        raise SparsaError("a training GEMM differs from the integer reference or from the cycle model (see the table)")
    return 0
