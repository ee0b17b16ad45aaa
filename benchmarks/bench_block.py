"""The compiled block: cycles by unit and the wall time of compiling and running it on the cycle rung.

Usage::

    python benchmarks/bench_block.py            # tiny models on two presets + SmolLM2 block 0 decode at 256
    python benchmarks/bench_block.py --quick    # tiny models only (CI smoke run)

Each row compiles one block (:func:`sparsa.compiler.block.compile_block`), runs it on the cycle
rung (:func:`sparsa.sim.machine.run_machine`), checks it against the integer reference bit for bit
(output and KV cache) and reports its cycles - equal to the contract's, or the row says so - split
by unit, and the wall time of compile + run (model loading excluded).  Prints Markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sparsa.compiler.attention import kv_code_max
from sparsa.compiler.block import compile_block
from sparsa.config import load_config
from sparsa.machine.timing import UNITS, machine_cycles
from sparsa.models.block import KVCache, block_decode, block_prefill
from sparsa.models.block.source import load_block_source
from sparsa.sim.machine import run_machine

ROOT = Path(__file__).resolve().parents[1]

#: ``(config, --set overrides, model, phase, tokens, context)`` of the quick rows.
TINY_ROWS = [
    ("systolic-8x8-2of4", {"sfu.lanes": 8}, "tiny-llama", "prefill", 16, 0),
    ("systolic-8x8-2of4", {"sfu.lanes": 8}, "tiny-llama", "decode", 1, 64),
    ("systolic-8x8-2of4", {"sfu.lanes": 8}, "tiny-bert", "prefill", 16, 0),
    ("chain-4x4-2of4", {"sfu.lanes": 8}, "tiny-llama", "prefill", 16, 0),
    ("chain-4x4-2of4", {"sfu.lanes": 8}, "tiny-llama", "decode", 1, 64),
    ("chain-4x4-2of4", {"sfu.lanes": 8}, "tiny-bert", "prefill", 16, 0),
]
#: The issue's benchmark: SmolLM2 block 0 decode at context 256 on the U280 preset (int4 weights;
#: attention's K/V in two nibble planes, codes within +-119), and MiniLM block 0 prefill.
REAL_ROWS = [
    ("u280-flightllm", {"sfu.lanes": 8}, "smollm2", "decode", 1, 256),
    ("u280-flightllm", {"sfu.lanes": 8, "sfu.vmem_words": 16384}, "minilm", "prefill", 16, 0),
]


def run_row(config: str, overrides: dict, model: str, phase: str, tokens: int, context: int) -> dict:
    """Compile and run one block on the cycle rung; the measurements of one table row."""
    cfg = load_config(ROOT / "configs" / f"{config}.yaml").with_overrides(overrides)
    kv_qmax = kv_code_max(cfg)
    src = load_block_source(model, 0, context + tokens, bits=cfg.weight_bits, kv_qmax=kv_qmax)
    w, x = src.weights, src.hidden[context:context + tokens]
    empty = np.zeros((w.spec.kv_heads, 0, w.spec.head_dim), np.int64)
    before = block_prefill(w, src.hidden[:context])[1] if context else KVCache(empty, empty)
    want = block_prefill(w, x)[0] if phase == "prefill" else block_decode(w, x, before, context)[0]
    t0 = time.perf_counter()
    bp = compile_block(cfg, w, phase, tokens, context)
    run = run_machine(cfg, bp.words(), bp.device_memory(x, before.k, before.v), bp.programs, "cycle")
    wall = time.perf_counter() - t0
    got = bp.read_output(run.dm)
    contract = machine_cycles(cfg, bp.instructions)
    return {"config": config, "overrides": overrides, "model": model, "phase": phase, "tokens": tokens,
            "context": context, "bit_exact": bool(np.array_equal(got, want)), "cycles": run.cycles,
            "contract": contract["total"], "by_unit": run.cycles_by_unit, "wall": wall}


def table(rows: list[dict], wall: bool = True) -> str:
    """Markdown table of :func:`run_row` results (``wall``: with the wall-time column)."""
    out = ["| config | model | phase | bit-exact | cycles (= contract) | matrix | SFU | memory |"
           + (" wall s |" if wall else ""), "|---|---|---|---|---:|---:|---:|---:|" + ("---:|" if wall else "")]
    for r in rows:
        sets = " ".join(f"`{k}={v}`" for k, v in r["overrides"].items())
        phase = f"prefill T={r['tokens']}" if r["phase"] == "prefill" else f"decode C={r['context']}"
        same = "" if r["cycles"] == r["contract"] else f" (contract {r['contract']:,}: DIFFERENT)"
        units = " | ".join(f"{100 * r['by_unit'][u] / r['cycles']:.1f} %" for u in UNITS)
        out.append(f"| {r['config']} {sets} | {r['model']} | {phase} | {'yes' if r['bit_exact'] else 'NO'} | "
                   f"{r['cycles']:,}{same} | {units} |" + (f" {r['wall']:.2f} |" if wall else ""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny models only")
    args = ap.parse_args(argv)
    rows = [run_row(*r) for r in (TINY_ROWS if args.quick else TINY_ROWS + REAL_ROWS)]
    print(table(rows))
    return 0 if all(r["bit_exact"] and r["cycles"] == r["contract"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
