"""``sparsa sweep``: whole-workload estimates over a grid of config fields, in parallel (Dask)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsa.commands._common import add_config_argument, load

NAME = "sweep"
HELP = "estimate a workload over the cartesian product of config fields (parallel, Pareto front)"

_EPILOG = """\
examples:
  sparsa sweep configs/u280-flightllm.yaml --workload llama2-7b --phase decode --context 1024 \\
      --grid datapath.rows=8,16,32 --grid sparsity=dense,2:4,1:4 \\
      --grid memory.bandwidth_gbps=100,460 -o build/sweep
  sparsa sweep ... --scheduler tcp://head:8786 -o build/sweep   # an existing Dask cluster

FIELD is any dotted config path (sparsa schema lists them) or 'sparsity', the N:M pattern of
every static-weight layer the workload leaves unset. Points over the resource budget or
otherwise invalid are kept as infeasible, with the reason, in sweep.csv / sweep.json.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_argument(parser)
    parser.add_argument("--workload", required=True, help="workload name or workload YAML (as for estimate)")
    parser.add_argument("--phase", choices=["prefill", "decode"], help="LLM phase (LLMs only)")
    parser.add_argument("--context", type=int, help="LLM: sequence length (prefill) / context length (decode)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: workload's, else 1)")
    parser.add_argument("--grid", action="append", required=True, metavar="FIELD=V1,V2,...",
                        help="one sweep axis; repeat for more (the grid is their cartesian product)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--workers", type=int, help="worker processes of the local Dask cluster (default: all cores)")
    how.add_argument("--scheduler", default="local", metavar="local|ADDRESS",
                     help="'local' (default: start a LocalCluster) or a running scheduler, tcp://host:8786")
    how.add_argument("--serial", action="store_true", help="run every point in this process (no Dask)")
    parser.add_argument("--no-overlap", action="store_true", help="serialise memory and compute (no double buffering)")
    parser.add_argument("--no-plot", action="store_true", help="skip pareto.png (no matplotlib needed)")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="DIR",
                        help="output directory for sweep.csv, sweep.json, pareto.png")


def run(args: argparse.Namespace) -> int:
    from sparsa.commands.estimate import build_workload
    from sparsa.errors import ConfigError, UnsupportedError
    from sparsa.sim.report import si
    from sparsa.sim.sweep import expand_grid, parse_grid, require_plotting, run_sweep

    from sparsa.output import check_output_dir

    cfg = load(args)
    check_output_dir(args.out, "-o")
    axes = parse_grid(args.grid, cfg)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be a positive integer, not {args.workers!r}")
    if not args.no_plot:
        require_plotting()
    workload = build_workload(argparse.Namespace(**{**vars(args), "sparsity": None}))
    total = len(expand_grid(axes))
    bar = _Progress(total) if sys.stderr.isatty() else None
    result = run_sweep(cfg, workload, axes, overlap=not args.no_overlap, serial=args.serial,
                       workers=args.workers, scheduler=None if args.serial else args.scheduler,
                       progress=bar.update if bar else None)
    if bar:
        bar.close()
    paths = result.write(args.out, plot=not args.no_plot, option="-o")

    feasible = result.feasible
    ex = result.executor
    where = "serial" if ex["kind"] == "serial" else f"Dask, {ex['workers']} workers, scheduler {ex['scheduler']}"
    print(f"{total} points ({len(feasible)} feasible, {total - len(feasible)} infeasible) "
          f"in {result.wall_s:.2f} s ({where})")
    reasons: dict[str, int] = {}
    for p in result.points:
        if not p["feasible"]:
            reasons[p["reason"]] = reasons.get(p["reason"], 0) + 1
    for reason, count in list(reasons.items())[:5]:
        print(f"  infeasible x{count}: {reason}")
    if len(reasons) > 5:
        print(f"  ... {len(reasons) - 5} more reasons in sweep.csv")
    if not feasible:
        for path in paths:
            print(f"wrote {path}")
        first = max(reasons, key=reasons.get)
        raise UnsupportedError(f"no point of the grid can run: {first} (every reason in {args.out / 'sweep.csv'})")
    unit = "tokens/s" if result.workload["phase"] in ("decode", "prefill") else "inferences/s"
    fields = [a.field for a in axes]
    for name, title in (("latency_energy", "Pareto front: latency vs energy per token"),
                        ("throughput_dsp", f"Pareto front: {unit} vs DSP")):
        front = [result.points[i] for i in result.fronts[name]]
        if not front:
            continue
        print(f"\n{title}")
        head = ["#", *fields, "latency", unit, "energy/token", "DSP", "bound"]
        rows = [[str(p["point"]), *(str(p[f]) for f in fields), si(p["latency_s"], "s"),
                 f"{p['tokens_per_s']:.4g}", si(p["energy_per_token_j"], "J"), str(p["dsp"]), p["bound"]]
                for p in sorted(front, key=lambda p: p["latency_s"])]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print()
    for path in paths:
        print(f"wrote {path}")
    return 0


class _Progress:
    """A one-line progress bar on stderr (only drawn on a terminal)."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def update(self) -> None:
        self.done += 1
        frac = self.done / self.total if self.total else 1.0
        sys.stderr.write(f"\r  sweeping [{'#' * int(30 * frac):<30}] {self.done}/{self.total} points")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
