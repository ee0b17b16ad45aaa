"""``sparsa quantize``: accuracy and memory of compression schemes on a real model.

Examples::

    sparsa quantize --model minilm
    sparsa quantize --model smollm2 --weights int4,ovp4 --acts none --max-chunks 4 --json out.json
    sparsa quantize --model minilm --prune sparsegpt --sparsity 2:4 --weights fp32,int8,ovp4 --acts none
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from sparsa.errors import FormatError, UnsupportedError

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
    parser.add_argument("--sparsity", default=None,
                        help=f"'dense' and/or N:M patterns (default {_DEFAULT_SPARSITY}; with --prune 2:4)")
    parser.add_argument("--report", action="store_true", help="print a Markdown table (default: aligned text)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the rows as JSON")
    parser.add_argument("--max-chunks", type=int, default=8, help="SmolLM2: held-out 256-token chunks to evaluate (default 8)")
    parser.add_argument("--sentences", type=int, default=None, help="MiniLM: evaluate the first N of the 120 sentences")
    parser.add_argument("--quiet", action="store_true", help="no per-scheme progress lines on stderr")
    g = parser.add_argument_group("calibrated pruning (sparsa.compiler.pruning)")
    g.add_argument("--prune", default=None, metavar="METHODS",
                   help="prune the sparse schemes with magnitude, wanda and/or sparsegpt (comma-separated), calibrated "
                        "one-shot and jointly with the weight quantization; --sparsity then also accepts an "
                        "unstructured fraction (0.5) and defaults to 2:4")
    g.add_argument("--calib-samples", type=int, default=None,
                   help="pruning calibration: MiniLM Lee articles (default 64) / SmolLM2 256-token chunks (default 16)")
    g.add_argument("--damp", type=float, default=0.01, help="SparseGPT dampening, fraction of the mean Hessian diagonal (default 0.01)")
    g.add_argument("--blocksize", type=int, default=128, help="SparseGPT column block (default 128)")
    g.add_argument("--prune-target", choices=("pruned", "dense"), default="pruned",
                   help="SparseGPT objective: inputs of the pruned model (default) or the dense model's outputs")
    g.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="MiniLM: after pruning, STEPS of masked hidden-state distillation against the dense model "
                        "(sparsa.compiler.finetune; ~2-6 s per step on one core)")
    g.add_argument("--finetune-lr", type=float, default=3e-4, help="fine-tuning peak learning rate (Adam, cosine; default 3e-4)")
    g.add_argument("--finetune-batch", type=int, default=16, help="fine-tuning sentences per step (default 16)")
    g.add_argument("--config", type=Path, default=None, metavar="ACCEL.yaml",
                   help="refuse patterns this accelerator cannot run (before any work); OVP pairs form on its slots")


def _split(value: str, option: str, allowed: tuple[str, ...] | None, what: str = "format") -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise FormatError(f"{option} needs at least one entry, got {value!r}")
    for item in items:
        if allowed is not None and item not in allowed:
            raise FormatError(f"{option}: unknown {what} {item!r}; expected one of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _table(result: dict, markdown: bool) -> str:
    metric_cols = ["cos_mean", "cos_min"] if "cos_mean" in result["rows"][0] else ["ppl"]
    pruning = result.get("pruning", False)  # the prune column only for --prune (keeps the old layout)
    cols = ["weights", "acts", "sparsity", *(["prune"] if pruning else []), *metric_cols, "bytes_per_weight",
            "outlier_pairs_pct", "seconds"]
    head = ["weights", "acts", "sparsity", *(["prune"] if pruning else []), *metric_cols, "bytes/weight",
            "outlier pairs %", "s"]
    if any("recon_rel_err" in r for r in result["rows"]):
        cols += ["recon_rel_err", "damp_max", "prune_seconds", "prune_cpu_seconds"]
        head += ["layer rel err", "damp", "prune s", "prune CPU s"]
    body = [["-" if r.get(c) is None else str(r[c]) for c in cols] for r in result["rows"]]
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

    from sparsa.compiler import pruning

    weights = _split(args.weights, "--weights", accuracy.WEIGHT_FORMATS)
    acts = _split(args.acts, "--acts", accuracy.ACT_FORMATS)
    methods = None if args.prune is None else _split(args.prune, "--prune", pruning.METHODS, "method")
    sparsity_arg = args.sparsity if args.sparsity is not None else (_DEFAULT_SPARSITY if methods is None else "2:4")
    sparsity = _split(sparsity_arg, "--sparsity", None)
    for s in sparsity:
        if methods is None:
            accuracy.parse_sparsity(s)
        elif s != "dense":
            pruning.parse_sparsity(s)
    opts = None
    if methods is not None:
        if args.calib_samples is not None and args.calib_samples < 1:
            raise FormatError(f"--calib-samples must be >= 1, not {args.calib_samples}")
        if not 0 <= args.damp <= pruning.MAX_DAMP:
            raise FormatError(f"--damp must be in [0, {pruning.MAX_DAMP:g}] (fraction of the mean Hessian diagonal), not {args.damp}")
        if args.blocksize < 1:
            raise FormatError(f"--blocksize must be >= 1, not {args.blocksize}")
        config = None
        if args.config is not None:
            from sparsa.config import load_config

            config = load_config(args.config)
            for s in sparsity:  # refuse what the hardware cannot run before loading any model
                if s != "dense":
                    pruning.check_hardware(config, s)
        if args.finetune < 0 or args.finetune_batch < 1 or not (args.finetune_lr > 0 and math.isfinite(args.finetune_lr)):
            bad = (f"--finetune {args.finetune}" if args.finetune < 0 else f"--finetune-batch {args.finetune_batch}"
                   if args.finetune_batch < 1 else f"--finetune-lr {args.finetune_lr}")
            raise FormatError(f"{bad}: steps must be >= 0, the batch >= 1 and the learning rate a positive number")
        if args.finetune and args.model != "minilm":
            raise UnsupportedError(
                "--finetune is implemented for MiniLM only: the NumPy backward pass covers the BERT encoder; "
                "SmolLM2 (RoPE, GQA, SwiGLU, RMSNorm) has none yet (docs/accuracy.md)")
        opts = accuracy.PruneOptions(calib_samples=args.calib_samples, damp=args.damp, blocksize=args.blocksize,
                                     config=config, target=args.prune_target, finetune_steps=args.finetune,
                                     finetune_lr=args.finetune_lr, finetune_batch=args.finetune_batch)
    elif args.config is not None:
        raise FormatError("--config only applies with --prune")
    elif args.finetune:
        raise FormatError("--finetune only applies with --prune (it fine-tunes the pruned model)")
    schemes = accuracy.grid(weights, acts, sparsity, methods)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if args.model == "minilm":
        if args.sentences is not None and args.sentences < 1:
            raise FormatError(f"--sentences must be >= 1, not {args.sentences}")
        result = accuracy.evaluate_minilm(schemes, n_sentences=args.sentences, progress=progress, prune=opts)
        title = f"{result['model']}: cosine vs fp32 over {result['n_sentences']} sentences"
    else:
        if args.max_chunks < 1:
            raise FormatError(f"--max-chunks must be >= 1, not {args.max_chunks}")
        result = accuracy.evaluate_smollm2(schemes, max_chunks=args.max_chunks, progress=progress, prune=opts)
        title = f"{result['model']}: perplexity over {result['eval_chunks']} held-out {result['chunk_len']}-token Lee-corpus chunks"
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["pruning"] = methods is not None
    print(title)
    print(_table(result, args.report))
    if args.model == "smollm2":
        print("note: SmolLM2's weights are already Q4_1 (groups of 32); per-channel int4/OVP re-quantize them at a different granularity.")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
