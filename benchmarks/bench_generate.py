"""Greedy generation on the machine's cycle rung: simulated cycles and tokens/s, and the wall time.

Usage::

    python benchmarks/bench_generate.py            # tiny-llama on two presets + SmolLM2 (16 tokens) on u280-flightllm
    python benchmarks/bench_generate.py --quick    # tiny-llama only (CI smoke run)

Each row compiles the model for the config (:class:`sparsa.compiler.model.ModelMachine`), generates
on the cycle rung (:func:`sparsa.sim.generate.generate`), checks the token ids against the integer
reference (:func:`sparsa.models.block.lm.reference_generate`) and reports the prefill and mean
decode cycles, tokens/s at the config's clock, weight bytes per decode step, and the wall time of
the generation (model loading and quantization excluded).  Prints Markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sparsa.compiler.attention import kv_code_max
from sparsa.config import load_config
from sparsa.models.block.lm import reference_generate, smollm2_lm, tiny_lm
from sparsa.sim.generate import generate

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The capital of France is"

#: ``(config, --set overrides, model, new tokens)``.
TINY_ROWS = [("systolic-8x8-2of4", {"sfu.lanes": 8}, "tiny-llama", 8),
             ("chain-4x4-2of4", {"sfu.lanes": 8}, "tiny-llama", 8)]
REAL_ROWS = [("u280-flightllm", {"sfu.lanes": 8}, "smollm2", 16)]


def run_row(config: str, overrides: dict, model: str, tokens: int) -> dict:
    """Generate on the cycle rung; the measurements of one table row."""
    cfg = load_config(ROOT / "configs" / f"{config}.yaml").with_overrides(overrides)
    if model == "tiny-llama":
        lm, prompt = tiny_lm(), list(PROMPT.encode())
    else:
        from sparsa.models.real import smollm2

        m = smollm2.load()
        kv_qmax = kv_code_max(cfg)
        prompt = [int(i) for i in m.tokenize(PROMPT)]
        lm = smollm2_lm(m, bits=cfg.weight_bits, max_positions=64, kv_qmax=kv_qmax)
    want = reference_generate(lm, prompt, tokens)
    t0 = time.perf_counter()
    run = generate(cfg, lm, prompt, tokens, "cycle")
    wall = time.perf_counter() - t0
    mean = sum(run.decode_cycles) / len(run.decode_cycles)
    return {"config": config, "overrides": overrides, "model": model, "prompt": len(prompt), "tokens": tokens,
            "matches": run.tokens == list(want.tokens), "prefill": run.prefill_cycles, "decode": mean,
            "tok_s": cfg.clock_mhz * 1e6 / mean, "clock": cfg.clock_mhz,
            "weights_per_step": run.offchip_bytes["weights"] / tokens, "wall": wall}


def table(rows: list[dict], wall: bool = True) -> str:
    """Markdown table of :func:`run_row` results (``wall``: with the wall-time column)."""
    out = ["| config | model | prompt + new tokens | ids = reference | prefill cycles | decode cycles/token | "
           "tokens/s at clock | weight bytes/step |" + (" wall s |" if wall else ""),
           "|---|---|---|---|---:|---:|---:|---:|" + ("---:|" if wall else "")]
    for r in rows:
        sets = " ".join(f"`{k}={v}`" for k, v in r["overrides"].items())
        out.append(f"| {r['config']} {sets} | {r['model']} | {r['prompt']} + {r['tokens']} | "
                   f"{'yes' if r['matches'] else 'NO'} | {r['prefill']:,} | {r['decode']:,.0f} | "
                   f"{r['tok_s']:,.1f} ({r['clock']:g} MHz) | {r['weights_per_step']:,.0f} |"
                   + (f" {r['wall']:.1f} |" if wall else ""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny-llama only")
    args = ap.parse_args(argv)
    rows = [run_row(*r) for r in (TINY_ROWS if args.quick else TINY_ROWS + REAL_ROWS)]
    print(table(rows))
    return 0 if all(r["matches"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
