"""``sparsa generate``: greedy text generation with a whole model compiled for an accelerator and run on it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sparsa.commands._common import add_config_argument
from sparsa.commands.build import load_with_overrides
from sparsa.compiler.attention import kv_code_max
from sparsa.errors import ConfigError, UnsupportedError
from sparsa.machine.timing import UNITS
from sparsa.models.block.lm import reference_generate
from sparsa.output import check_output_file, write_file

NAME = "generate"
HELP = "generate text greedily with a whole model compiled for the accelerator and run on its ISA or cycle rung"

MODELS = ("tiny-llama", "smollm2")
BACKENDS = ("reference", "isa", "cycle", "amaranth", "verilator")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set sfu.lanes=8 (repeatable; creates sfu: when absent)")
    parser.add_argument("--model", required=True, choices=MODELS, help="the model")
    parser.add_argument("--prompt", required=True, help="the prompt")
    parser.add_argument("--tokens", type=int, default=8, help="new tokens to generate (default 8)")
    parser.add_argument("--sparsity", default=None, help="N:M pruning of SmolLM2's linear layers (default none)")
    parser.add_argument("--backend", choices=BACKENDS, default="cycle", help="where to run (default cycle)")
    parser.add_argument("--json", type=Path, help="write the result as JSON")


def _load(name: str, cfg, prompt: str, new_tokens: int, sparsity: "str | None"):
    """The model in integer form (its caches sized for the prompt and the new tokens), the prompt's
    ids and the tokenizer's decode."""
    kv_qmax = kv_code_max(cfg)
    if name == "tiny-llama":
        from sparsa.models.block.lm import tiny_lm

        if cfg.weight_bits != 8 or kv_qmax != 127 or sparsity:
            raise ConfigError(f"tiny-llama has int8 weights, int8 K/V and its own 2:4 MLP; a config with "
                              f"{cfg.weight_bits}-bit weights (or --sparsity) runs --model smollm2")
        return (tiny_lm(), list(prompt.encode()), lambda ids: bytes(ids).decode("utf-8", errors="replace"))
    from sparsa.models.block.lm import smollm2_lm
    from sparsa.models.real import smollm2

    m = smollm2.load()
    ids = [int(i) for i in m.tokenize(prompt)]
    lm = smollm2_lm(m, bits=cfg.weight_bits, pattern=sparsity, max_positions=max(64, len(ids) + new_tokens),
                    kv_qmax=kv_qmax)
    return lm, ids, m.decode


def run(args: argparse.Namespace) -> int:
    cfg = load_with_overrides(args)
    if args.tokens < 1:
        raise ConfigError(f"--tokens must be at least 1, not {args.tokens}")
    if not args.prompt.strip():
        raise ConfigError("--prompt must not be empty")
    if args.json:
        check_output_file(args.json, "--json")
    if args.backend in ("amaranth", "verilator"):
        raise UnsupportedError(f"--backend {args.backend}: the SFU is not attached to a datapath top in RTL yet; "
                               f"generation runs on --backend isa or cycle")
    if cfg.sfu is None:
        raise ConfigError("the model runs on the machine's SFU, and the config has no sfu: section "
                          "(add one, e.g. --set sfu.lanes=8)")
    t0 = time.perf_counter()
    lm, prompt_ids, decode = _load(args.model, cfg, args.prompt, args.tokens, args.sparsity)
    ref = reference_generate(lm, prompt_ids, args.tokens)
    result = {"model": args.model, "config": cfg.name, "backend": args.backend, "prompt": args.prompt,
              "prompt_ids": list(ref.prompt)}
    if args.backend == "reference":
        tokens = list(ref.tokens)
        result.update(prefill_cycles=None, decode_cycles=None, cycles_by_unit=None, offchip_bytes=None,
                      instruction_bytes=None, instruction_bytes_if_compiled_per_length=None)
    else:
        from sparsa.sim.generate import generate

        g = generate(cfg, lm, prompt_ids, args.tokens, args.backend)
        tokens = g.tokens
        result.update(prefill_cycles=g.prefill_cycles, decode_cycles=g.decode_cycles,
                      cycles_by_unit=g.cycles_by_unit, offchip_bytes=g.offchip_bytes,
                      instruction_bytes=g.instruction_bytes,
                      instruction_bytes_if_compiled_per_length=g.instruction_bytes, vmem_words=g.vmem_peak)
    result.update(token_ids=tokens, text=decode(tokens), matches_reference=tokens == list(ref.tokens),
                  clock_mhz=cfg.clock_mhz, wall_seconds=round(time.perf_counter() - t0, 3))
    _print(result)
    if args.json:
        write_file(args.json, json.dumps(result, indent=2) + "\n", "--json")
        print(f"  wrote {args.json}")
    return 0 if result["matches_reference"] else 1


def _print(r: dict) -> None:
    print(f"{r['model']} on {r['config']}, backend {r['backend']}: {len(r['token_ids'])} new tokens after "
          f"{len(r['prompt_ids'])} prompt tokens")
    print(f"  text: {r['prompt']}{r['text']!s}")
    if r["backend"] == "reference":
        print("  the integer reference itself (the golden the other backends are compared with)")
        return
    print(f"  token ids equal the integer reference's: {'yes' if r['matches_reference'] else 'NO'}")
    clock = r["clock_mhz"] * 1e6
    pre, dec = r["prefill_cycles"], r["decode_cycles"]
    timed = "" if r["backend"] == "cycle" else " (the timing contract's count; the ISA rung is not timed)"
    print(f"  prefill: {pre:,} cycles = {pre / clock * 1e3:.3f} ms at {r['clock_mhz']:g} MHz{timed}")
    if dec:
        mean = sum(dec) / len(dec)
        print(f"  decode: {len(dec)} steps, {mean:,.0f} cycles per token on average = {clock / mean:,.1f} tokens/s")
    total = sum(r["cycles_by_unit"].values())
    print("  by unit: " + ", ".join(f"{u} {100 * r['cycles_by_unit'][u] / total:.1f} %" for u in UNITS))
    print("  device-memory bytes: " + ", ".join(f"{k} {v:,}" for k, v in r["offchip_bytes"].items() if v))
    print(f"  instructions: {r['instruction_bytes']:,} bytes (one program per step); {r['wall_seconds']} s")
