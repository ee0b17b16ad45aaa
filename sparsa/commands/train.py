"""``sparsa train``: train an MLP or a small CNN dense, BDWP or SR-STE N:M sparse on real data."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

from sparsa.errors import ConfigError, MissingToolError
from sparsa.output import check_output_file, output_file, write_file

NAME = "train"
HELP = "train an MLP/CNN on Fashion-MNIST or digits: dense, BDWP or SR-STE N:M sparse (NumPy reference)"

PLOT_INSTALL = "pip install 'sparsa[plot]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"],
                        help="mlp: 784-512-512-10 ReLU; cnn: 2x (conv3x3, ReLU, maxpool) 16/32 ch, fc 128 (default mlp)")
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "digits"],
                        help="fashion-mnist (apt-get install dataset-fashion-mnist; falls back to digits when "
                             "absent) or sklearn digits (default fashion-mnist)")
    parser.add_argument("--method", default="bdwp", choices=["dense", "bdwp", "srste"],
                        help="dense baseline, BDWP (N:M on W forward, on W^T backward) or SR-STE (default bdwp)")
    parser.add_argument("--sparsity", default=None, help="N:M pattern of the sparse methods (default 2:8; "
                                                          "not with --method dense)")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training set (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation and shuffling (default 0)")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per step (default 128)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.05 SGD, 1e-3 Adam)")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                        help="SGD with momentum 0.9, or Adam (default sgd)")
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                        help="learning-rate schedule (default cosine)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (default 0)")
    parser.add_argument("--mask-interval", type=int, default=1,
                        help="steps between N:M mask regenerations from the dense weights (default 1)")
    parser.add_argument("--ragged", default="pad", choices=["pad", "refuse"],
                        help="a sparse axis not divisible by M: pad the last group (default) or refuse")
    parser.add_argument("--srste-lambda", type=float, default=2e-4, help="SR-STE regularisation (default 2e-4)")
    parser.add_argument("--dense-layers", default="", metavar="NAMES",
                        help="weight layers kept dense, comma-separated (e.g. conv1,fc2: the first and last layer)")
    parser.add_argument("--train-subset", type=int, default=None, metavar="N", help="use the first N training images")
    parser.add_argument("--test-subset", type=int, default=None, metavar="N", help="use the first N test images")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the Fashion-MNIST IDX .gz files (default /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--no-fallback", action="store_true",
                        help="fail instead of falling back to digits when Fashion-MNIST is not installed")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write the learning curve here (needs matplotlib)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the run (history, final accuracy) as JSON; - for stdout")
    parser.add_argument("--progress", default="auto", choices=["auto", "always", "never"],
                        help="progress bar on stderr (auto: when stderr is a terminal)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads (default: the BLAS library's; 1 is faster on a busy machine; "
                             "needs threadpoolctl, which scikit-learn brings)")


class _Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, epoch: int, epochs: int) -> None:
        self.prefix = f"epoch {epoch}/{epochs}"
        self.t0 = time.perf_counter()
        self.last = -1

    def update(self, done: int, total: int) -> None:
        step = done * 40 // total
        if step == self.last and done != total:
            return
        self.last = step
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        sys.stderr.write(f"\r  {self.prefix} [{'#' * step:<40}] {done}/{total} steps  {rate:.0f} steps/s")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r" + " " * 100 + "\r")
        sys.stderr.flush()


def _blas_threads(threads: int | None):
    """Context manager limiting the BLAS thread pool (a no-op for ``None``)."""
    if threads is None:
        return contextlib.nullcontext()
    if threads < 1:
        raise ConfigError(f"--threads must be a positive integer, not {threads!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise MissingToolError("--threads needs threadpoolctl: pip install threadpoolctl") from None
    return threadpool_limits(limits=threads, user_api="blas")


def _check_plot_available() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingToolError(f"--plot needs matplotlib: {PLOT_INSTALL}") from None


def write_curve(result, path: Path) -> Path:
    """Learning curve PNG: train/test loss and test accuracy per epoch (atomically; parents created)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingToolError(f"--plot needs matplotlib: {PLOT_INSTALL}") from None
    h = result.history
    epochs = [r.epoch for r in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r.train_loss for r in h], "o-", label="train")
    ax1.plot(epochs, [r.test_loss for r in h], "s-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [100 * r.train_acc for r in h], "o-", label="train")
    ax2.plot(epochs, [100 * r.test_acc for r in h], "s-", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.legend()
    ax2.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, max(epochs) + 0.5)
    fig.suptitle(f"{result.model.name} on {result.dataset}: {result.spec.method} {result.spec.pattern}")
    fig.tight_layout()
    try:
        with output_file(path, "--plot", parents=True) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    from sparsa.models.training import TrainConfig, build_model, load_dataset, parse_spec, train

    for flag, value in (("--train-subset", args.train_subset), ("--test-subset", args.test_subset),
                        ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer, not {value!r}")
    if args.weight_decay < 0 or not math.isfinite(args.weight_decay):
        raise ConfigError(f"--weight-decay must be a finite number >= 0, not {args.weight_decay}")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise ConfigError(f"--lr must be a positive finite number, not {args.lr}")
    if args.srste_lambda < 0 or not math.isfinite(args.srste_lambda):
        raise ConfigError(f"--srste-lambda must be a finite number >= 0, not {args.srste_lambda}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, not {args.seed}")
    for flag, value in (("--batch-size", args.batch_size), ("--mask-interval", args.mask_interval)):
        if value < 1:
            raise ConfigError(f"{flag} must be a positive integer, not {value}")
    if args.method == "dense":
        given = [flag for flag, is_set in (("--sparsity", args.sparsity not in (None, "dense")),
                                           ("--srste-lambda", args.srste_lambda != 2e-4),
                                           ("--dense-layers", bool(args.dense_layers.strip())))
                 if is_set]
        if given:
            raise ConfigError(f"{', '.join(given)}: only used by the sparse methods (bdwp, srste), "
                              f"not --method dense")
    elif args.method != "srste" and args.srste_lambda != 2e-4:
        raise ConfigError(f"--srste-lambda {args.srste_lambda}: only used by --method srste, not {args.method}")
    if args.sparsity is None:
        args.sparsity = "2:8"
    if args.plot:
        _check_plot_available()
        check_output_file(args.plot, "--plot", parents=True)
    if args.json is not None and str(args.json) != "-":
        check_output_file(args.json, "--json", parents=True)
    dense_layers = tuple(d.strip() for d in args.dense_layers.split(",") if d.strip())
    spec = parse_spec(args.method, args.sparsity, mask_interval=args.mask_interval, ragged=args.ragged, dense_layers=dense_layers,
                      srste_lambda=args.srste_lambda)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                         schedule=args.schedule, weight_decay=args.weight_decay, seed=args.seed)
    data = load_dataset(args.dataset, root=args.data_dir, fallback=not args.no_fallback)
    if data.note:
        print(f"note: {data.note}", file=sys.stderr)
    if args.train_subset or args.test_subset:
        data = data.subset(args.train_subset, args.test_subset)
    model = build_model(args.model, data.input_shape, data.classes, spec, seed=args.seed)

    to_stdout = args.json is not None and str(args.json) == "-"
    out = sys.stderr if to_stdout else sys.stdout
    show_bar = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    print(f"{model.name} on {data.name} ({len(data.y_train)} train / {len(data.y_test)} test), "
          f"{spec.method} {spec.pattern}, {config.optimizer} lr {config.peak_lr:g} {config.schedule}, "
          f"batch {config.batch_size}, seed {config.seed}", file=out)
    state: dict = {"bar": None, "epoch": 1}

    def on_batch(done: int, total: int) -> None:
        if not show_bar:
            return
        if state["bar"] is None:
            state["bar"] = _Bar(state["epoch"], config.epochs)
        state["bar"].update(done, total)

    def on_epoch(rec) -> None:
        if state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None
        state["epoch"] = rec.epoch + 1
        print(f"epoch {rec.epoch:>3}/{config.epochs}  train loss {rec.train_loss:.4f}  train acc "
              f"{100 * rec.train_acc:6.2f} %  test loss {rec.test_loss:.4f}  test acc {100 * rec.test_acc:6.2f} %  "
              f"({rec.seconds:.1f} s)", file=out, flush=True)

    try:
        with _blas_threads(args.threads):
            result = train(model, data, config, on_batch=on_batch, on_epoch=on_epoch)
    finally:
        if state["bar"] is not None:
            state["bar"].close()
    print(f"final test accuracy {100 * result.final_test_acc:.2f} % ({result.steps} steps, "
          f"{result.seconds:.1f} s)", file=out)
    if args.plot:
        print(f"wrote {write_curve(result, args.plot)}", file=out)
    if args.json:
        report = result.as_dict()
        report["note"] = data.note
        text = json.dumps(report, indent=2) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            write_file(args.json, text, "--json", parents=True)
    return 0
