"""Epoch time of the NumPy training reference (``sparsa.models.training``).

Usage::

    python benchmarks/bench_training.py [--models mlp cnn] [--methods dense bdwp srste] [--sparsity 2:8]
                                        [--cnn-subset 10000] [--repeat 1] [--threads N] [--out FILE.md]
    python benchmarks/bench_training.py --quick     # CI smoke run: MLP, 1024 images (seconds)

For every model x method it trains one epoch on Fashion-MNIST (sklearn digits when it is not
installed; the note says so) with the CLI's defaults (batch 128, SGD) and reports the wall
time of the training pass, the evaluation on the test set, the time per step, and the share of
mask regeneration (``nm_mask`` on every weight, forward and - for BDWP - backward masks).
The CNN trains on the first ``--cnn-subset`` images and the table extrapolates to the full
60000.  Timings are wall-clock on whatever else the machine is doing: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _blas_info(threads: int | None):
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None, "BLAS threads: default (threadpoolctl not installed)"
    limiter = threadpool_limits(limits=threads, user_api="blas") if threads else None
    info = [f"{d['internal_api']} {d.get('version')} x{d['num_threads']}" for d in threadpool_info()
            if d["user_api"] == "blas"]
    return limiter, "BLAS: " + ", ".join(info)


def bench(model_name: str, method: str, sparsity: str, data, subset: int | None, repeat: int) -> dict:
    from sparsa.models.training import TrainConfig, build_model, parse_spec, train
    from sparsa.models.training.trainer import evaluate

    spec = parse_spec(method, sparsity)
    part = data.subset(subset) if subset else data
    best = None
    for _ in range(repeat):
        model = build_model(model_name, data.input_shape, data.classes, spec, seed=0)
        t0 = time.perf_counter()
        result = train(model, part, TrainConfig(epochs=1, batch_size=128))
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        evaluate(model, data.x_test, data.y_test)
        eval_s = time.perf_counter() - t1
        train_s = total - eval_s   # train() evaluates once at the end of the epoch too
        t2 = time.perf_counter()
        for _ in range(20):
            model.update_masks()
        mask_s = (time.perf_counter() - t2) / 20
        row = {"model": model.name, "method": spec.method, "pattern": spec.pattern, "images": len(part.y_train),
               "steps": result.steps, "train_s": train_s, "eval_s": eval_s, "step_ms": 1e3 * train_s / result.steps,
               "mask_ms": 1e3 * mask_s if spec.sparse else 0.0,
               "epoch60k_s": train_s * len(data.y_train) / len(part.y_train),
               "test_acc": result.final_test_acc}
        if best is None or row["train_s"] < best["train_s"]:
            best = row
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    p.add_argument("--methods", nargs="+", default=["dense", "bdwp", "srste"], choices=["dense", "bdwp", "srste"])
    p.add_argument("--sparsity", default="2:8")
    p.add_argument("--cnn-subset", type=int, default=10000, help="CNN: train on this many images (0: all)")
    p.add_argument("--repeat", type=int, default=1, help="best of N")
    p.add_argument("--threads", type=int, default=None, help="limit BLAS threads (needs threadpoolctl)")
    p.add_argument("--out", type=Path, help="also write the markdown table here")
    p.add_argument("--quick", action="store_true",
                   help="smoke run for CI: the MLP, dense and SR-STE, on the first 1024 training images")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.methods, args.repeat = ["mlp"], ["dense", "srste"], 1

    from sparsa.models.training import load_dataset

    limiter, blas = _blas_info(args.threads)
    data = load_dataset("fashion-mnist")
    lines = [(f"NumPy training reference, one epoch, batch 128, SGD; {data.name} "
              f"({len(data.y_train)} train / {len(data.y_test)} test)"),
             f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores, {blas}"]
    if data.note:
        lines.append(f"note: {data.note}")
    lines += ["", ("| model | method | images | steps | train s | ms/step | masks ms/step | eval s | "
                   "epoch (all images) s | test acc |"),
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in args.models:
        for method in args.methods:
            subset = args.cnn_subset if model == "cnn" and args.cnn_subset else None
            if args.quick:
                subset = 1024
            r = bench(model, method, args.sparsity, data, subset, args.repeat)
            lines.append(f"| {r['model']} | {r['method']} {r['pattern']} | {r['images']} | {r['steps']} | "
                         f"{r['train_s']:.2f} | {r['step_ms']:.2f} | {r['mask_ms']:.2f} | {r['eval_s']:.2f} | "
                         f"{r['epoch60k_s']:.1f} | {100 * r['test_acc']:.2f} % |")
            print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if limiter is not None:
        limiter.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
