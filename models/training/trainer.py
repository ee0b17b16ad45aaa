"""The training loop: mini-batch SGD/Adam, mask regeneration schedule, evaluation, divergence check."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sparsa.errors import ConfigError, SparsaError

from .data import Dataset
from .layers import softmax_cross_entropy
from .model import Sequential, build_model
from .optim import OPTIMIZERS, cosine_lr, make_optimizer
from .sparsity import SparseSpec

__all__ = [
    "DEFAULT_LR",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "evaluate",
    "train",
    "train_model",
]

#: Default learning rate per optimizer.
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}


class TrainingDiverged(SparsaError, ArithmeticError):
    """The loss became NaN or infinite; the message names the step and the first bad layer."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run.

    Attributes
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
        Samples per step (the last batch of an epoch may be smaller).
    lr : float or None
        Peak learning rate (None: :data:`DEFAULT_LR` of the optimizer).
    optimizer : {"sgd", "adam"}
        SGD with momentum 0.9, or Adam.
    schedule : {"cosine", "constant"}
        Learning-rate schedule over all steps.
    weight_decay : float
        L2 on every parameter (0 by default).
    seed : int
        Seeds the initialisation and the shuffling: the same seed gives the same weights.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    optimizer: str = "sgd"
    schedule: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if type(self.epochs) is not int or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, not {self.epochs!r}")
        if type(self.batch_size) is not int or self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, not {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule must be 'cosine' or 'constant', not {self.schedule!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"learning rate must be a positive finite number, not {self.lr!r}")

    @property
    def peak_lr(self) -> float:
        """``lr`` or the optimizer's default."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


@dataclass(frozen=True)
class EpochRecord:
    """Metrics after one epoch."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: Sequential = field(repr=False)
    spec: SparseSpec
    config: TrainConfig
    dataset: str
    history: list[EpochRecord]
    seconds: float
    steps: int

    @property
    def final_test_acc(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1].test_acc

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model": self.model.name, "dataset": self.dataset, "method": self.spec.method,
            "sparsity": self.spec.pattern, "mask_interval": self.spec.mask_interval, "ragged": self.spec.ragged,
            "dense_layers": list(self.spec.dense_layers),
            "config": asdict(self.config), "params": self.model.num_params, "steps": self.steps,
            "seconds": self.seconds, "final_test_acc": self.final_test_acc,
            "history": [asdict(r) for r in self.history],
        }


def evaluate(model: Sequential, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` (forward masks applied)."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(y), batch):
        logits = model.forward(x[i: i + batch])
        loss, _ = softmax_cross_entropy(logits, y[i: i + batch])
        total_loss += loss * len(logits)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == y[i: i + batch]))
    for layer in model.weight_layers():   # drop the cached activations of the last batch
        layer._x2d = None
    return total_loss / len(y), correct / len(y)


def _first_non_finite(model: Sequential, xb: np.ndarray) -> str:
    """Re-run the forward pass layer by layer and name the first place a NaN/inf appears."""
    if not np.all(np.isfinite(xb)):
        return "the input batch itself"
    h = xb
    for layer in model.layers:
        for key, p in layer.params().items():
            if not np.all(np.isfinite(p)):
                return f"layer {layer.name!r} parameter {key!r} (after the previous update)"
        h = layer.forward(h)
        if not np.all(np.isfinite(h)):
            return f"layer {layer.name!r} output"
    return "the softmax cross-entropy (the logits are finite but too large)"


def train(model: Sequential, data: Dataset, config: TrainConfig, *,
          on_batch: Callable[[int, int], None] | None = None,
          on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data``.

    Each step: regenerate the N:M masks when ``step % mask_interval == 0``, forward, softmax
    cross-entropy, backward (BDWP / SR-STE / dense per layer), optimizer update.  After every
    epoch the masks are regenerated from the final dense weights and the test set evaluated
    with them (the sparse network that would be deployed).

    Raises
    ------
    TrainingDiverged
        The loss became NaN/inf; the message names the step and the first layer with a
        non-finite output or parameter.
    """
    spec = getattr(model, "spec", None) or (model.weight_layers()[0].spec if model.weight_layers() else SparseSpec())
    rng = np.random.default_rng([config.seed, 1])   # shuffling; the model's init used `seed` alone
    steps_per_epoch = -(-len(data.y_train) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    opt = make_optimizer(config.optimizer, model.parameters(), config.peak_lr, config.weight_decay)
    history: list[EpochRecord] = []
    t_start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # divergence is reported, not warned
        _loop(model, data, config, spec, rng, opt, history, on_batch, on_epoch, steps_per_epoch, total_steps)
    return TrainResult(model, spec, config, data.name, history, time.perf_counter() - t_start, total_steps)


def _loop(model, data, config, spec, rng, opt, history, on_batch, on_epoch, steps_per_epoch, total_steps) -> None:
    n = len(data.y_train)
    step = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size: (b + 1) * config.batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            if step % spec.mask_interval == 0:
                model.update_masks()
            logits = model.forward(xb)
            loss, dlogits = softmax_cross_entropy(logits, yb)
            if not math.isfinite(loss):
                where = _first_non_finite(model, xb)
                raise TrainingDiverged(
                    f"loss is {loss} at step {step + 1} (epoch {epoch}, batch {b + 1}/{steps_per_epoch}); "
                    f"first non-finite values in {where}; lower --lr (now {opt.lr:.3g})")
            model.backward(dlogits)
            if config.schedule == "cosine":
                opt.lr = cosine_lr(config.peak_lr, step, total_steps)
            opt.step()
            step += 1
            loss_sum += loss * len(idx)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
            if on_batch is not None:
                on_batch(b + 1, steps_per_epoch)
        model.update_masks()
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        if not math.isfinite(test_loss):
            where = _first_non_finite(model, data.x_test[:1000])
            raise TrainingDiverged(f"test loss is {test_loss} after epoch {epoch} (step {step}); "
                                   f"first non-finite values in {where}; lower --lr")
        rec = EpochRecord(epoch, loss_sum / n, correct / n, test_loss, test_acc, opt.lr, time.perf_counter() - t0)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)


def train_model(model_name: str, data: Dataset, spec: SparseSpec, config: TrainConfig, **callbacks) -> TrainResult:
    """Build ``mlp``/``cnn`` for ``data`` with ``config.seed`` and train it."""
    model = build_model(model_name, data.input_shape, data.classes, spec, seed=config.seed)
    return train(model, data, config, **callbacks)
