"""``sparsa quantize``: accuracy and memory of compression schemes on a real model.

Examples::

    sparsa quantize --model minilm
    sparsa quantize --model smollm2 --weights int4,ovp4 --acts none --max-chunks 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sparsa.errors import FormatError

NAME = "quantize"
HELP = "measure accuracy and bytes/weight of int/OVP/N:M schemes on MiniLM or SmolLM2"

_DEFAULT_WEIGHTS = "fp32,int8,int4,ovp4"
_DEFAULT_ACTS = "none,int8,ovp4"
_DEFAULT_SPARSITY = "dense,2:4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``sparsa quantize``."""
    parser.add_argument("--model", required=True, choices=("minilm", "smollm2"), help="real model to evaluate")
    parser.add_argument("--weights", default=_DEFAULT_WEIGHTS, help=f"weight formats, comma-separated (default {_DEFAULT_WEIGHTS}; also ovp8)")
    parser.add_argument("--acts", default=_DEFAULT_ACTS, help=f"activation formats (default {_DEFAULT_ACTS}; also int4, ovp8)")
    parser.add_argument("--sparsity", default=_DEFAULT_SPARSITY, help=f"'dense' and/or N:M patterns (default {_DEFAULT_SPARSITY})")
    parser.add_argument("--report", action="store_true", help="print a Markdown table (default: aligned text)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the rows as JSON")
    parser.add_argument("--max-chunks", type=int, default=8, help="SmolLM2: held-out 256-token chunks to evaluate (default 8)")
    parser.add_argument("--sentences", type=int, default=None, help="MiniLM: evaluate the first N of the 120 sentences")
    parser.add_argument("--quiet", action="store_true", help="no per-scheme progress lines on stderr")


def _split(value: str, option: str, allowed: tuple[str, ...] | None) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise FormatError(f"{option} needs at least one entry, got {value!r}")
    for item in items:
        if allowed is not None and item not in allowed:
            raise FormatError(f"{option}: unknown format {item!r}; expected one of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _table(result: dict, markdown: bool) -> str:
    metric_cols = ["cos_mean", "cos_min"] if "cos_mean" in result["rows"][0] else ["ppl"]
    cols = ["weights", "acts", "sparsity", *metric_cols, "bytes_per_weight", "outlier_pairs_pct", "seconds"]
    head = ["weights", "acts", "sparsity", *metric_cols, "bytes/weight", "outlier pairs %", "s"]
    body = [[str(r[c]) for c in cols] for r in result["rows"]]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])


def run(args: argparse.Namespace) -> int:
    """Evaluate the scheme grid and print one row per scheme."""
    from sparsa.models import accuracy

    weights = _split(args.weights, "--weights", accuracy.WEIGHT_FORMATS)
    acts = _split(args.acts, "--acts", accuracy.ACT_FORMATS)
    sparsity = _split(args.sparsity, "--sparsity", None)
    for s in sparsity:
        accuracy.parse_sparsity(s)
    schemes = accuracy.grid(weights, acts, sparsity)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if args.model == "minilm":
        if args.sentences is not None and args.sentences < 1:
            raise FormatError(f"--sentences must be >= 1, not {args.sentences}")
        result = accuracy.evaluate_minilm(schemes, n_sentences=args.sentences, progress=progress)
        title = f"{result['model']}: cosine vs fp32 over {result['n_sentences']} sentences"
    else:
        if args.max_chunks < 1:
            raise FormatError(f"--max-chunks must be >= 1, not {args.max_chunks}")
        result = accuracy.evaluate_smollm2(schemes, max_chunks=args.max_chunks, progress=progress)
        title = f"{result['model']}: perplexity over {result['eval_chunks']} held-out {result['chunk_len']}-token Lee-corpus chunks"
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(title)
    print(_table(result, args.report))
    if args.model == "smollm2":
        print("note: SmolLM2's weights are already Q4_1 (groups of 32); per-channel int4/OVP re-quantize them at a different granularity.")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
