"""``sparsa block``: one transformer block of a model compiled into one machine program and run."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sparsa.commands._common import add_config_argument
from sparsa.commands.build import load_with_overrides
from sparsa.compiler.attention import kv_code_max
from sparsa.compiler.block import PHASES, compile_block
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.machine.timing import UNITS, machine_cycles
from sparsa.models.block import block_decode, block_prefill
from sparsa.models.block.reference import KVCache
from sparsa.models.block.source import BLOCK_MODELS, load_block_source
from sparsa.output import check_output_file, write_file

NAME = "block"
HELP = "compile one transformer block into one machine program and run it bit-exact against the integer reference"

#: Backends of ``--backend``: the reference, and the machine's rungs.
BACKENDS = ("reference", "isa", "cycle", "amaranth", "verilator")
#: Rungs that need the SFU attached to a datapath top in RTL.
_RTL = ("amaranth", "verilator")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set sfu.lanes=8 (repeatable; creates sfu: when absent)")
    parser.add_argument("--model", required=True, choices=BLOCK_MODELS, help="the model")
    parser.add_argument("--block", type=int, default=0, help="block index (default 0)")
    parser.add_argument("--phase", choices=PHASES, default="prefill", help="prefill T tokens, or decode one at C")
    parser.add_argument("--seq", type=int, default=None, help="prefill: tokens T (default 8)")
    parser.add_argument("--context", type=int, default=None, help="decode: cached positions C (default 16)")
    parser.add_argument("--text", default=None, help="text whose hidden states enter the block (default: a sentence)")
    parser.add_argument("--sparsity", default=None, help="N:M pruning of a real model's linear layers (default none)")
    parser.add_argument("--backend", choices=BACKENDS, default="cycle", help="where to run (default cycle)")
    parser.add_argument("--json", type=Path, help="write the result as JSON")


def _lengths(args: argparse.Namespace) -> tuple[int, int]:
    if args.phase == "prefill":
        if args.context not in (None, 0):
            raise ConfigError(f"--context {args.context} belongs to --phase decode (prefill starts at position 0)")
        seq = 8 if args.seq is None else args.seq
        if seq < 1:
            raise ConfigError(f"--seq must be at least 1, not {seq}")
        return seq, 0
    if args.seq not in (None, 1):
        raise ConfigError(f"--seq {args.seq}: decode runs one token (--seq 1)")
    context = 16 if args.context is None else args.context
    if context < 0:
        raise ConfigError(f"--context must be at least 0, not {context}")
    return 1, context


def run(args: argparse.Namespace) -> int:
    cfg = load_with_overrides(args)
    tokens, start = _lengths(args)
    if args.json:
        check_output_file(args.json, "--json")
    if args.backend in _RTL:
        raise UnsupportedError(f"--backend {args.backend}: the SFU is not attached to a datapath top in RTL yet; "
                               f"the compiled block runs on --backend isa or cycle")
    t0 = time.perf_counter()
    kv_qmax = kv_code_max(cfg)     # nibble planes: docs/block.md
    src = load_block_source(args.model, args.block, start + tokens, bits=cfg.weight_bits, pattern=args.sparsity,
                            text=args.text, kv_qmax=kv_qmax)
    w = src.weights
    x = src.hidden[start:start + tokens]
    bp = compile_block(cfg, w, args.phase, tokens, start)          # refuses before any run
    if args.phase == "prefill":
        ref, cache = block_prefill(w, x)
        before = None
    else:
        empty = np.zeros((w.spec.kv_heads, 0, w.spec.head_dim), np.int64)
        before = block_prefill(w, src.hidden[:start])[1] if start else KVCache(empty, empty)
        ref, cache = block_decode(w, x, before, start)
    contract = machine_cycles(cfg, bp.instructions)
    result = {"model": args.model, "block": args.block, "phase": args.phase, "tokens": tokens, "context": start,
              "config": cfg.name, "backend": args.backend, "cycle_model_cycles": contract["total"],
              "cycles_by_unit": {u: contract[u] for u in UNITS}, "vmem_words": bp.vmem_peak,
              "instruction_words": len(bp.words()), "dm_bytes": len(bp.dm.image)}
    if args.backend == "reference":
        result.update(bit_exact=True, cycles=None)
    else:
        from sparsa.sim.machine import run_machine

        dm = bp.device_memory(x, None if before is None else before.k, None if before is None else before.v)
        run_ = run_machine(cfg, bp.words(), dm, bp.programs, args.backend)
        got = bp.read_cache(run_.dm)
        cache_ok = np.array_equal(got.k, cache.k) and np.array_equal(got.v, cache.v)
        result.update(bit_exact=bool(np.array_equal(bp.read_output(run_.dm), ref) and cache_ok),
                      cycles=run_.cycles if args.backend == "cycle" else None,
                      cycles_by_unit={u: run_.cycles_by_unit[u] for u in UNITS})
    result["wall_seconds"] = round(time.perf_counter() - t0, 3)
    _print(result)
    if args.json:
        write_file(args.json, json.dumps(result, indent=2) + "\n", "--json")
        print(f"  wrote {args.json}")
    return 0 if result["bit_exact"] else 1


def _print(r: dict) -> None:
    where = f"{r['tokens']} tokens" if r["phase"] == "prefill" else f"1 token at context {r['context']}"
    print(f"{r['model']} block {r['block']} {r['phase']} ({where}) on {r['config']}, backend {r['backend']}")
    if r["backend"] == "reference":
        print("  the integer reference itself (the golden the other backends are compared with)")
    else:
        print(f"  bit-exact against the integer reference (output and KV cache): {'yes' if r['bit_exact'] else 'NO'}")
    total = r["cycle_model_cycles"]
    if r["cycles"] is not None:
        same = "equal" if r["cycles"] == total else "DIFFERENT"
        print(f"  cycles: {r['cycles']:,} ({same} to the cycle model's {total:,})")
    else:
        print(f"  cycle model: {total:,} cycles")
    split = ", ".join(f"{u} {r['cycles_by_unit'][u]:,} ({100 * r['cycles_by_unit'][u] / total:.1f} %)" for u in UNITS)
    print(f"  by unit: {split}")
    print(f"  program: {r['instruction_words']:,} words, {r['dm_bytes']:,} bytes of device memory, "
          f"{r['vmem_words']:,} VMEM words; {r['wall_seconds']} s")
