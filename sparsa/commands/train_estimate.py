"""``sparsa train-estimate``: time of a training step and an epoch, dense vs N:M sparse (BDWP / SR-STE)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sparsa.commands._common import add_config_argument, load

NAME = "train-estimate"
HELP = "estimate training step / epoch time dense vs BDWP or SR-STE N:M on an accelerator, with the speedup breakdown"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn", "resnet18"],
                        help="mlp / cnn: the networks `sparsa train` trains (Fashion-MNIST epoch of 60000); "
                             "resnet18: torchvision ResNet-18 at 224x224 (ImageNet epoch of 1281167)")
    parser.add_argument("--sparsity", default="2:8", help="N:M of the sparse GEMMs (default 2:8)")
    parser.add_argument("--method", default="bdwp", choices=["bdwp", "srste"],
                        help="bdwp: forward and input-gradient GEMMs sparse; srste: forward only (default bdwp)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128 mlp/cnn, 32 resnet18)")
    parser.add_argument("--samples", type=int, default=None, help="training samples per epoch (default per model)")
    parser.add_argument("--dense-layers", default="", metavar="NAMES",
                        help="comma-separated weight layers kept dense in the sparse step, as `sparsa train "
                             "--dense-layers` (e.g. conv1,fc2; resnet18: conv1,fc); see --layers for the names")
    parser.add_argument("--input-grad", default="auto", choices=["auto", "gemm", "conv"],
                        help="a conv's input gradient: auto (default) the faster of dY @ W_b^T and the convolution "
                             "of dY with the rotated kernel, gemm always the first, conv the second where possible")
    parser.add_argument("--no-vector", action="store_true",
                        help="GEMMs only: leave out activations, pooling, optimizer update and mask writes")
    parser.add_argument("--layers", action="store_true", help="print the per-layer, per-pass table")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the comparison as JSON; - for stdout")


def _fmt_s(seconds: float) -> str:
    if seconds >= 60:
        return f"{seconds / 60:.2f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


def format_comparison(c) -> str:
    """The text report of a :class:`~sparsa.sim.training_estimate.TrainingComparison`."""
    d, s = c.dense, c.sparse
    dp, sp, speed = d.by_pass(), s.by_pass(), c.pass_speedups()
    label = f"{s.method} {s.pattern}"
    lines = [
        f"config {d.config} @ {d.clock_mhz:g} MHz, model {d.model}, batch {d.batch}, {c.samples} samples/epoch",
        "",
        f"{'pass':<13}{'dense cycles':>15}{label + ' cycles':>20}{'speedup':>10}{'share of dense':>16}",
    ]
    names = {"forward": "forward", "input_grad": "input grad", "weight_grad": "weight grad", "vector": "vector/update"}
    for key in ("forward", "input_grad", "weight_grad", "vector"):
        lines.append(f"{names[key]:<13}{dp[key]:>15,.0f}{sp[key]:>20,.0f}{speed[key]:>9.2f}x"
                     f"{100 * dp[key] / d.cycles:>15.1f}%")
    lines += [
        f"{'step':<13}{d.cycles:>15,.0f}{s.cycles:>20,.0f}{c.speedup:>9.2f}x",
        "",
        f"step time    dense {_fmt_s(d.seconds)}, {label} {_fmt_s(s.seconds)}",
        f"epoch time   dense {_fmt_s(c.epoch_seconds('dense'))}, {label} {_fmt_s(c.epoch_seconds('sparse'))}",
        f"speedup      {c.speedup:.3f}x per step ({c.gemm_speedup:.3f}x on the GEMMs alone"
        + ("; SAT reports 1.75x for BDWP 2:8)" if (s.method, s.pattern) == ("bdwp", "2:8") else ")"),
        f"energy/step  dense {d.energy_j * 1e3:.3f} mJ, {label} {s.energy_j * 1e3:.3f} mJ",
    ]
    return "\n".join(lines)


def format_layers(c) -> str:
    """Per-layer cycles of each pass, dense and sparse, and the input-gradient form each step kept."""
    d, s = c.dense.by_layer(), c.sparse.by_layer()
    forms = {(step, g.layer): g.form for step, e in (("d", c.dense), ("s", c.sparse)) for g in e.gemms
             if g.pass_ == "input_grad"}
    head = (f"{'layer':<24}{'fwd dense':>12}{'fwd sparse':>12}{'dX dense':>12}{'dX sparse':>12}"
            f"{'dW':>12}{'speedup':>9}  dX form (dense/sparse)")
    lines = [head]
    for name, dd in d.items():
        ss = s[name]
        tot_d, tot_s = sum(dd.values()), sum(ss.values())
        form = f"{forms[('d', name)]}/{forms[('s', name)]}" if ("s", name) in forms else "-"
        lines.append(f"{name:<24}{dd['forward']:>12,.0f}{ss['forward']:>12,.0f}{dd['input_grad']:>12,.0f}"
                     f"{ss['input_grad']:>12,.0f}{dd['weight_grad']:>12,.0f}{tot_d / tot_s:>8.2f}x  {form}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sparsa.sim.training_estimate import compare_training

    from sparsa.commands._common import check_positive
    from sparsa.output import check_output_file, write_file

    check_positive(args.batch, "--batch")
    check_positive(args.samples, "--samples")
    cfg = load(args)
    cfg.require_supported()       # never estimate output_stationary / ovp8 with another design's numbers
    if args.json is not None and str(args.json) != "-":
        check_output_file(args.json, "--json", parents=True)
    c = compare_training(cfg, args.model, pattern=args.sparsity, method=args.method, batch=args.batch,
                         samples=args.samples, include_vector=not args.no_vector,
                         dense_layers=tuple(d.strip() for d in args.dense_layers.split(",") if d.strip()),
                         input_grad=args.input_grad)
    to_stdout = args.json is not None and str(args.json) == "-"
    out = sys.stderr if to_stdout else sys.stdout
    if args.layers:
        print(format_layers(c), file=out)
        print(file=out)
    print(format_comparison(c), file=out)
    if args.json:
        text = json.dumps(c.as_dict(), indent=2) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            write_file(args.json, text, "--json", parents=True)
    return 0
