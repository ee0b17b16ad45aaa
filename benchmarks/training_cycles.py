"""Where the cycles of a training step's forward and input-gradient passes go, dense vs N:M sparse.

Usage::

    python benchmarks/training_cycles.py [--config configs/vcu1525-training.yaml] [--model resnet18]
                                         [--sparsity 2:8] [--method bdwp] [--layers] [--out FILE.md]
    python benchmarks/training_cycles.py --quick     # CI smoke run: the CNN (a second)

Every number is the compiler's tiling under the timing contract the cycle model and the RTL share
(:meth:`sparsa.compiler.tiling.Tiling.cycle_breakdown`, summed per pass by
:func:`sparsa.sim.training_estimate.cycle_causes`; the causes of a pass add up to its cycles, which
the script asserts).  For each pass and input-gradient mapping (``gemm``: ``dY @ W_b^T``;
``auto``: the faster of that and the convolution of ``dY``, :mod:`sparsa.compiler.conv_grad`) it
prints the dense and sparse cycles, the speedup and the share of each cause in the sparse pass,
then the step-speedup bounds (the forward and input-gradient passes at 4x, at no cost).
``--layers`` adds the per-layer table of the sparse step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAUSES = ("useful", "idle_rows", "idle_cols", "flush", "load_w", "drain", "load_s", "fetch")


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def measure(config, model: str, pattern: str, method: str, input_grad: str):
    """``(comparison, dense causes, sparse causes)`` of one mapping."""
    from sparsa.sim.training_estimate import compare_training, cycle_causes

    c = compare_training(config, model, pattern=pattern, method=method, input_grad=input_grad)
    causes = []
    for step in (c.dense, c.sparse):
        per_pass = cycle_causes(config, step, ("forward", "input_grad"))
        by_pass = step.by_pass()
        for p, parts in per_pass.items():
            assert abs(sum(parts.values()) - by_pass[p]) < 1e-6 * max(by_pass[p], 1), (p, parts, by_pass[p])
        causes.append(per_pass)
    return c, causes[0], causes[1]


def report(config, model: str, pattern: str, method: str, layers: bool) -> str:
    """The markdown tables of one model."""
    out = [f"## {model} on {config.name}, {method} {pattern}", ""]
    rows, bounds = [], []
    for mapping in ("gemm", "auto"):
        c, dense, sparse = measure(config, model, pattern, method, mapping)
        for p in ("forward", "input_grad"):
            d, s = sum(dense[p].values()), sum(sparse[p].values())
            rows.append([p, mapping, f"{d:,.0f}", f"{s:,.0f}", f"{d / s:.2f}x",
                         *(f"{100 * sparse[p].get(k, 0.0) / s:.1f} %" for k in CAUSES)])
        b = c.speedup_bounds()
        share = c.dense.by_pass()
        bounds.append([mapping, f"{100 * share['weight_grad'] / c.dense.cycles:.0f} %",
                       f"{100 * share['vector'] / c.dense.cycles:.0f} %", f"{c.gemm_speedup:.2f}x",
                       f"**{b['measured']:.2f}x**", f"{b['fwd_dx_4x']:.2f}x", f"{b['fwd_dx_free']:.2f}x",
                       f"{b['gemms_free']:.2f}x"])
        last = c
    out.append(_table(["pass", "input-grad mapping", "dense cycles", "sparse cycles", "speedup",
                       *(f"sparse: {k}" for k in CAUSES)], rows))
    out += ["", _table(["input-grad mapping", "weight grad (dense step)", "vector (dense step)", "GEMMs only",
                        "step speedup", "fwd+dX at 4x", "fwd+dX free", "all GEMMs free"], bounds)]
    if layers:
        from sparsa.sim.datapath import sim_datapath

        breakdown = sim_datapath(config).cycle_causes
        lrows = []
        dense = {(g.layer, g.pass_): g for g in last.dense.gemms}
        for g in last.sparse.gemms:
            if g.pass_ == "weight_grad":
                continue
            parts = breakdown(config, g.m, g.k, g.n, g.pattern)
            total = sum(parts.values())
            dg = dense[g.layer, g.pass_]
            lrows.append([g.layer, g.pass_, g.form, f"{g.m}x{g.k}x{g.n}", f"{dg.cycles:,.0f}", f"{g.cycles:,.0f}",
                          f"{dg.cycles / g.cycles:.2f}x",
                          *(f"{100 * parts[k] / total:.0f} %" for k in ("useful", "idle_rows", "flush", "drain"))])
        out += ["", _table(["layer", "pass", "form (auto)", "sparse m x k x n", "dense", "sparse", "speedup",
                            "useful", "idle rows", "flush", "drain"], lrows)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "vcu1525-training.yaml")
    parser.add_argument("--model", default="resnet18", choices=["mlp", "cnn", "resnet18"])
    parser.add_argument("--sparsity", default="2:8")
    parser.add_argument("--method", default="bdwp", choices=["bdwp", "srste"])
    parser.add_argument("--layers", action="store_true", help="add the per-layer table")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: the CNN")
    args = parser.parse_args(argv)
    from sparsa.config import load_config

    config = load_config(args.config)
    model = "cnn" if args.quick else args.model
    text = report(config, model, args.sparsity, args.method, args.layers or args.quick)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
