"""``sparsa estimate``: performance and energy of a whole workload on an accelerator config."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from sparsa.commands._common import add_config_argument
from sparsa.errors import SparsaError
from sparsa.output import check_output_dir, check_output_file, write_file

NAME = "estimate"
HELP = "estimate latency, throughput, memory traffic and energy of a whole model from YAML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--workload", required=True,
                        help="workload name (llama2-7b, opt-6.7b, smollm2-135m, bert-base, all-minilm-l6-v2, "
                             "resnet18, resnet50, mlp-784-256-256-10) or a workload YAML file")
    parser.add_argument("--phase", choices=["prefill", "decode"], help="LLM phase (LLMs only)")
    parser.add_argument("--context", type=int, help="LLM: sequence length (prefill) / context length (decode)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: workload's, else 1)")
    parser.add_argument("--sparsity", help="N:M for every weight layer not set by the workload file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set sfu.vmem_words=16384 or sparsity.metadata=slot (repeatable)")
    parser.add_argument("--no-overlap", action="store_true", help="serialise memory and compute (no double buffering)")
    parser.add_argument("--layers", action="store_true", help="print the per-layer table")
    parser.add_argument("--json", type=Path, help="write summary + layers as JSON")
    parser.add_argument("--csv", type=Path, help="write the per-layer table as CSV")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="write roofline / latency / energy PNGs here")


def build_workload(args: argparse.Namespace):
    """Resolve ``--workload`` (preset name or YAML path) with the phase/context/batch options."""
    from sparsa.models.workloads.spec import get_workload, load_workload

    from sparsa.commands._common import check_positive

    opts = {}
    check_positive(args.batch, "--batch")
    check_positive(args.context, "--context")
    if args.phase:
        opts["phase"] = args.phase
    if args.context is not None:
        opts["context"] = args.context
    if args.batch is not None:
        opts["batch"] = args.batch
    path = Path(args.workload)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SparsaError(f"workload file {args.workload!r} does not exist")
        workload = load_workload(path, **opts)
    else:
        workload = get_workload(args.workload, **opts)
    if args.sparsity:
        from sparsa.sim.sweep import apply_sparsity

        workload = apply_sparsity(workload, args.sparsity)
    return workload


def run(args: argparse.Namespace) -> int:
    from sparsa.sim.estimator import estimate_workload
    from sparsa.sim.report import format_summary, format_layers, write_plots

    from sparsa.commands.build import load_with_overrides

    cfg = load_with_overrides(args)
    for option, path in (("--json", args.json), ("--csv", args.csv)):
        if path:
            check_output_file(path, option)
    if args.plot:
        check_output_dir(args.plot, "--plot")
    workload = build_workload(args)
    bar = _progress(len(workload.layers))
    est = estimate_workload(cfg, workload, overlap=not args.no_overlap, progress=bar.update if bar else None)
    if bar:
        bar.close()
    if args.layers:
        print(format_layers(est))
        print()
    print(format_summary(est, cfg))
    if args.json:
        write_file(args.json, json.dumps({"summary": est.summary(),
                                          "layers": [layer.as_dict() for layer in est.layers]}, indent=2) + "\n",
                   "--json")
    if args.csv:
        rows = [layer.as_dict() for layer in est.layers]
        fh = io.StringIO(newline="")
        flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in rows]
        writer = csv.DictWriter(fh, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
        write_file(args.csv, fh.getvalue(), "--csv")
    if args.plot:
        for path in write_plots(est, cfg, args.plot, option="--plot"):
            print(f"wrote {path}")
    return 0


class _Bar:
    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def update(self) -> None:
        self.done += 1
        if self.done % max(1, self.total // 50) == 0 or self.done == self.total:
            frac = self.done / self.total
            sys.stderr.write(f"\r  estimating [{'#' * int(30 * frac):<30}] {self.done}/{self.total} layers")
            sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _progress(total: int):
    return _Bar(total) if sys.stderr.isatty() and total > 50 else None
