"""``sparsa compare``: one workload on several configs and/or sparsity settings, side by side."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

NAME = "compare"
HELP = "compare latency, throughput, traffic and energy of one workload across configs / sparsity"

_EPILOG = """\
examples:
  sparsa compare configs/u280-flightllm.yaml configs/vcu1525-training.yaml --workload llama2-7b \\
      --phase decode --context 1024 --sparsity dense --sparsity 2:4
  sparsa compare configs/u280-flightllm.yaml --workload llama2-7b --phase decode --context 1024 \\
      --set datapath.rows=16,32 --set memory.bandwidth_gbps=460

Columns are the variants: every CONFIG x every --set value combination x every --sparsity.
--set FIELD=V applies to every config; FIELD=V1,V2 makes one variant per value.
--sparsity sets the N:M of weight layers the workload leaves unset (as for estimate).
"""

#: (key, row label) of the table, in order; values formatted by :func:`_cell`.
ROWS: tuple[tuple[str, str], ...] = (
    ("latency_s", "latency"),
    ("tokens_per_s", "{unit}/s"),
    ("speedup", "speedup vs first"),
    ("utilization", "array utilization"),
    ("offchip_bytes", "off-chip bytes"),
    ("bandwidth_utilization", "bandwidth utilization"),
    ("energy_per_token_j", "energy per {unit}"),
    ("fj_per_mac", "energy per MAC"),
    ("bound", "bound"),
    ("dsp", "DSP blocks"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("configs", nargs="+", type=Path, metavar="CONFIG", help="accelerator YAML files")
    parser.add_argument("--workload", required=True, help="workload name or workload YAML (as for estimate)")
    parser.add_argument("--phase", choices=["prefill", "decode"], help="LLM phase (LLMs only)")
    parser.add_argument("--context", type=int, help="LLM: sequence length (prefill) / context length (decode)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: workload's, else 1)")
    parser.add_argument("--sparsity", action="append", metavar="N:M|dense",
                        help="N:M of weight layers the workload leaves unset; repeat to compare several")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=V[,V2...]", dest="sets",
                        help="override a config field in every config; several values make several variants")
    parser.add_argument("--no-overlap", action="store_true", help="serialise memory and compute (no double buffering)")
    parser.add_argument("--json", type=Path, help="write every variant's numbers as JSON")
    parser.add_argument("--csv", type=Path, help="write one row per variant as CSV")


def build_variants(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    """Evaluate every variant.

    Returns ``(variants, workload)``; each variant dict has ``label``, ``config``,
    ``overrides``, ``sparsity``, ``feasible``, ``reason``, the :data:`sparsa.sim.sweep.METRICS`
    and ``speedup`` (latency of the first feasible variant over this one's).
    """
    from sparsa.commands.estimate import build_workload
    from sparsa.config import load_config
    from sparsa.errors import ConfigError, FormatError
    from sparsa.formats.nm import parse_nm
    from sparsa.sim.sweep import SPARSITY, evaluate_point, expand_grid, parse_grid
    from sparsa.yamlio import short_repr

    configs = [(path, load_config(path)) for path in args.configs]
    sparsities = args.sparsity or [None]
    for s in sparsities:
        try:
            parse_nm(s if s is not None else "dense")
        except FormatError as exc:
            raise ConfigError(f"--sparsity: bad value {s!r}: {str(exc).removeprefix(f'sparsity {s!r}: ')}") from None
    if len(set(sparsities)) != len(sparsities):
        raise ConfigError("--sparsity: a pattern is listed twice")
    for spec in args.sets:
        if spec.split("=", 1)[0].strip() == SPARSITY:
            raise ConfigError(f"--set {short_repr(spec)}: use --sparsity {short_repr(spec.partition('=')[2])} "
                              f"for the workload's N:M pattern, not --set")
    workload = build_workload(argparse.Namespace(**{**vars(args), "sparsity": None}))
    names = [cfg.name for _, cfg in configs]
    variants = []
    for path, cfg in configs:
        axes = parse_grid(args.sets, cfg, option="--set")
        varying = [a.field for a in axes if len(a.values) > 1]
        cname = cfg.name if names.count(cfg.name) == 1 else f"{cfg.name} ({path.name})"
        for overrides in expand_grid(axes):
            for s in sparsities:
                point = dict(overrides)
                if s is not None:
                    point[SPARSITY] = s
                label = " ".join([cname, *(f"{f.rsplit('.', 1)[-1]}={overrides[f]}" for f in varying),
                                  *([s] if len(sparsities) > 1 else [])])
                res = evaluate_point(cfg, workload, point, overlap=not args.no_overlap)
                variants.append({"label": label, "config": str(path), "overrides": overrides,
                                 "sparsity": s, **res})
    first = next((v for v in variants if v["feasible"]), None)
    for v in variants:
        v["speedup"] = (first["latency_s"] / v["latency_s"]) if v["feasible"] and first else None
    return variants, workload


def format_table(variants: list[dict[str, Any]], phase: str) -> str:
    """Metrics as rows, variants as columns; infeasible variants footnoted with their reason."""
    unit = "token" if phase in ("decode", "prefill") else "inference"
    notes: list[str] = []
    heads = []
    for v in variants:
        if v["feasible"]:
            heads.append(v["label"])
        else:
            notes.append(v["reason"])
            heads.append(f"{v['label']} [{len(notes)}]")
    table = [["", *heads]]
    for key, label in ROWS:
        table.append([label.format(unit=unit + "s" if "/s" in label else unit),
                      *(_cell(key, v) for v in variants)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for r, row in enumerate(table):
        lines.append("  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))]))
        if r == 0:
            lines.append("-" * len(lines[0]))
    for i, note in enumerate(notes, 1):
        lines.append(f"[{i}] infeasible: {note}")
    return "\n".join(lines)


def _cell(key: str, v: dict[str, Any]) -> str:
    from sparsa.sim.report import si

    if not v["feasible"]:
        return "infeasible" if key == "latency_s" else "-"
    x = v[key]
    if x is None:
        return "-"
    if key == "latency_s":
        return si(x, "s")
    if key == "tokens_per_s":
        return f"{x:.4g}"
    if key == "speedup":
        return f"{x:.3g}x"
    if key in ("utilization", "bandwidth_utilization"):
        return f"{100 * x:.1f} %"
    if key == "offchip_bytes":
        return si(x, "B")
    if key == "energy_per_token_j":
        return si(x, "J")
    if key == "fj_per_mac":
        return si(x * 1e-15, "J")
    if key == "bound":
        frac = v["memory_bound_fraction"]
        share = frac if x == "memory" else 1 - frac
        return f"{x} {100 * share:.0f} %"
    return str(x)


def run(args: argparse.Namespace) -> int:
    from sparsa.errors import UnsupportedError
    from sparsa.output import check_output_file, write_file

    for option, path in (("--json", args.json), ("--csv", args.csv)):
        if path:
            check_output_file(path, option)
    variants, workload = build_variants(args)
    if not any(v["feasible"] for v in variants):
        reasons = "; ".join(dict.fromkeys(v["reason"] for v in variants))
        raise UnsupportedError(f"no variant can run: {reasons}")
    phase = str(workload.phase)
    print(format_table(variants, phase))
    if args.json:
        write_file(args.json, json.dumps({"workload": workload.name, "phase": phase, "batch": workload.batch,
                                          "context": getattr(workload, "context", None), "variants": variants},
                                         indent=2, default=str) + "\n", "--json")
    if args.csv:
        keys = list(variants[0])
        fh = io.StringIO(newline="")
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for v in variants:
            writer.writerow({k: (json.dumps(v[k]) if isinstance(v[k], dict)
                                 else "" if v[k] is None else v[k]) for k in keys})
        write_file(args.csv, fh.getvalue(), "--csv")
    return 0
