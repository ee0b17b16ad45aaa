"""Speed of the NumPy OVP reference, and wall time of the real-model accuracy reports.

Usage::

    python benchmarks/bench_ovp.py                      # codec only (~1 min)
    python benchmarks/bench_ovp.py --quick              # CI smoke run: a 256x1024 matrix (seconds)
    python benchmarks/bench_ovp.py --models --json-dir out/   # + `sparsa quantize` on both models

Prints a Markdown table (paste into ``docs/benchmarks/ovp.md``).  The codec matrix is
4096 x 11008 (a LLaMA-7B FFN weight shape) of Gaussian values with 0.5 % of them scaled by 20
(outliers), with per-row max-abs scales (``max|x| / 7``) for encode/decode and the full per-row
MSE search separately.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparsa.formats import intq, ovp


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def codec_rows(rows: int, cols: int, repeat: int) -> list[tuple[str, str, float, float]]:
    """(format, operation, seconds, values per second) for encode / decode / exp-int / search."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    mask = rng.random((rows, cols)) < 0.005
    w[mask] *= 20
    n = w.size
    out = []
    for fm in (ovp.OVP4_INT4, ovp.OVP4_FLINT4, ovp.OVP8):
        s = intq.absmax_scale(w, fm.normal_max)
        codes = ovp.encode(w, s, fm)
        ops: tuple[tuple[str, Callable[[], object]], ...] = (
            ("encode", lambda s=s, fm=fm: ovp.encode(w, s, fm)),
            ("decode", lambda c=codes, fm=fm: ovp.decode(c, fm)),
            ("decode_to_exp_int", lambda c=codes, fm=fm: ovp.decode_to_exp_int(c, fm)),
            ("dequantize", lambda c=codes, s=s, fm=fm: ovp.dequantize(c, s, fm)),
        )
        for op, fn in ops:
            t = _best_of(fn, repeat)
            out.append((fm.name, op, t, n / t))
    t = _best_of(lambda: ovp.search_scale(w, ovp.OVP4_INT4), 1)
    out.append(("ovp4-int4", f"search_scale per row ({len(ovp.DEFAULT_FACTORS) + 2} candidates)", t, n / t))
    t = _best_of(lambda: ovp.quantize_weight(w), 1)
    out.append(("ovp4 (int4|flint4)", "quantize_weight (both searches + encode)", t, n / t))
    return out


def model_rows(json_dir: Path) -> list[tuple[str, str, float]]:
    """Run ``sparsa quantize`` (default grid) on each model; (model, command, seconds)."""
    from sparsa.cli import main

    out = []
    for model, extra in (("minilm", []), ("smollm2", ["--max-chunks", "8"])):
        dest = json_dir / f"quantize_{model}.json"
        argv = ["quantize", "--model", model, "--json", str(dest), "--report", "--quiet", *extra]
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
        out.append((model, "sparsa " + " ".join(argv), time.perf_counter() - t if rc == 0 else float("nan")))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print Markdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=11008)
    ap.add_argument("--repeat", type=int, default=3, help="best-of repeats for encode/decode")
    ap.add_argument("--models", action="store_true", help="also time `sparsa quantize` on MiniLM and SmolLM2")
    ap.add_argument("--json-dir", type=Path, default=Path("."), help="where --models writes its JSON results")
    ap.add_argument("--quick", action="store_true", help="smoke run for CI: a 256x1024 matrix, 1 repeat, no models")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.cols, args.repeat, args.models = 256, 1024, 1, False

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, NumPy {np.__version__}")
    print(f"command: python benchmarks/bench_ovp.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print()
    print(f"| format | operation ({args.rows}x{args.cols}) | seconds | Mvalues/s |")
    print("|---|---|---|---|")
    for fmt, op, t, rate in codec_rows(args.rows, args.cols, args.repeat):
        print(f"| {fmt} | {op} | {t:.3f} | {rate / 1e6:.1f} |")
    if args.models:
        args.json_dir.mkdir(parents=True, exist_ok=True)
        print()
        print("| model | command | wall seconds |")
        print("|---|---|---|")
        rows = model_rows(args.json_dir)
        for model, cmd, t in rows:
            print(f"| {model} | `{cmd}` | {t:.1f} |")
        (args.json_dir / "bench_models.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
