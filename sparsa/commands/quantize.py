"""``sparsa quantize``: accuracy and memory of compression schemes on a real model.

Examples::

    sparsa quantize --model minilm
    sparsa quantize --model smollm2 --weights int4,ovp4 --acts none --max-chunks 4 --json out.json
    sparsa quantize --model minilm --prune sparsegpt --sparsity 2:4 --weights fp32,int8,ovp4 --acts none
    sparsa quantize --model smollm2 --prune sparsegpt --sparsity 2:4 --weights fp32,int8 --acts none --finetune 100
    sparsa quantize --model minilm --prune sparsegpt --sparsity 2:4 --weights ovp4 --acts none --finetune 200 --finetune-qat
    sparsa quantize --model smollm2 --weights fp32 --acts none,int8,int4 --act-scale tensor,token,group:128

Activation scales: ``--acts int8`` is one static per-tensor scale; ``int8/token`` and
``int8/g128`` (also ``int4/...``) are dynamic per-token / per-group fixed-point scales
(docs/formats/actscale.md).  ``--act-scale`` expands every plain ``int8`` / ``int4`` entry of
``--acts`` into one entry per listed granularity; without it, ``--config``'s ``act_scale``
section does.  With ``--config``, a granularity its scaling stage cannot run is refused before any
model is loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sparsa.errors import FormatError, UnsupportedError

if TYPE_CHECKING:
    from sparsa.config import AcceleratorConfig
    from sparsa.formats.actscale import ActScaleSpec

NAME = "quantize"
HELP = "measure accuracy and bytes/weight of int/OVP/N:M schemes on MiniLM or SmolLM2"

_DEFAULT_WEIGHTS = "fp32,int8,int4,ovp4"
_DEFAULT_ACTS = "none,int8,ovp4"
_DEFAULT_SPARSITY = "dense,2:4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``sparsa quantize``."""
    parser.add_argument("--model", required=True, choices=("minilm", "smollm2"), help="real model to evaluate")
    parser.add_argument("--weights", default=_DEFAULT_WEIGHTS, help=f"weight formats, comma-separated (default {_DEFAULT_WEIGHTS}; also ovp8)")
    parser.add_argument("--acts", default=_DEFAULT_ACTS,
                        help=f"activation formats (default {_DEFAULT_ACTS}; also int4, ovp8, and dynamic scales "
                             "int8/token, int4/token, int8/gN, int4/gN)")
    parser.add_argument("--act-scale", default=None, metavar="GRANULARITIES",
                        help="activation-scale granularities for the int8/int4 entries of --acts, comma-separated: "
                             "tensor (static, calibrated), token, group:N (dynamic); default: --config's act_scale "
                             "section, else tensor")
    parser.add_argument("--act-mantissa-bits", type=int, default=None, metavar="BITS",
                        help="scale-mantissa width of dynamic activation scales (2..24; default: --config's "
                             "act_scale.mantissa_bits, else 16)")
    parser.add_argument("--sparsity", default=None,
                        help=f"'dense' and/or N:M patterns (default {_DEFAULT_SPARSITY}; with --prune 2:4)")
    parser.add_argument("--report", action="store_true", help="print a Markdown table (default: aligned text)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write the rows as JSON")
    parser.add_argument("--max-chunks", type=int, default=None,
                        help="SmolLM2: held-out 256-token chunks to evaluate (default 8)")
    parser.add_argument("--sentences", type=int, default=None, help="MiniLM: evaluate the first N of the 120 sentences")
    parser.add_argument("--quiet", action="store_true", help="no per-scheme progress lines on stderr")
    parser.add_argument("--config", type=Path, default=None, metavar="ACCEL.yaml",
                        help="refuse patterns and activation-scale granularities this accelerator cannot run (before "
                             "any work); OVP pairs form on its slots; its act_scale section is the default --act-scale")
    g = parser.add_argument_group("calibrated pruning (sparsa.models.compression.pruning)")
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
                   help="after pruning, STEPS of masked distillation against the dense model (sparsa.models.compression.finetune); "
                        "MiniLM: hidden states, ~2-6 s per step on one core; SmolLM2: --finetune-loss, "
                        "~6 CPU s per 256-token sequence per step")
    g.add_argument("--finetune-lr", type=float, default=None,
                   help="fine-tuning peak learning rate (Adam, cosine; default MiniLM 3e-4, SmolLM2 1e-4)")
    g.add_argument("--finetune-batch", type=int, default=None,
                   help="fine-tuning sentences (MiniLM, default 16) / sequences (SmolLM2, default 1) per step")
    g.add_argument("--finetune-seq", type=int, default=None, metavar="TOKENS",
                   help="SmolLM2: tokens per fine-tuning sequence, 2..256 (default 256; Lee chunks after the evaluation ones)")
    g.add_argument("--finetune-loss", default=None, metavar="LOSS",
                   help="SmolLM2: kl (next-token distributions, default), hidden (every block's output) or kl+hidden")
    g.add_argument("--finetune-qat", action="store_true",
                   help="quantization-aware fine-tuning: fine-tune every quantized --weights format separately with "
                        "its quantizer in the forward pass (straight-through gradients to float master weights; "
                        "rows say +qatSTEPS) instead of quantizing the float fine-tuned weights; needs --finetune")
    g.add_argument("--finetune-scale-every", type=int, default=None, metavar="STEPS",
                   help="with --finetune-qat: steps between per-row scale searches (default 0: searched at the "
                        "first step, then frozen)")
    g.add_argument("--finetune-final-scales", choices=("held", "search"), default=None,
                   help="with --finetune-qat: quantize the final master weights on the scales of the last search "
                        "(held, default: what the last steps trained against) or with a fresh search")


def _split(value: str, option: str, allowed: tuple[str, ...] | None, what: str = "format") -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise FormatError(f"{option} needs at least one entry, got {value!r}")
    for item in items:
        if allowed is not None and item not in allowed:
            raise FormatError(f"{option}: unknown {what} {item!r}; expected one of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _parse_granularity(item: str, mantissa_bits: int) -> "ActScaleSpec":
    """``tensor`` / ``token`` / ``group:N`` -> ActScaleSpec (FormatError quoting the item)."""
    from sparsa.formats.actscale import ActScaleSpec

    if item in ("tensor", "token"):
        return ActScaleSpec(item, mantissa_bits=mantissa_bits)
    head, _, size = item.partition(":")
    if head != "group" or not size.isdigit() or int(size) < 1:
        raise FormatError(f"--act-scale: unknown granularity {item!r}; expected tensor, token or group:N (N >= 1)")
    return ActScaleSpec("group", group=int(size), mantissa_bits=mantissa_bits)


def hardware_runs(config: "AcceleratorConfig", spec: "ActScaleSpec") -> bool:
    """True when ``config``'s activation-scaling stage can run activation scales ``spec``.

    Per-tensor scales need no hardware.  A per-token stage runs per-token scales; a per-group stage
    (group ``G``) runs per-token scales (the token's mantissa repeated in every group) and groups
    of any multiple of ``G`` (each mantissa repeated ``G' / G`` times).  The dynamic mantissas
    must fit the stage's ``mantissa_bits``.
    """
    if not spec.dynamic:
        return True
    hw = config.act_scale
    if hw.granularity == "tensor" or spec.mantissa_bits > hw.mantissa_bits:
        return False
    if hw.granularity == "token":
        return spec.granularity == "token"
    return spec.granularity == "token" or (spec.group is not None and spec.group % hw.group == 0)


def _expand_acts(acts: list[str], specs: "list[ActScaleSpec] | None", mantissa_bits: int,
                 explicit: bool = True) -> list[str]:
    """Apply the granularities ``specs`` to the plain int entries of ``--acts``; validate every name.

    ``none`` / OVP entries stay per tensor; with ``explicit`` (the specs come from ``--act-scale``)
    an OVP entry next to dynamic granularities only is refused rather than silently kept.
    """
    from sparsa.models import compression as accuracy

    out = []
    for a in acts:
        fmt, spec = accuracy.parse_acts(a, mantissa_bits)
        if specs is None or spec.dynamic or fmt not in ("int8", "int4"):
            if explicit and specs is not None and fmt in ("ovp4", "ovp8") and all(s.dynamic for s in specs):
                raise FormatError(f"--acts {a}: OVP activations have per-tensor scales only; add 'tensor' to "
                                  f"--act-scale or drop {a}")
            out.append(a)
            continue
        out += [accuracy.act_name(fmt, s) for s in specs]
    return list(dict.fromkeys(out))


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


def _check_finetune_args(args: argparse.Namespace, weights: list[str], sparsity: list[str]) -> tuple[int, str]:
    """``--finetune`` with quantized weights, and ``--finetune-qat`` / ``--finetune-scale-every`` /
    ``--finetune-final-scales``, checked against the formats and patterns (FormatError).

    Returns the scale interval and the final-scale mode to use.
    """
    from sparsa.models.compression.pruning import parse_sparsity
    from sparsa.models.compression.schemes import QAT_FINAL_SCALES, QAT_FORMATS, QAT_SCALE_EVERY

    every = args.finetune_scale_every
    if every is not None and not args.finetune_qat:
        raise FormatError(f"--finetune-scale-every {every} only applies with --finetune-qat")
    if args.finetune_final_scales is not None and not args.finetune_qat:
        raise FormatError(f"--finetune-final-scales {args.finetune_final_scales} only applies with --finetune-qat")
    if every is not None and every < 0:
        raise FormatError(f"--finetune-scale-every must be >= 0 (steps; 0 = frozen scales), not {every}")
    quantized = [w for w in weights if w != "fp32"]
    if args.finetune and quantized and not args.finetune_qat:
        for s in sparsity:
            if s != "dense" and not parse_sparsity(s).structured:
                raise FormatError(f"--finetune with --weights {','.join(quantized)}: sparsity {s!r} is unstructured, "
                                  "and the fine-tuned weights are quantized on N:M slots (use N:M, or --weights fp32)")
    if args.finetune_qat:
        if not args.finetune:
            raise FormatError("--finetune-qat needs --finetune STEPS (the number of quantization-aware steps)")
        if not any(w in QAT_FORMATS for w in weights):
            raise FormatError(f"--finetune-qat: --weights {','.join(weights)} has no quantized format to fine-tune; "
                              f"add one of {', '.join(QAT_FORMATS)}")
        for s in sparsity:
            if s != "dense" and not parse_sparsity(s).structured:
                raise FormatError(f"--finetune-qat: sparsity {s!r} is unstructured; quantization-aware fine-tuning "
                                  "quantizes on N:M slots (use N:M)")
    return (QAT_SCALE_EVERY if every is None else every), (args.finetune_final_scales or QAT_FINAL_SCALES[0])


def _refuse_finetune_settings(args: argparse.Namespace, needs: str) -> None:
    """A fine-tuning setting given where nothing is fine-tuned is an error, not silently ignored."""
    for flag, value in (("--finetune-lr", args.finetune_lr), ("--finetune-batch", args.finetune_batch),
                        ("--finetune-seq", args.finetune_seq), ("--finetune-loss", args.finetune_loss)):
        if value is not None:
            raise FormatError(f"{flag} {value} only applies with {needs} (nothing is fine-tuned without it)")


def run(args: argparse.Namespace) -> int:
    """Evaluate the scheme grid and print one row per scheme."""
    from sparsa.models import compression as accuracy

    from sparsa.formats.nm import parse_nm
    from sparsa.models.compression import pruning

    if args.model == "minilm" and args.max_chunks is not None:
        raise FormatError(f"--max-chunks {args.max_chunks} applies to --model smollm2 only (MiniLM evaluates "
                          f"sentences: use --sentences)")
    if args.model == "smollm2" and args.sentences is not None:
        raise FormatError(f"--sentences {args.sentences} applies to --model minilm only (SmolLM2 evaluates "
                          f"256-token chunks: use --max-chunks)")
    if args.max_chunks is None:
        args.max_chunks = 8
    from sparsa.output import check_output_file, write_file

    if args.json is not None:
        check_output_file(args.json, "--json")
    weights = _split(args.weights, "--weights", accuracy.WEIGHT_FORMATS)
    acts_in = _split(args.acts, "--acts", None)
    config = None
    if args.config is not None:
        from sparsa.config import load_config

        config = load_config(args.config)
        config.require_supported()      # the hardware checks below assume a design that exists
    mantissa_bits = args.act_mantissa_bits if args.act_mantissa_bits is not None else \
        (config.act_scale.mantissa_bits if config is not None else 16)
    if not 2 <= mantissa_bits <= 24:
        raise FormatError(f"--act-mantissa-bits must be in 2..24, not {mantissa_bits}")
    if args.act_scale is not None:
        specs = [_parse_granularity(g, mantissa_bits) for g in _split(args.act_scale, "--act-scale", None)]
    elif config is not None and config.act_scale.granularity != "tensor":
        specs = [replace(config.act_scale.spec, mantissa_bits=mantissa_bits)]
    else:
        specs = None
    acts = _expand_acts(acts_in, specs, mantissa_bits, explicit=args.act_scale is not None)
    methods = None if args.prune is None else _split(args.prune, "--prune", pruning.METHODS, "method")
    sparsity_arg = args.sparsity if args.sparsity is not None else (_DEFAULT_SPARSITY if methods is None else "2:4")
    sparsity = _split(sparsity_arg, "--sparsity", None)
    for s in sparsity:
        if methods is None:
            parse_nm(s)
        elif s != "dense":
            pruning.parse_sparsity(s)
    if config is not None:  # refuse what the hardware cannot run before loading any model
        for s in sparsity:
            if s != "dense":
                pruning.check_hardware(config, s)
        hw = config.act_scale
        have = "tensor (no scaling stage)" if hw.granularity == "tensor" else \
            hw.granularity + (f":{hw.group}" if hw.group is not None else "") + f" with {hw.mantissa_bits}-bit mantissas"
        for a in acts:
            _, spec = accuracy.parse_acts(a, mantissa_bits)
            if not hardware_runs(config, spec):
                raise UnsupportedError(
                    f"--acts {a}: accelerator {config.name!r} has act_scale {have}, which cannot run {spec.granularity}"
                    + (f" {spec.group}" if spec.group else "") + f" scales with {mantissa_bits}-bit mantissas")
    opts = None
    if methods is not None:
        if args.calib_samples is not None and args.calib_samples < 1:
            raise FormatError(f"--calib-samples must be >= 1, not {args.calib_samples}")
        if not 0 <= args.damp <= pruning.MAX_DAMP:
            raise FormatError(f"--damp must be in [0, {pruning.MAX_DAMP:g}] (fraction of the mean Hessian diagonal), not {args.damp}")
        if args.blocksize < 1:
            raise FormatError(f"--blocksize must be >= 1, not {args.blocksize}")
        from sparsa.models.compression.schemes import FINETUNE_LOSSES

        if args.finetune < 0:
            raise FormatError(f"--finetune must be >= 0 (steps), not {args.finetune}")
        if not args.finetune:
            _refuse_finetune_settings(args, "--finetune STEPS")
        if args.model == "minilm":
            for flag, value in (("--finetune-seq", args.finetune_seq), ("--finetune-loss", args.finetune_loss)):
                if value is not None:
                    raise FormatError(f"{flag} {value} applies to SmolLM2 only (MiniLM fine-tunes on sentences "
                                      "with hidden-state distillation)")
        args.finetune_seq = 256 if args.finetune_seq is None else args.finetune_seq
        args.finetune_loss = "kl" if args.finetune_loss is None else args.finetune_loss
        if args.finetune_batch is not None and args.finetune_batch < 1:
            raise FormatError(f"--finetune-batch must be >= 1, not {args.finetune_batch}")
        if args.finetune_lr is not None and not (args.finetune_lr > 0 and math.isfinite(args.finetune_lr)):
            raise FormatError(f"--finetune-lr must be a positive finite number, not {args.finetune_lr}")
        if not 2 <= args.finetune_seq <= 256:
            raise FormatError(f"--finetune-seq must be in 2..256 (tokens of the 256-token chunks), not {args.finetune_seq}")
        if args.finetune_loss not in FINETUNE_LOSSES:
            raise FormatError(f"--finetune-loss: unknown loss {args.finetune_loss!r}; expected one of {', '.join(FINETUNE_LOSSES)}")
        scale_every, final_scales = _check_finetune_args(args, weights, sparsity)
        opts = accuracy.PruneOptions(calib_samples=args.calib_samples, damp=args.damp, blocksize=args.blocksize,
                                     config=config, target=args.prune_target, finetune_steps=args.finetune,
                                     finetune_lr=args.finetune_lr, finetune_batch=args.finetune_batch,
                                     finetune_seq=args.finetune_seq, finetune_loss=args.finetune_loss,
                                     finetune_qat=args.finetune_qat, finetune_scale_every=scale_every,
                                     finetune_final_scales=final_scales)
    else:
        given = [flag for flag, on in (("--finetune", args.finetune), ("--finetune-qat", args.finetune_qat),
                                       ("--finetune-scale-every", args.finetune_scale_every is not None),
                                       ("--finetune-final-scales", args.finetune_final_scales is not None)) if on]
        if given:
            raise FormatError(f"{given[0]} only applies with --prune (it fine-tunes the pruned model)")
        _refuse_finetune_settings(args, "--prune and --finetune")
    schemes = accuracy.grid(weights, acts, sparsity, methods, act_mantissa_bits=mantissa_bits)
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
    result["act_mantissa_bits"] = mantissa_bits
    print(title)
    print(_table(result, args.report))
    if args.model == "smollm2":
        print("note: SmolLM2's weights are already Q4_1 (groups of 32); per-channel int4/OVP re-quantize them at a different granularity.")
    if args.json is not None:
        write_file(args.json, json.dumps(result, indent=2) + "\n", "--json")
    return 0
