"""Final test accuracy of dense vs BDWP / SR-STE N:M training (the table of docs/training.md).

Usage::

    python benchmarks/training_accuracy.py --model mlp --epochs 20 [--patterns 2:4 2:8 1:8]
        [--methods bdwp srste] [--seeds 0] [--train-subset N] [--out results.json]
    python benchmarks/training_accuracy.py --quick     # CI smoke run: 1 epoch, 512 images

Trains every (method, pattern, seed) with the CLI defaults (SGD momentum 0.9, lr 0.05, cosine,
batch 128) on Fashion-MNIST (sklearn digits when it is not installed - the table then says so),
and prints a markdown table: final test accuracy, its loss against the dense run of the same
seed, and the wall time.  Results are appended to ``--out`` as JSON as each run finishes, so a
long sweep can be interrupted and resumed (finished runs are skipped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _key(model: str, dataset: str, method: str, pattern: str, seed: int, epochs: int, subset) -> str:
    return f"{model}|{dataset}|{method}|{pattern}|{seed}|{epochs}|{subset}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patterns", nargs="+", default=["2:4", "2:8", "1:8"])
    ap.add_argument("--methods", nargs="+", default=["bdwp", "srste"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--dense-layers", default="", help="weight layers kept dense in the sparse runs, e.g. conv1,fc2")
    ap.add_argument("--out", type=Path, default=None, help="JSON results, resumed (default training_accuracy.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run for CI: 1 epoch on 512 images, SR-STE 2:4 and dense, results in a temporary file")
    args = ap.parse_args(argv)
    if args.quick:
        import tempfile

        args.epochs, args.train_subset, args.patterns, args.methods, args.seeds = 1, 512, ["2:4"], ["srste"], [0]
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="sparsa-training-accuracy-")) / "quick.json"
    elif args.out is None:
        args.out = Path("training_accuracy.json")

    from sparsa.models.training import TrainConfig, build_model, load_dataset, parse_spec, train

    data = load_dataset(args.dataset)
    if data.note:
        print(f"note: {data.note}", file=sys.stderr)
    if args.train_subset:
        data = data.subset(args.train_subset, None)
    done: dict[str, dict] = {}
    if args.out.exists():
        for rec in json.loads(args.out.read_text()):
            done[rec["key"]] = rec
    dense_layers = tuple(d for d in args.dense_layers.split(",") if d)
    runs = [("dense", "dense")] + [(m, p) for m in args.methods for p in args.patterns]
    for seed in args.seeds:
        for method, pattern in runs:
            key = _key(args.model, data.name, method, pattern, seed, args.epochs, args.train_subset)
            if dense_layers and method != "dense":
                key += f"|dense={','.join(dense_layers)}"
            if key in done:
                continue
            spec = parse_spec(method, pattern, dense_layers=dense_layers)
            model = build_model(args.model, data.input_shape, data.classes, spec, seed=seed)
            t0 = time.perf_counter()
            result = train(model, data, TrainConfig(epochs=args.epochs, seed=seed))
            rec = {"key": key, "dense_layers": list(dense_layers) if method != "dense" else [], "model": args.model, "dataset": data.name, "method": method, "pattern": pattern,
                   "seed": seed, "epochs": args.epochs, "train_subset": args.train_subset,
                   "test_acc": result.final_test_acc, "best_test_acc": max(r.test_acc for r in result.history),
                   "seconds": time.perf_counter() - t0}
            done[key] = rec
            print(f"{args.model} {method} {pattern} seed {seed}: {100 * rec['test_acc']:.2f} % "
                  f"({rec['seconds']:.0f} s)", flush=True)
            args.out.write_text(json.dumps(list(done.values()), indent=1) + "\n")
    print(table(list(done.values()), args.model, data.name, args.epochs, args.train_subset))
    return 0


def table(records: list[dict], model: str, dataset: str, epochs: int, subset) -> str:
    """Markdown table: mean final test accuracy over seeds and the loss against dense."""
    rows = [r for r in records if r["model"] == model and r["dataset"] == dataset and r["epochs"] == epochs
            and r["train_subset"] == subset]
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        label = r["method"] + (f" ({','.join(r['dense_layers'])} dense)" if r.get("dense_layers") else "")
        by.setdefault((label, r["pattern"]), []).append(r)
    dense = {r["seed"]: r["test_acc"] for r in by.get(("dense", "dense"), [])}
    out = [f"{model} on {dataset}, {epochs} epochs" + (f", first {subset} training images" if subset else ""),
           "", "| method | N:M | test accuracy | loss vs dense | seeds | time per run |",
           "|---|---|---:|---:|---:|---:|"]
    for (method, pattern), rs in by.items():
        acc = sum(r["test_acc"] for r in rs) / len(rs)
        losses = [dense[r["seed"]] - r["test_acc"] for r in rs if r["seed"] in dense]
        loss = f"{100 * sum(losses) / len(losses):+.2f} pp" if losses and method != "dense" else "-"
        secs = sum(r["seconds"] for r in rs) / len(rs)
        out.append(f"| {method} | {pattern} | {100 * acc:.2f} % | {loss} | {len(rs)} | {secs:.0f} s |")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
